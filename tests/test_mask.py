import pytest
import torch

from stream_widgets import StreamConfig, StreamMask, estimate_mask


def _mask(t=200, h=4, hkv=2, seed=0, **config):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(2, h, t, 16, generator=generator)
    k = torch.randn(2, hkv, t, 16, generator=generator)
    config = StreamConfig(**{"q_block": 16, "k_block": 8, "top_k": 4, "sink": 8, "window": 16, **config})
    return estimate_mask(q, k, config)


@pytest.mark.parametrize("t", [1, 7, 64, 200, 257])
def test_sparsity_and_pairs_match_the_dense_mask(t):
    mask = _mask(t=t)
    dense = mask.to_dense()
    assert dense.shape == (2, 4, t, t)
    per_head = dense.sum(dim=(-1, -2))
    assert torch.equal(mask.retained_pairs().sum(-1), per_head)
    expected = 1 - per_head.double() / (t * (t + 1) / 2)
    torch.testing.assert_close(mask.sparsity(per_head=True), expected)
    torch.testing.assert_close(mask.sparsity(), expected.mean())


def test_block_dense_and_layout():
    mask = _mask()
    assert mask.kv_num_blocks.dtype == torch.int32 and mask.kv_indices.dtype == torch.int32
    assert mask.num_q_blocks == 13 and mask.num_k_blocks == 25
    blocks = mask.to_block_dense()
    assert torch.equal(blocks.sum(-1), mask.kv_num_blocks.long())
    assert mask.nbytes == 4 * (mask.kv_num_blocks.numel() + mask.kv_indices.numel())


def test_repr_is_readable():
    text = repr(_mask())
    assert (
        text.startswith("StreamMask(") and "sparsity=" in text and "q_block=16" in text and "nbytes=" in text
    )


def test_to_dense_refuses_long_sequences():
    mask = StreamMask(
        torch.ones(1, 1, 20_000, dtype=torch.int32),
        torch.zeros(1, 1, 20_000, 1, dtype=torch.int32),
        1,
        1,
        20_000,
    )
    with pytest.raises(ValueError, match="to_dense"):
        mask.to_dense()


def test_block_mask_conversion_matches():
    mask = _mask(t=96, h=2, hkv=1, q_block=16, k_block=16)
    block_mask = mask.to_block_mask()
    assert block_mask.BLOCK_SIZE == (16, 16)
    # BlockMask.to_dense() is block-level; the diagonal blocks are partial through the causal mask_mod.
    assert torch.equal(block_mask.to_dense().bool(), mask.to_block_dense())


def _flex_matches_masked_sdpa(block: int, t: int, compiled: bool):
    from torch.nn.attention.flex_attention import flex_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, t, 16) for _ in range(3))
    mask = estimate_mask(q, k, StreamConfig(q_block=block, k_block=block, top_k=1, sink=0, window=0))
    assert 0 < mask.sparsity() < 1
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask.to_dense())
    attend = torch.compile(flex_attention) if compiled else flex_attention
    got = attend(q, k, v, block_mask=mask.to_block_mask())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_flex_attention_with_the_block_mask_equals_masked_sdpa():
    _flex_matches_masked_sdpa(block=32, t=256, compiled=False)


@pytest.mark.slow
def test_compiled_flex_attention_with_small_blocks():
    _flex_matches_masked_sdpa(block=32, t=128, compiled=True)


def test_equal_and_to():
    a, b, c = _mask(seed=1), _mask(seed=1), _mask(seed=2, top_k=1)
    assert a.equal(b) and not a.equal(c)
    assert a.to("cpu").equal(a)
