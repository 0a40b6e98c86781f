"""The CUDA path of `estimate_mask` (Triton block scoring) against the CPU reference."""

import warnings

import pytest
import torch

from stream_widgets import StreamConfig, estimate_mask
from stream_widgets import estimator as estimator_module
from stream_widgets.estimator import estimate_mask_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# (B, H, Hkv, T, D, config): GQA and MHA, T not a multiple of the blocks, head dims that are not powers
# of two, block sizes that are not either, and a T with fewer candidates than top_k (no search rounds).
CASES = [
    (1, 4, 2, 3001, 64, StreamConfig()),
    (2, 6, 3, 1537, 128, StreamConfig(q_block=32, k_block=8, top_k=8, sink=8, window=32)),
    (1, 3, 3, 2049, 80, StreamConfig(q_block=48, k_block=12, top_k=6, sink=0, window=20)),
    (1, 8, 1, 700, 32, StreamConfig(q_block=16, k_block=4, top_k=5, sink=4, window=8)),
    (1, 2, 1, 300, 64, StreamConfig(top_k=32)),
    (1, 4, 2, 4099, 64, StreamConfig(top_k=8, search_width=32, wide_rounds=0)),  # a wide start
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _integer_inputs(b, h, hkv, t, d, seed):
    """Small integers: every q.k is exact in fp32, bf16 and fp16 whatever the summation order."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randint(-2, 3, (b, h, t, d), generator=generator).float()
    k = torch.randint(-2, 3, (b, hkv, t, d), generator=generator).float()
    return q, k


def _recall(found, reference):
    """Share of the reference's kept (b, h, query block, key block) entries that `found` keeps too."""
    ref = reference.to_block_dense()
    return (found.to_block_dense() & ref).sum().item() / ref.sum().item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_cuda_path_equals_reference_on_exact_inputs(case, dtype):
    # Exact dot products (and many exact ties, which the stable sort must break the same way): the CUDA
    # mask must be the CPU reference's, bit for bit.
    b, h, hkv, t, d, config = CASES[case]
    q, k = _integer_inputs(b, h, hkv, t, d, seed=case)
    q, k = q.to(dtype), k.to(dtype)
    reference = estimate_mask_reference(q.float(), k.float(), config)
    found = estimate_mask(q.cuda(), k.cuda(), config)
    assert found.device.type == "cuda"
    assert found.to("cpu").equal(reference)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_cuda_path_matches_reference_on_random_inputs(case, dtype):
    # Gaussian inputs: only the summation order differs from the reference (fp32 accumulation), so a
    # near-tie can flip now and then; the masks must agree on all but a tiny share of blocks.
    b, h, hkv, t, d, config = CASES[case]
    generator = torch.Generator().manual_seed(100 + case)
    q = torch.randn(b, h, t, d, generator=generator).to(dtype)
    k = torch.randn(b, hkv, t, d, generator=generator).to(dtype)
    reference = estimate_mask_reference(q.float(), k.float(), config)
    found = estimate_mask(q.cuda(), k.cuda(), config).to("cpu")
    assert _recall(found, reference) >= 0.995
    if dtype == torch.float32:
        assert _recall(found, reference) >= 0.999


def test_cuda_path_accepts_non_contiguous_inputs():
    q, k = _integer_inputs(1, 4, 2, 1000, 64, seed=7)
    config = StreamConfig(top_k=8)
    reference = estimate_mask_reference(q, k, config)
    q_t = q.cuda().transpose(1, 2).contiguous().transpose(1, 2)  # [B, H, T, D] view of [B, T, H, D]
    k_t = k.cuda().transpose(1, 2).contiguous().transpose(1, 2)
    assert not q_t.is_contiguous()
    assert estimate_mask(q_t, k_t, config).to("cpu").equal(reference)


def test_chunking_does_not_change_the_cuda_result():
    q, k = _integer_inputs(1, 4, 2, 2000, 64, seed=3)
    q, k = q.cuda(), k.cuda()
    config = StreamConfig(top_k=8)
    assert estimate_mask(q, k, config, max_chunk_bytes=1).equal(estimate_mask(q, k, config))


def test_bound_rule_on_cuda_matches_cpu():
    q, k = _integer_inputs(1, 4, 2, 1500, 32, seed=4)
    config = StreamConfig(top_k=8, score_rule="bound")
    assert estimate_mask(q.cuda(), k.cuda(), config).to("cpu").equal(estimate_mask(q, k, config))


def test_without_triton_falls_back_with_one_warning(monkeypatch):
    from stream_widgets import estimator_cuda

    monkeypatch.setattr(estimator_cuda, "triton_available", lambda: False)
    monkeypatch.setattr(estimator_module, "_warned_no_triton", False)
    q, k = _integer_inputs(1, 2, 1, 500, 32, seed=5)
    config = StreamConfig(top_k=4)
    with pytest.warns(RuntimeWarning, match="Triton"):
        first = estimate_mask(q.cuda(), k.cuda(), config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_mask(q.cuda(), k.cuda(), config)
    assert first.to("cpu").equal(estimate_mask(q, k, config))


def test_peak_memory_is_a_chunk_not_the_inputs():
    # 256k tokens, 8 query heads: an fp32 copy of q alone would be 1 GiB; the CUDA path stays near its
    # 512 MiB chunk budget plus the mask.
    t, d = 262_144, 128
    q = torch.randn(1, 8, t, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 2, t, d, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    mask = estimate_mask(q, k)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < 640 * 2**20, f"peak extra {extra / 2**20:.0f} MiB"
    assert mask.kv_num_blocks.shape == (1, 8, t // 64)
