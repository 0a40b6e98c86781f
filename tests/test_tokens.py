"""tokenize and sentence_ids: the one tokenisation every pass uses."""

import pytest
import torch

from stream_widgets.sentences import split_sentences, token_spans
from stream_widgets.tokens import sentence_ids, tokenize
from tests.tiny_models import TEXT, tiny_tokenizer


def test_tokenize_keeps_offsets_into_the_text():
    tokenizer = tiny_tokenizer()
    tokens = tokenize(tokenizer, TEXT)
    assert tokens.input_ids.shape == (1, tokens.num_tokens) and tokens.offsets.shape == (tokens.num_tokens, 2)
    assert tokens.input_ids.dtype == torch.int64 and tokens.offsets.dtype == torch.int64
    pieces = [TEXT[a:b] for a, b in tokens.offsets.tolist()]
    assert "".join(pieces) == TEXT  # byte-level BPE: the tokens tile the text
    assert tokens.input_ids[0].tolist() == tokenizer(TEXT).input_ids


def test_sentences_and_their_ids():
    tokens = tokenize(tiny_tokenizer(), TEXT)
    sentences = tokens.sentences()
    assert [s.text for s in sentences] == [s.text for s in split_sentences(TEXT)]
    ids = sentence_ids(sentences, tokens.num_tokens)
    for s in sentences:
        assert (ids[s.token_start : s.token_end] == s.index).all()
        covered = TEXT[tokens.offsets[s.token_start, 0] : tokens.offsets[s.token_end - 1, 1]]
        assert s.text in covered
    # the text after </think> belongs to no sentence
    assert ids[-1] == -1 and (ids >= 0).sum() == sum(s.n_tokens for s in sentences)


def test_bad_inputs():
    tokenizer = tiny_tokenizer()
    with pytest.raises(TypeError, match="str"):
        tokenize(tokenizer, b"bytes")
    with pytest.raises(ValueError, match="fast tokenizer"):
        tokenize(object(), "text")
    with pytest.raises(ValueError, match="token span"):
        sentence_ids(split_sentences(TEXT), 10)
    assert sentence_ids(token_spans([], []), 3).tolist() == [-1, -1, -1]
