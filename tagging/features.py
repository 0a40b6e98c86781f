"""Sentence features for the function tagger: words, characters, cue phrases, position, neighbours.

A trace is a sequence of sentence texts; every sentence gets one sparse feature row made of

- TF-IDF of its word n-grams (words, numbers, LaTeX commands such as `\\boxed`, and operators);
- TF-IDF of its character n-grams (inside word boundaries);
- cue-phrase flags (`CUES`: "wait", "let me check", `\\boxed`, equations, ...) and shape features
  (relative position in the trace, length, share of digits and math symbols);
- the same cue flags and a word TF-IDF of the previous and the next sentence, down-weighted.

Cost: linear in the number of characters; a row has a few hundred non-zeros.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from tagging.errors import Errors, TaggingError

__all__ = ["CUES", "FeatureConfig", "SentenceFeaturizer"]

CUES: tuple[tuple[str, str], ...] = (
    ("starts_wait", r"^(wait|but wait|hmm|hold on|oh)\b"),
    ("wait", r"\bwait\b"),
    ("let_me_check", r"let me (check|verify|double|make sure|confirm|see if)"),
    ("check_word", r"\b(check|verify|double-check|confirm|plug|substitut)"),
    ("boxed", r"\\boxed"),
    ("equals", r"="),
    ("digit", r"\d"),
    ("starts_so", r"^(so|therefore|thus|hence|that means|which means)\b"),
    ("starts_plan", r"^(first|okay|alright|let me|let's|i need|i should|maybe i|now,? i|next)"),
    ("question", r"\?$"),
    ("recall", r"\b(formula|recall|remember|know that|is defined|by definition|theorem|rule)"),
    ("problem", r"\b(the problem|we need|i need to find|asks|given that|we have)"),
    ("answer", r"\b(answer is|final answer|the answer)"),
    ("doubt", r"\b(maybe|perhaps|not sure|mistake|wrong|confus|hmm|actually)"),
    ("sequence", r"\b(next|then|now)\b"),
    ("operator", r"[+\-*/^]"),
    ("latex_math", r"\\frac|\\times|\\cdot|\\sqrt|\\binom"),
)
"""Named regular expressions (case-insensitive) whose presence is a feature."""

_CUE_PATTERNS = tuple(re.compile(pattern, re.IGNORECASE) for _, pattern in CUES)
_WORD_TOKENS = r"[A-Za-z]+|\d+|\\[A-Za-z]+|[=+\-*/^?!]"
_MATH_SYMBOLS = frozenset("=+-*/^\\{}()[]<>")
_N_SHAPE = 8


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of `SentenceFeaturizer`.

    Attributes:
        word_ngrams: Smallest and largest word n-gram, default (1, 2).
        char_ngrams: Smallest and largest character n-gram, default (2, 5).
        max_word_features: Size cap of the word vocabulary, >= 1; default 50,000.
        max_char_features: Size cap of the character vocabulary, >= 1; default 30,000.
        max_neighbour_features: Size cap of the neighbours' word vocabulary, >= 1; default 3,000.
        min_df: A term must occur in this many training sentences, >= 1; default 2.
        neighbour_weight: Scale of the previous/next sentence features, in [0, 1]; default 0.5.
    """

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    max_word_features: int = 50_000
    max_char_features: int = 30_000
    max_neighbour_features: int = 3_000
    min_df: int = 2
    neighbour_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("word_ngrams", "char_ngrams"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise TaggingError(
                    Errors.E005.format(name=name, value=(lo, hi), allowed="need 1 <= smallest <= largest")
                )
        for name in ("max_word_features", "max_char_features", "max_neighbour_features", "min_df"):
            if getattr(self, name) < 1:
                raise TaggingError(Errors.E005.format(name=name, value=getattr(self, name), allowed=">= 1"))
        if not 0.0 <= self.neighbour_weight <= 1.0:
            raise TaggingError(
                Errors.E005.format(name="neighbour_weight", value=self.neighbour_weight, allowed="in [0, 1]")
            )


def _cue_flags(text: str) -> list[float]:
    return [1.0 if pattern.search(text) else 0.0 for pattern in _CUE_PATTERNS]


def _shape(text: str, index: int, n_sentences: int) -> list[float]:
    position = index / max(n_sentences - 1, 1)
    n_chars = max(len(text), 1)
    return [
        position,
        position * position,
        float(index == 0),
        float(index < 3),
        float(index >= n_sentences - 3),
        math.log1p(len(text)) / 6.0,
        sum(ch.isdigit() for ch in text) / n_chars,
        sum(ch in _MATH_SYMBOLS for ch in text) / n_chars,
    ]


class SentenceFeaturizer:
    """Turns traces (sequences of sentence texts) into one sparse feature row per sentence.

    Fit it on training traces, then `transform` any trace; `get_state`/`from_state` serialise it as
    plain lists and arrays (no pickle).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        c = self.config
        self._word = TfidfVectorizer(
            ngram_range=c.word_ngrams,
            token_pattern=_WORD_TOKENS,
            min_df=c.min_df,
            max_features=c.max_word_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        self._char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=c.char_ngrams,
            min_df=c.min_df,
            max_features=c.max_char_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        self._neighbour = TfidfVectorizer(
            token_pattern=_WORD_TOKENS,
            min_df=c.min_df,
            max_features=c.max_neighbour_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        self.fitted = False

    @property
    def n_features(self) -> int:
        """Width of a feature row (valid after fitting)."""
        n_cues = len(CUES)
        return (
            len(self._word.vocabulary_)
            + len(self._char.vocabulary_)
            + n_cues
            + _N_SHAPE
            + 2 * (len(self._neighbour.vocabulary_) + n_cues)
        )

    def fit(self, traces: Sequence[Sequence[str]]) -> SentenceFeaturizer:
        """Learn the vocabularies and IDF weights from training traces."""
        texts = [text for trace in traces for text in trace]
        if not texts:
            raise TaggingError(Errors.E009)
        self._word.fit(texts)
        self._char.fit(texts)
        self._neighbour.fit(texts)
        self.fitted = True
        return self

    def transform(self, traces: Sequence[Sequence[str]]) -> sparse.csr_matrix:
        """Return the `[N, n_features]` float32 CSR matrix of all sentences of `traces`, in order."""
        if not self.fitted:
            raise TaggingError(Errors.E002)
        texts, previous, following, dense = [], [], [], []
        for trace in traces:
            n = len(trace)
            flags = [_cue_flags(text) for text in trace]
            empty = [0.0] * len(CUES)
            w = self.config.neighbour_weight
            for i, text in enumerate(trace):
                texts.append(text)
                previous.append(trace[i - 1] if i > 0 else "")
                following.append(trace[i + 1] if i + 1 < n else "")
                before = flags[i - 1] if i > 0 else empty
                after = flags[i + 1] if i + 1 < n else empty
                dense.append(flags[i] + _shape(text, i, n) + [w * v for v in before] + [w * v for v in after])
        if not texts:
            return sparse.csr_matrix((0, self.n_features), dtype=np.float32)
        w = self.config.neighbour_weight
        blocks = [
            self._word.transform(texts),
            self._char.transform(texts),
            sparse.csr_matrix(np.asarray(dense, dtype=np.float32)),
            w * self._neighbour.transform(previous),
            w * self._neighbour.transform(following),
        ]
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return `(json_state, arrays)`: the config and vocabularies, and the IDF weights."""
        if not self.fitted:
            raise TaggingError(Errors.E002)
        state: dict = {"config": asdict(self.config)}
        arrays = {}
        for name, vectorizer in self._vectorizers():
            vocabulary = vectorizer.vocabulary_
            terms = [""] * len(vocabulary)
            for term, column in vocabulary.items():
                terms[column] = term
            state[name] = terms
            arrays[f"{name}_idf"] = vectorizer.idf_.astype(np.float32)
        return state, arrays

    @classmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> SentenceFeaturizer:
        """Rebuild a fitted featurizer from `get_state`'s output."""
        config = state["config"]
        config = FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        featurizer = cls(config)
        for name, vectorizer in featurizer._vectorizers():
            terms = state[name]
            vectorizer.set_params(vocabulary={term: i for i, term in enumerate(terms)})
            vectorizer.fit([""])  # validates the fixed vocabulary; the IDF is replaced below
            idf = np.asarray(arrays[f"{name}_idf"], dtype=np.float64)
            if idf.shape != (len(terms),):
                raise ValueError(f"{name}: {len(terms)} terms but {idf.shape} IDF weights")
            vectorizer.idf_ = idf
        featurizer.fitted = True
        return featurizer

    def _vectorizers(self) -> list[tuple[str, TfidfVectorizer]]:
        return [("word", self._word), ("char", self._char), ("neighbour", self._neighbour)]
