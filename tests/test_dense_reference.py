"""The dense reference for sentence attention, against the Stream tracer with a mask that keeps all."""

import pytest
import torch

from stream_widgets.anchors import mean_sentence_attention, sentence_attention
from stream_widgets.config import StreamConfig
from stream_widgets.dense_reference import dense_sentence_attention, dense_sentence_sums, truncate_to_tokens
from stream_widgets.sentences import split_sentences
from stream_widgets.tracer import trace
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

KEEP_ALL = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model(request.param), tiny_tokenizer()


def test_dense_sums_equal_a_trace_that_keeps_everything(tiny):
    model, tokenizer = tiny
    sums, counts = dense_sentence_sums(model, tokenizer, TEXT)
    traced = trace(model, tokenizer, TEXT, KEEP_ALL)
    assert (
        sums.shape
        == traced.sentence_attention_sum.shape
        == (2, 4, len(traced.sentences), len(traced.sentences))
    )
    torch.testing.assert_close(sums, traced.sentence_attention_sum, atol=1e-5, rtol=1e-5)
    assert counts.tolist() == traced.sentence_token_counts().tolist()
    # causal: nothing above the diagonal; each sentence's rows sum to at most its token count
    assert torch.equal(sums.triu(1), torch.zeros_like(sums))
    assert (sums.sum(-1) <= counts.float() + 1e-4).all()
    means = dense_sentence_attention(model, tokenizer, TEXT)
    torch.testing.assert_close(
        torch.from_numpy(means), torch.from_numpy(sentence_attention(traced)), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        torch.from_numpy(means), torch.from_numpy(mean_sentence_attention(sums, counts))
    )
    assert model.config._attn_implementation == "sdpa"


def test_long_or_blank_texts_are_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="limited to 8,192 tokens"):
        dense_sentence_sums(model, tokenizer, "a b " * 5000)
    with pytest.raises(ValueError, match="no sentences"):
        dense_sentence_sums(model, tokenizer, "<think>   </think>")


def test_truncate_to_tokens_keeps_whole_leading_sentences():
    tokenizer = tiny_tokenizer()
    full = split_sentences(TEXT)
    for budget in (20, 30, 40):
        cut = truncate_to_tokens(tokenizer, TEXT, budget)
        assert len(tokenizer(cut).input_ids) <= budget
        sentences = split_sentences(cut)
        assert [s.text for s in sentences] == [s.text for s in full[: len(sentences)]]
    assert truncate_to_tokens(tokenizer, TEXT, 10_000) == TEXT
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_to_tokens(tokenizer, TEXT, 0)
    with pytest.raises(ValueError, match="first sentence"):
        truncate_to_tokens(tokenizer, TEXT, 2)
