"""The spaCy components: `cot_chunker` and `function_tagger`.

Both are registered with `Language.factory` when this module is imported, and declared as entry points
(`spacy_factories` in `pyproject.toml`), so `spacy.load` of a saved pipeline finds them.

- `cot_chunker` assigns `doc.spans["cot"]` (the `split_sentences` sentences, in order, by the rule set of
  its `rules` setting: `"default"` unless configured otherwise), `Token.is_sent_start`
  (so `doc.sents` follows the same boundaries; text outside the `<think>` region forms sentences of its
  own there, but never enters `doc.spans["cot"]`), and `Span._.cot_sentence` (the `Sentence`, with the
  exact character span).
- `function_tagger` assigns `Span._.function_tag` and `Span._.function_tag_scores` on every span of
  `doc.spans["cot"]`, with the usual `predict` / `set_annotations` split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from spacy.attrs import SENT_START
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

from stream_widgets.sentences import (
    DEFAULT_SENTENCE_RULES,
    SENTENCE_RULES,
    Sentence,
    split_sentences,
    token_spans,
)
from tagging.classifier import FunctionTagClassifier
from tagging.errors import Errors, TaggingError
from tagging.tags import FUNCTION_TAGS, UNKNOWN_TAG

__all__ = ["CotChunker", "FunctionTagger", "make_cot_chunker", "make_function_tagger"]

_USER_DATA_KEY = "stream_widgets.cot_sentences"  # plain tuples, so Doc.to_bytes still works


def _get_cot_sentence(span: Span) -> Sentence | None:
    """Getter of `Span._.cot_sentence`: the `Sentence` whose token span is exactly this span."""
    for row in span.doc.user_data.get(_USER_DATA_KEY, ()):
        if row[4] == span.start and row[5] == span.end:
            return Sentence(*row)
    return None


for _name in ("function_tag", "function_tag_scores"):
    if not Span.has_extension(_name):
        Span.set_extension(_name, default=None)
if not Span.has_extension("cot_sentence"):
    Span.set_extension("cot_sentence", getter=_get_cot_sentence)


class CotChunker:
    """Splits a doc into CoT sentences (SPEC section 3) as spans and sentence boundaries.

    Config:
        spans_key: Where the sentences go (`doc.spans[spans_key]`), default `"cot"`.
        rules: The `split_sentences` rule set, one of `SENTENCE_RULES`: `"default"` (no cut inside
            formulas) or `"thought-anchors"` (the chunks of the labelled data).
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "cot_chunker",
        spans_key: str = "cot",
        rules: str = DEFAULT_SENTENCE_RULES,
    ) -> None:
        if not spans_key:
            raise TaggingError(
                Errors.E005.format(name="spans_key", value=spans_key, allowed="a non-empty str")
            )
        if rules not in SENTENCE_RULES:
            raise TaggingError(
                Errors.E005.format(name="rules", value=rules, allowed=f"one of {', '.join(SENTENCE_RULES)}")
            )
        self.name = name
        self.spans_key = spans_key
        self.rules = rules

    def __call__(self, doc: Doc) -> Doc:
        sentences = split_sentences(doc.text, rules=self.rules)
        offsets = [(token.idx, token.idx + len(token)) for token in doc]
        spanned = token_spans(sentences, offsets, doc.text)
        # one vectorised write: setting Token.is_sent_start token by token is quadratic in spaCy
        starts = np.full((len(doc), 1), -1, dtype=np.int64)  # -1: "not a sentence start"
        spans = []
        for sentence in spanned:
            spans.append(Span(doc, sentence.token_start, sentence.token_end))
            if sentence.token_end > sentence.token_start:
                starts[sentence.token_start] = 1
        if spanned and spanned[-1].token_end < len(doc):
            starts[spanned[-1].token_end] = 1  # the text after </think> is not the last sentence
        if len(doc):
            starts[0] = 1
            doc.from_array([SENT_START], starts.view(np.uint64))
        doc.spans[self.spans_key] = spans
        doc.user_data[_USER_DATA_KEY] = [
            (s.index, s.text, s.char_start, s.char_end, s.token_start, s.token_end) for s in spanned
        ]
        return doc


@Language.factory(
    "cot_chunker",
    assigns=["doc.spans", "token.is_sent_start", "span._.cot_sentence"],
    default_config={"spans_key": "cot", "rules": DEFAULT_SENTENCE_RULES},
)
def make_cot_chunker(nlp: Language, name: str, spans_key: str, rules: str) -> CotChunker:
    """Factory of `CotChunker`."""
    return CotChunker(nlp, name, spans_key, rules)


def _sentence_texts(doc: Doc, spans_key: str) -> list[str]:
    if spans_key not in doc.spans:
        raise TaggingError(Errors.E006.format(key=spans_key))
    spans = doc.spans[spans_key]
    rows = doc.user_data.get(_USER_DATA_KEY)
    if rows is not None and len(rows) == len(spans):
        return [row[1] for row in rows]
    return [span.text for span in spans]


class FunctionTagger:
    """Tags every CoT sentence with a function tag and a probability per tag.

    Config:
        spans_key: Where the sentences are (`doc.spans[spans_key]`), default `"cot"`.
        min_confidence: Below this top probability the tag is `"unknown"`, in [0, 1); default 0.0
            (always the most likely tag). Empty sentences are always `"unknown"`.
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "function_tagger",
        spans_key: str = "cot",
        min_confidence: float = 0.0,
    ) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise TaggingError(
                Errors.E005.format(name="min_confidence", value=min_confidence, allowed="in [0, 1)")
            )
        self.name = name
        self.spans_key = spans_key
        self.min_confidence = min_confidence
        self.classifier: FunctionTagClassifier | None = None

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 64) -> Iterator[Doc]:
        """Tag docs in batches (one feature matrix per batch)."""
        for batch in minibatch(stream, size=batch_size):
            docs = list(batch)
            self.set_annotations(docs, self.predict(docs))
            yield from docs

    def predict(self, docs: Iterable[Doc]) -> list[np.ndarray]:
        """Return one `[S, len(FUNCTION_TAGS)]` probability array per doc; changes nothing."""
        if self.classifier is None:
            raise TaggingError(Errors.E002)
        traces = [_sentence_texts(doc, self.spans_key) for doc in docs]
        return self.classifier.predict_proba_many(traces)

    def set_annotations(self, docs: Iterable[Doc], scores: list[np.ndarray]) -> None:
        """Write `Span._.function_tag` and `Span._.function_tag_scores` from `predict`'s output.

        `function_tag_scores` holds the classifier's probability of each of the 8 tags (they sum to 1)
        and, under `"unknown"`, 1.0 if the sentence got `"unknown"` (it is empty, or its best probability
        is below `min_confidence`) and 0.0 otherwise: a flag of that rule, not a probability, since the
        classifier has no "unknown" class. The confidence of an "unknown" sentence's best guess is the
        largest of the 8 probabilities.
        """
        if not (isinstance(self.min_confidence, int | float) and 0.0 <= self.min_confidence < 1.0):
            raise TaggingError(
                Errors.E005.format(name="min_confidence", value=self.min_confidence, allowed="in [0, 1)")
            )
        for doc, probabilities in zip(docs, scores, strict=True):
            texts = _sentence_texts(doc, self.spans_key)
            spans = doc.spans[self.spans_key]
            for span, text, row in zip(spans, texts, probabilities, strict=True):
                table = {tag: float(p) for tag, p in zip(FUNCTION_TAGS, row, strict=True)}
                best = int(np.argmax(row))
                unknown = not text.strip() or row[best] < self.min_confidence
                table[UNKNOWN_TAG] = 1.0 if unknown else 0.0
                span._.function_tag = UNKNOWN_TAG if unknown else FUNCTION_TAGS[best]
                span._.function_tag_scores = table

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write the trained classifier into directory `path`."""
        if self.classifier is None:
            raise TaggingError(Errors.E002)
        self.classifier.to_disk(path)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> FunctionTagger:
        """Load the classifier written by `to_disk`; returns self."""
        self.classifier = FunctionTagClassifier.from_disk(path)
        return self


@Language.factory(
    "function_tagger",
    requires=["doc.spans"],
    assigns=["span._.function_tag", "span._.function_tag_scores"],
    default_config={"spans_key": "cot", "min_confidence": 0.0},
)
def make_function_tagger(nlp: Language, name: str, spans_key: str, min_confidence: float) -> FunctionTagger:
    """Factory of `FunctionTagger` (untrained until `from_disk` or `tagging.load()`)."""
    return FunctionTagger(nlp, name, spans_key, min_confidence)
