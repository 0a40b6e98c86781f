"""`python -m tagging.train`: fit the function tagger on all bundled math traces and save the pipeline.

Writes a complete spaCy pipeline directory (`config.cfg`, `meta.json`, the classifier's
`function_tagger/classifier.json` and `weights.npz`) to `tagging/model/` unless `--output` says otherwise;
`tagging.load()` reads it back. Takes about a minute on 2 CPU cores.

`--corrections FILE...` adds tag corrections made in the explorer or the report (`tag_corrections.json`,
schema in `stream_widgets.views.corrections`) as extra labelled data: each file is one more trace whose
corrected sentences are labelled with their corrected tag; its other sentences are left out, as unlabelled
bundled sentences are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tagging import MODEL_DIR, make_pipeline
from tagging.classifier import ClassifierConfig, FunctionTagClassifier
from tagging.dataset import LabelledTrace, labelled_traces
from tagging.features import FeatureConfig
from tagging.tags import FUNCTION_TAGS

__all__ = ["corrections_traces", "fit_classifier", "main", "training_pairs"]


def training_pairs(traces: list[LabelledTrace]) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences and tags of `traces`, minus sentences tagged `unknown` (not a class to learn)."""
    texts, tags = [], []
    for trace in traces:
        kept = [(s, t) for s, t in zip(trace.sentences, trace.tags, strict=True) if t in FUNCTION_TAGS]
        texts.append([s for s, _ in kept])
        tags.append([t for _, t in kept])
    return texts, tags


def corrections_traces(paths: list[Path]) -> list[LabelledTrace]:
    """Tag corrections files as `LabelledTrace`s: a file's corrected sentences with their tags, the rest
    `"unknown"` (which `training_pairs` leaves out).

    Raises:
        ValueError: For a file that is not a corrections file, or a corrected tag outside `FUNCTION_TAGS`.
    """
    import json

    from stream_widgets.views.corrections import check_corrections

    traces = []
    for path in paths:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read tag corrections {path}: {error}") from None
        check_corrections(document, str(path))
        sentences = tuple(document["sentences"])
        tags = ["unknown"] * len(sentences)
        for item in document["corrections"]:
            if item["tag"] not in FUNCTION_TAGS:
                raise ValueError(
                    f"{path}: correction of sentence {item['index']} has tag {item['tag']!r}, "
                    f"not one of {list(FUNCTION_TAGS)} (unknown is not a class to learn)"
                )
            tags[item["index"]] = item["tag"]
        traces.append(
            LabelledTrace(
                f"corrections:{path}", f"corrections:{document['text_sha256']}", sentences, tuple(tags)
            )
        )
    return traces


def fit_classifier(
    traces: list[LabelledTrace],
    features: FeatureConfig | None = None,
    config: ClassifierConfig | None = None,
) -> FunctionTagClassifier:
    """Fit a `FunctionTagClassifier` on labelled traces."""
    texts, tags = training_pairs(traces)
    return FunctionTagClassifier(features, config).fit(texts, tags)


def main(argv: list[str] | None = None) -> int:
    """Train on every bundled math trace and write the pipeline."""
    parser = argparse.ArgumentParser(prog="python -m tagging.train", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=MODEL_DIR, help="pipeline directory to write")
    parser.add_argument(
        "--corrections",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="tag_corrections.json files from the explorer or the report, added as labelled data",
    )
    args = parser.parse_args(argv)
    try:
        extra = corrections_traces(args.corrections)
    except ValueError as error:
        parser.error(str(error))
    traces = labelled_traces() + extra
    start = time.perf_counter()
    classifier = fit_classifier(traces)
    nlp = make_pipeline()
    nlp.get_pipe("function_tagger").classifier = classifier
    nlp.meta["name"] = "function_tagger"
    nlp.meta["description"] = (
        "CoT sentence function tags (stream-widgets), trained on bundled Thought Anchors traces"
    )
    nlp.to_disk(args.output)
    n = sum(sum(tag in FUNCTION_TAGS for tag in t.tags) for t in traces)
    corrected = sum(sum(tag in FUNCTION_TAGS for tag in t.tags) for t in extra)
    print(
        f"trained on {n} labelled sentences of {len(traces)} traces ({corrected} corrected sentences "
        f"from {len(extra)} corrections files) in {time.perf_counter() - start:.1f} s"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
