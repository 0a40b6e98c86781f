"""Numbered error messages of the tagger, in the style of spaCy's `errors.py`.

Every message has a stable code so that users can search for it; format the placeholders with
`Errors.E001.format(...)`.
"""

from __future__ import annotations

__all__ = ["Errors", "TaggingError"]


class TaggingError(ValueError):
    """A user-facing error of the tagging package (a `ValueError`, so callers can catch either)."""


class Errors:
    """Error message templates, numbered like spaCy's `Errors`."""

    E001 = "[E001] Expected text as a str, got {type}. Decode bytes first (e.g. `data.decode('utf-8')`)."
    E002 = (
        "[E002] The function tagger has no trained model. Use `tagging.load()` for the shipped one, "
        "`python -m tagging.train` to build it, or `FunctionTagger.from_disk(path)`."
    )
    E003 = (
        "[E003] No trained tagger found at {path}. Run `python -m tagging.train` to write it, or reinstall "
        "stream-widgets."
    )
    E004 = "[E004] The tagger model at {path} is corrupt or incompatible ({reason}). Retrain it."
    E005 = "[E005] Invalid config value {name}={value!r}: {allowed}."
    E006 = (
        "[E006] The function tagger needs the CoT sentences in doc.spans['{key}']: add the 'cot_chunker' "
        "component before it (`nlp.add_pipe('cot_chunker', first=True)`)."
    )
    E007 = "[E007] Training needs as many labels as sentences: {n_sentences} sentences, {n_labels} labels."
    E008 = "[E008] Unknown function tag {tag!r}; expected one of {tags}."
    E009 = "[E009] Cannot train on an empty data set."
