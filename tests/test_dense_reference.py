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


def test_chunking_changes_memory_not_the_result(tiny):
    model, tokenizer = tiny
    whole, counts = dense_sentence_sums(model, tokenizer, TEXT)
    for budget in (1, 4096, 50_000):  # one query row per chunk, a few rows, many rows
        chunked, again = dense_sentence_sums(model, tokenizer, TEXT, max_chunk_bytes=budget)
        torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)
        assert torch.equal(again, counts)


def test_texts_past_the_context_or_blank_are_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="context of 512 tokens"):
        dense_sentence_sums(model, tokenizer, "<think>" + "Add one. " * 400 + "</think>")
    with pytest.raises(ValueError, match="no sentences"):
        dense_sentence_sums(model, tokenizer, "<think>   </think>")


def test_memory_stays_bounded_at_a_long_text():
    """~3,600 tokens x 4 heads: one layer's [H, T, T] float32 probabilities alone are ~200 MiB; with a
    1 MiB budget the peak (measured in a fresh process) grows by a fraction of that."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import resource, torch
        from tests.tiny_models import tiny_model, tiny_tokenizer
        from stream_widgets.dense_reference import dense_sentence_sums
        model, tok = tiny_model(max_positions=4096), tiny_tokenizer()
        text = "<think>" + "We add two and three. That gives five. " * 200 + "</think>"
        t = len(tok(text).input_ids)
        dense_sentence_sums(model, tok, text[:60])  # warm-up: imports and allocator caches
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sums, _ = dense_sentence_sums(model, tok, text, max_chunk_bytes=2**20)
        print(t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, float(sums.sum()))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    t, grown_mib, total = (float(x) for x in out.stdout.split())
    one_dense_layer_mib = 4 * t * t * 4 / 2**20
    assert t > 3000 and total > 0
    assert grown_mib < one_dense_layer_mib / 4, f"peak grew by {grown_mib:.0f} MiB at T={t:.0f}"


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
