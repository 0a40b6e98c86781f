"""Reasoning-phase tagger: a spaCy pipeline that labels each CoT sentence with a function tag.

The pipeline is `spacy.blank("en")` plus two components, registered as spaCy factories (and as entry
points, so `spacy.load` finds them without importing this package first):

- `cot_chunker`: the sentences of `stream_widgets.sentences.split_sentences` as `doc.spans["cot"]` and
  as `doc.sents`;
- `function_tagger`: `Span._.function_tag` (one of `FUNCTION_TAGS`, or `"unknown"`) and
  `Span._.function_tag_scores` (tag -> probability) for every CoT sentence.

Importing this package does not import spaCy; `load()` does.

Example:
    >>> import tagging
    >>> doc = tagging.load()("<think>Let me compute 2+2. That is 4.</think>")
    >>> [(s.text, s._.function_tag) for s in doc.spans["cot"]]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tagging.tags import FUNCTION_TAGS, UNKNOWN_TAG

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = ["FUNCTION_TAGS", "MODEL_DIR", "UNKNOWN_TAG", "load", "make_pipeline"]

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
