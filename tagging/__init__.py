"""Reasoning-phase tagger: a spaCy pipeline that labels each CoT sentence with a function tag.

The pipeline is `spacy.blank("en")` plus two components, registered as spaCy factories (and as entry
points, so `spacy.load` finds them without importing this package first):

- `cot_chunker`: the sentences of `stream_widgets.sentences.split_sentences` as `doc.spans["cot"]` and
  as `doc.sents`;
- `function_tagger`: `Span._.function_tag` (one of `FUNCTION_TAGS`, or `"unknown"`) and
  `Span._.function_tag_scores` (tag -> probability) for every CoT sentence.

`tag_sentences(sentences)` tags sentence texts that are already split (e.g. a trace's own sentences)
with the same classifier, without re-splitting.

Importing this package does not import spaCy; `load()` and `tag_sentences()` do.

Example:
    >>> import tagging
    >>> doc = tagging.load()("<think>Let me compute 2+2. That is 4.</think>")
    >>> [(s.text, s._.function_tag) for s in doc.spans["cot"]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tagging.tags import FUNCTION_TAGS, UNKNOWN_TAG

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = [
    "FUNCTION_TAGS",
    "MODEL_DIR",
    "UNKNOWN_TAG",
    "FunctionTag",
    "load",
    "make_pipeline",
    "tag_sentences",
]

MODEL_DIR = Path(__file__).resolve().parent / "model"
"""The shipped pipeline, written by `python -m tagging.train`."""


def make_pipeline(**tagger_config: object) -> Language:
    """Return an untrained `spacy.blank("en")` pipeline with `cot_chunker` and `function_tagger`.

    Args:
        **tagger_config: Settings of the `function_tagger` factory (e.g. `min_confidence=0.3`).
    """
    import spacy

    from tagging import components  # noqa: F401  (registers the factories)

    nlp = spacy.blank("en")
    nlp.add_pipe("cot_chunker")
    nlp.add_pipe("function_tagger", config=dict(tagger_config))
    return nlp


def load(path: str | Path | None = None) -> Language:
    """Load the trained tagging pipeline (the shipped one by default).

    Args:
        path: A directory written by `Language.to_disk` (e.g. by `python -m tagging.train`).

    Raises:
        tagging.errors.TaggingError: [E003] if the directory holds no trained pipeline.
    """
    import spacy

    from tagging import components  # noqa: F401  (registers the factories)
    from tagging.errors import Errors, TaggingError

    directory = Path(path) if path is not None else MODEL_DIR
    if not (directory / "config.cfg").is_file():
        raise TaggingError(Errors.E003.format(path=directory))
    return spacy.load(directory)


@dataclass(frozen=True)
class FunctionTag:
    """The function tag of one sentence.

    Attributes:
        tag: One of `FUNCTION_TAGS`, or `UNKNOWN_TAG` (empty sentence, or best probability below the
            threshold).
        confidence: The classifier's probability of its best tag, in [0, 1] (1.0 for an empty sentence,
            which is certainly `UNKNOWN_TAG`).
        scores: Tag -> probability for each of `FUNCTION_TAGS` (they sum to 1).
    """

    tag: str
    confidence: float
    scores: dict[str, float]


def tag_sentences(
    sentences: Sequence[str], *, nlp: Language | None = None, min_confidence: float = 0.0
) -> list[FunctionTag]:
    """Tag given sentence texts, in order, as one trace, with the pipeline's classifier; no re-splitting.

    The classifier reads each sentence with its neighbours and its position, so pass all the sentences
    of one trace together.

    Args:
        sentences: `S` sentence texts of one trace, in order (e.g. `[s.text for s in trace.sentences]`).
        nlp: A pipeline from `load()` (the shipped one by default) whose `function_tagger` is used.
        min_confidence: Below this best probability the tag is `UNKNOWN_TAG`, in [0, 1).

    Returns:
        `S` `FunctionTag`s. Cost: linear in the characters (thousands of sentences per second).

    Raises:
        ValueError: For a `min_confidence` outside [0, 1) or a sentence that is not a str.
    """
    import numpy as np

    from tagging.tags import FUNCTION_TAGS as tags

    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence!r}")
    texts = list(sentences)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise ValueError(f"sentences must be strings, got {sorted(set(bad))}")
    if not texts:
        return []
    from tagging.errors import Errors, TaggingError

    pipeline = load() if nlp is None else nlp
    classifier = pipeline.get_pipe("function_tagger").classifier
    if classifier is None:
        raise TaggingError(Errors.E002)
    (probabilities,) = classifier.predict_proba_many([texts])
    out = []
    for text, row in zip(texts, probabilities, strict=True):
        scores = {tag: float(p) for tag, p in zip(tags, row, strict=True)}
        best = int(np.argmax(row))
        if not text.strip():
            out.append(FunctionTag(UNKNOWN_TAG, 1.0, scores))
        elif row[best] < min_confidence:
            out.append(FunctionTag(UNKNOWN_TAG, float(row[best]), scores))
        else:
            out.append(FunctionTag(tags[best], float(row[best]), scores))
    return out
