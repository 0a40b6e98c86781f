"""The CUDA path of `estimate_mask`: the same hierarchical search, block scores from a Triton kernel.

`estimate_mask` dispatches here for CUDA inputs with the ``representative`` score rule when Triton is
installed. The search (ranges, halving, stable top-k, assembly) is the reference's, op for op, in plain
torch; only the block scoring differs: the reference upcasts q and k to fp32 and gathers the
representative key blocks into a ``[R, 2 top_k, k_block, D]`` buffer for a bmm, while
`stream_widgets.kernels.block_score` reads the queries and the representative blocks straight from q and
k in their own dtype. So the masks agree with the reference up to the summation order of q.k
(bit-for-bit where the dot products are exact, e.g. small-integer inputs).

Memory: the mask (O(T)) plus one chunk of int64/fp32 work buffers, about ``2 top_k x 64`` bytes per
block row, bounded by `max_chunk_bytes` (default 512 MiB). Nothing is upcast or copied at full size.
"""

from __future__ import annotations

import importlib.util

import torch

from stream_widgets import search
from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask

__all__ = ["CUDA_CHUNK_BYTES", "estimate_mask_cuda", "triton_available"]

# Larger than the reference's 64 MiB: each chunk costs ~15 launches per round, and 512 MiB keeps a
# 1M-token, 32-head layer at four chunks while its peak stays far under 2 GiB.
CUDA_CHUNK_BYTES = 512 * 2**20


def triton_available() -> bool:
    """Whether Triton can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def estimate_mask_cuda(
    q: torch.Tensor,
    k: torch.Tensor,
    config: StreamConfig,
    *,
    max_chunk_bytes: int = CUDA_CHUNK_BYTES,
) -> StreamMask:
    """`estimate_mask` on CUDA with Triton block scoring; inputs are already checked by the caller.

    Args:
        q: ``[B, H, T, D]`` CUDA queries (fp32, bf16 or fp16).
        k: ``[B, Hkv, T, D]`` CUDA keys.
        config: Settings; ``score_rule`` must be ``"representative"``.
        max_chunk_bytes: Work-buffer budget per chunk of block rows.

    Returns:
        The same `StreamMask` as the reference, up to ties that rounding can flip.
    """
    from stream_widgets.kernels.block_score import block_scores

    assert config.score_rule == "representative", "the bound rule runs on the reference path"
    if q.dtype != k.dtype:
        common = torch.promote_types(q.dtype, k.dtype)
        q, k = q.to(common), k.to(common)
    b, h, t, _ = q.shape
    num_q_blocks = -(-t // config.q_block)
    num_k_blocks = -(-t // config.k_block)
    total_rows = b * h * num_q_blocks
    rounds = search.num_rounds(t, config)

    width = config.max_blocks_per_row
    nums = torch.empty(total_rows, device=q.device, dtype=torch.int32)
    idxs = torch.empty(total_rows, width, device=q.device, dtype=torch.int32)
    # lo2, hi2, centres, sort indices (int64) and scores, sorted scores (fp32) per branch, with slack.
    per_row = 2 * config.width * 64
    chunk = max(1, min(total_rows, max_chunk_bytes // per_row))
    for begin in range(0, total_rows, chunk):
        end = min(begin + chunk, total_rows)
        block = torch.arange(begin, end, device=q.device, dtype=torch.int64) % num_q_blocks
        layout = search.layout(block[:, None], t, config)
        start = layout.sink_end[:, 0]
        count = layout.local_start[:, 0] - start

        def score_halves(lo2, hi2, last_round, begin=begin):
            return block_scores(q, k, (lo2 + hi2 - 1) // 2, begin, config.q_block, config.k_block)

        selected, valid = search.search(start, count, config, rounds, score_halves)
        num, idx = search.assemble(selected, valid, layout, config, num_k_blocks)
        nums[begin:end] = num
        idxs[begin:end] = idx
    return search.to_mask(nums, idxs, q, config)
