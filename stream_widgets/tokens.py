"""A text as the model reads it: token ids, character offsets, and the sentence of every token.

`tokenize` is the one tokenisation every pass uses (tracer, references, fidelity, RULER), so token
positions mean the same everywhere: the tokenizer's usual special tokens, offsets into the original
text. `sentence_ids` maps sentences with token spans (`sentences.token_spans`) to a per-token index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy
import torch

from stream_widgets.sentences import Sentence, split_sentences, token_spans

__all__ = ["TokenizedText", "sentence_ids", "tokenize"]


@dataclass(frozen=True, eq=False)
class TokenizedText:
    """A tokenised text.

    Attributes:
        text: The original text.
        input_ids: int64 ``[1, T]`` token ids (a batch of one, as the model takes them).
        offsets: int64 ``[T, 2]`` character span of every token in `text` (``(0, 0)`` for special tokens).
    """

    text: str
    input_ids: torch.Tensor
    offsets: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """T."""
        return int(self.input_ids.shape[1])

    def sentences(self) -> list[Sentence]:
        """The text's sentences (`split_sentences`) with their token spans. O(T + len(text))."""
        return token_spans(split_sentences(self.text), self.offsets.tolist(), self.text)


def tokenize(tokenizer, text: str) -> TokenizedText:
    """Tokenise `text` with offsets, the tokenizer's usual special tokens included.

    Raises:
        TypeError: If `text` is not a str.
        ValueError: If the tokenizer is not a fast one (no offsets).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; tracing needs token offsets")
    # Lists, then one conversion each: transformers' return_tensors="pt" walks the offset pairs in
    # Python (about a second at 128k tokens, longer than the H200 takes to trace them).
    encoding = tokenizer(text, return_offsets_mapping=True)
    input_ids = torch.tensor(encoding["input_ids"], dtype=torch.int64)[None]
    offsets = numpy.asarray(encoding["offset_mapping"], dtype=numpy.int64).reshape(-1, 2)
    return TokenizedText(text, input_ids, torch.from_numpy(offsets))


def sentence_ids(sentences: Sequence[Sentence], num_tokens: int) -> torch.Tensor:
    """int64 ``[T]``: the index of the sentence holding every token, -1 for tokens in none.

    Args:
        sentences: Sentences with token spans (`token_spans`).
        num_tokens: T.
    """
    ids = torch.full((num_tokens,), -1, dtype=torch.int64)
    for sentence in sentences:
        if sentence.token_start is None or sentence.token_end is None:
            raise ValueError(f"sentence {sentence.index} has no token span; run sentences.token_spans first")
        ids[sentence.token_start : sentence.token_end] = sentence.index
    return ids
