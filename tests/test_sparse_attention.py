"""Attention over a StreamMask, chunk by chunk, against the dense reference (small T)."""

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask
from stream_widgets.sparse_attention import (
    _chunked_attention,
    dense_attention,
    masked_chunks,
    reference_attention,
    sparse_attention,
)

SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)


def _qkv(t=45, heads=6, kv_heads=2, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, t, d, generator=g) * 2
    k = torch.randn(1, kv_heads, t, d, generator=g) * 2
    v = torch.randn(1, kv_heads, t, d, generator=g)
    return q, k, v


def test_dense_attention_and_lse_match_reference():
    q, k, v = _qkv()
    out, lse, _ = reference_attention(q, k, v, 0.25)
    for got_out, got_lse in (
        dense_attention(q, k, v, 0.25),
        _chunked_attention(
            q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), 0.25, max_chunk_bytes=4096
        ),
    ):
        torch.testing.assert_close(got_out, out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_lse, lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_bytes", [1, 2**26])
def test_masked_probabilities_match_dense_at_kept_entries(chunk_bytes):
    q, k, v = _qkv()
    mask = estimate_mask(q, k, SMALL)
    _, lse, probs = reference_attention(q, k, v, 0.25)
    keep = mask.to_dense()
    got = torch.zeros(1, 6, mask.num_q_blocks * 8, 46)
    lse_rows = torch.nn.functional.pad(lse, (0, mask.num_q_blocks * 8 - 45)).view(1, 6, -1, 8)
    for chunk in masked_chunks(q, k, mask, 0.25, max_chunk_bytes=chunk_bytes):
        p = torch.exp(chunk.logits - lse_rows[:, :, chunk.rows, :, None])
        assert not p[:, :, chunk.query_pos >= 45].any()  # padding query rows see nothing
        for n, row in enumerate(range(chunk.rows.start, chunk.rows.stop)):
            cols = torch.where(chunk.key_pos[:, :, n] < 45, chunk.key_pos[:, :, n], 45)
            got[:, :, row * 8 : row * 8 + 8].scatter_add_(
                -1, cols[:, :, None, :].expand(-1, -1, 8, -1), p[:, :, n]
            )
    got = got[:, :, :45, :45]
    torch.testing.assert_close(got, torch.where(keep, probs, 0.0), atol=1e-6, rtol=1e-5)
    assert 0.0 < mask.sparsity().item() < 1.0


def test_sparse_attention_matches_masked_reference():
    q, k, v = _qkv(t=37)
    mask = estimate_mask(q, k, SMALL)
    ref_out, _, _ = reference_attention(q, k, v, 0.25, keep=mask.to_dense())
    out = torch.zeros(1, 6, mask.num_q_blocks, 8, 16)
    for chunk, probs, chunk_out in sparse_attention(q, k, v, mask, 0.25, max_chunk_bytes=1):
        out[:, :, chunk.rows] = chunk_out
        sums = probs.sum(-1)[:, :, chunk.query_pos < 37]
        torch.testing.assert_close(sums, torch.ones_like(sums))
    torch.testing.assert_close(out.reshape(1, 6, -1, 16)[:, :, :37], ref_out, atol=1e-5, rtol=1e-5)


def test_reference_attention_is_causal_and_normalised():
    q, k, v = _qkv(t=9, heads=2, kv_heads=1)
    out, lse, probs = reference_attention(q, k, v, 0.5)
    assert torch.equal(probs.triu(1), torch.zeros_like(probs))
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 9))
    # the first query sees only itself
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0].expand(1, 2, -1))
    logits = torch.einsum("bhd,bd->bh", q[:, :, 0], k[:, 0, 0]) * 0.5
    torch.testing.assert_close(lse[:, :, 0], logits)


@pytest.mark.parametrize("t", [45, 64])
def test_masking_from_the_first_partly_seen_column_equals_masking_every_column(t, monkeypatch):
    from stream_widgets import sparse_attention as module

    q, k, _ = _qkv(t=t)
    mask = estimate_mask(q, k, SMALL)
    found = [c.logits for c in masked_chunks(q, k, mask, 0.25, max_chunk_bytes=20_000)]
    firsts = []
    original = module._first_masked_column

    def every_column(seen_from, last_key):
        firsts.append(original(seen_from, last_key))
        return 0

    monkeypatch.setattr(module, "_first_masked_column", every_column)
    expected = [c.logits for c in masked_chunks(q, k, mask, 0.25, max_chunk_bytes=20_000)]
    assert len(found) == len(expected) > 1
    for got, want in zip(found, expected, strict=True):
        assert torch.equal(got, want)
    assert max(firsts) > 0  # some chunks skip columns: the case this compares
