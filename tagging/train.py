"""`python -m tagging.train`: fit the function tagger on all bundled math traces and save the pipeline.

Writes a complete spaCy pipeline directory (`config.cfg`, `meta.json`, the classifier's
`function_tagger/classifier.json` and `weights.npz`) to `tagging/model/` unless `--output` says otherwise;
`tagging.load()` reads it back. Takes about a minute on 2 CPU cores.
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

__all__ = ["fit_classifier", "main", "training_pairs"]


def training_pairs(traces: list[LabelledTrace]) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences and tags of `traces`, minus sentences tagged `unknown` (not a class to learn)."""
    texts, tags = [], []
    for trace in traces:
        kept = [(s, t) for s, t in zip(trace.sentences, trace.tags, strict=True) if t in FUNCTION_TAGS]
        texts.append([s for s, _ in kept])
        tags.append([t for _, t in kept])
    return texts, tags


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
    args = parser.parse_args(argv)
    traces = labelled_traces()
    start = time.perf_counter()
    classifier = fit_classifier(traces)
    nlp = make_pipeline()
    nlp.get_pipe("function_tagger").classifier = classifier
    nlp.meta["name"] = "function_tagger"
    nlp.meta["description"] = (
        "CoT sentence function tags (stream-widgets), trained on bundled Thought Anchors traces"
    )
    nlp.to_disk(args.output)
    n = sum(len(t.sentences) for t in traces)
    print(f"trained on {n} sentences of {len(traces)} traces in {time.perf_counter() - start:.1f} s")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
