"""Sparse decoding steps and greedy decoding with a KV cache."""

import contextlib

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.ruler.decoding import decode_attention, greedy_tokens, sparse_step_attention
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer


def test_sparse_step_keeps_all_equals_dense():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 4, 1, 8, generator=g),
        torch.randn(1, 2, 50, 8, generator=g),
        torch.randn(1, 2, 50, 8, generator=g),
    )
    keep_all = StreamConfig(q_block=16, k_block=8, top_k=64, sink=8, window=16)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    )
    torch.testing.assert_close(sparse_step_attention(q, k, v, 8**-0.5, keep_all), dense, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(
        sparse_step_attention(q, k * 3, v, 8**-0.5, StreamConfig(k_block=8, top_k=1, sink=8, window=0)),
        dense,
        atol=1e-3,
    )


def test_greedy_tokens_equal_generate_and_sparse_steps_that_keep_all_change_nothing():
    model, tokenizer = tiny_model(), tiny_tokenizer()
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = model.generate(ids, max_new_tokens=6, do_sample=False, min_new_tokens=6)[0, ids.shape[1] :]
    dense = greedy_tokens(model, ids, 6, contextlib.nullcontext, contextlib.nullcontext, set())
    assert dense == expected.tolist()
    keep_all = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)
    sparse = greedy_tokens(
        model, ids, 6, contextlib.nullcontext, lambda: decode_attention(model, keep_all), set()
    )
    assert sparse == dense
    assert model.config._attn_implementation == "sdpa"
    stop = dense[2]  # the answer ends at the first stop token, which is kept
    first = dense.index(stop)
    assert (
        greedy_tokens(model, ids, 6, contextlib.nullcontext, contextlib.nullcontext, {stop})
        == dense[: first + 1]
    )
