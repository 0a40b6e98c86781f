"""Triton kernel: the block score of many (block row, key block) pairs, read straight from q and k.

Imports Triton at module level: import this module only where Triton is known to be installed
(`stream_widgets.estimator_cuda` does so lazily).

One program handles one block row (b, h, query block) and all its N branches: it loads the row's
``[q_block, D]`` queries once, then, `BRANCHES` branches at a time, the representative key blocks
``[BRANCHES * k_block, D]`` by index from k (no gathered copy), one `tl.dot`, and a max over queries
and keys per branch. Accumulation is fp32; fp32 inputs use IEEE fp32 products (not tf32), so the
scores are the reference's up to summation order.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["block_scores", "branches_per_dot"]


@triton.jit
def _block_score_kernel(
    q_ptr,
    k_ptr,
    blocks_ptr,
    out_ptr,
    row_offset,
    seq_len,
    heads,
    group,
    num_q_blocks,
    num_k_blocks,
    sq_b,
    sq_h,
    sq_t,
    sq_d,
    sk_b,
    sk_h,
    sk_t,
    sk_d,
    N: tl.constexpr,
    Q_BLOCK: tl.constexpr,
    K_BLOCK: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    QP: tl.constexpr,
    KP: tl.constexpr,
    DP: tl.constexpr,
    BRANCHES: tl.constexpr,
    IEEE: tl.constexpr,
):
    pid = tl.program_id(0)
    row = (row_offset + pid).to(tl.int64)
    q_block_index = row % num_q_blocks
    bh = row // num_q_blocks
    h = bh % heads
    b = bh // heads
    kv_head = h // group

    dims = tl.arange(0, DP)
    dim_ok = dims < HEAD_DIM
    # Rows past the block (padding to a power of two) and past T repeat the block's last query:
    # the max over the block is unchanged, as in the reference's padding.
    q_pos = q_block_index * Q_BLOCK + tl.minimum(tl.arange(0, QP), Q_BLOCK - 1)
    q_pos = tl.minimum(q_pos, seq_len - 1)
    q_ptrs = q_ptr + b * sq_b + h * sq_h + q_pos[:, None] * sq_t + dims[None, :] * sq_d
    queries = tl.load(q_ptrs, mask=dim_ok[None, :], other=0.0)

    k_base = k_ptr + b * sk_b + kv_head * sk_h
    lanes = tl.arange(0, BRANCHES * KP)
    lane_branch = lanes // KP
    # Padding lanes repeat the block's last key: again the max is unchanged.
    lane_key = tl.minimum(lanes % KP, K_BLOCK - 1)
    blocks_row = blocks_ptr + pid.to(tl.int64) * N
    out_row = out_ptr + pid.to(tl.int64) * N
    for step in range(0, tl.cdiv(N, BRANCHES)):
        branch = step * BRANCHES + lane_branch
        branch_ok = branch < N
        block = tl.load(blocks_row + branch, mask=branch_ok, other=0)
        block = tl.minimum(tl.maximum(block, 0), num_k_blocks - 1).to(tl.int64)
        k_pos = block * K_BLOCK + lane_key
        # Keys past T read as zeros, like the reference's zero padding of the last key block.
        k_ptrs = k_base + k_pos[:, None] * sk_t + dims[None, :] * sk_d
        keys = tl.load(k_ptrs, mask=(k_pos < seq_len)[:, None] & dim_ok[None, :], other=0.0)
        if IEEE:
            logits = tl.dot(queries, tl.trans(keys), input_precision="ieee")
        else:
            logits = tl.dot(queries, tl.trans(keys))
        per_key = tl.max(logits, axis=0)  # [BRANCHES * KP]
        per_branch = tl.max(tl.reshape(per_key, (BRANCHES, KP)), axis=1)
        out_branch = step * BRANCHES + tl.arange(0, BRANCHES)
        tl.store(out_row + out_branch, per_branch, mask=out_branch < N)


def branches_per_dot(key_lanes: int, n: int) -> int:
    """Key blocks of `key_lanes` (a power of two) to score per `tl.dot` out of `n`: about 64 key lanes per
    dot (tl.dot needs at least 16), no more blocks than there are."""
    return max(min(max(1, 64 // key_lanes), triton.next_power_of_2(n)), -(-16 // key_lanes))


def block_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    blocks: torch.Tensor,
    row_offset: int,
    q_block: int,
    k_block: int,
    *,
    branches: int | None = None,
    num_warps: int = 2,
    num_stages: int = 2,
) -> torch.Tensor:
    """Exact block scores of R consecutive block rows, starting at global row `row_offset`.

    Args:
        q: ``[B, H, T, D]`` queries on CUDA (fp32, bf16 or fp16; any strides).
        k: ``[B, Hkv, T, D]`` keys, same dtype and device.
        blocks: ``[R, N]`` int64 key-block indices (clamped into range; callers mask invalid ones).
            Row r is the block row ``row_offset + r`` in (b, h, query block) order.
        row_offset: Global index of the first block row.
        branches, num_warps, num_stages: Launch settings (branches scored per `tl.dot`; None: about 64
            key lanes per dot). The defaults are the fastest of `benchmarks/gpu.py --launch-sweep` at 1M
            tokens on an H200 (2 warps, 2 stages: 0.84x the time of 4 warps, 3 stages).

    Returns:
        ``[R, N]`` fp32: max over the row's queries and the block's keys of q.k. Memory: the output only.
    """
    b, h, t, d = q.shape
    rows, n = blocks.shape
    out = torch.empty(rows, n, device=q.device, dtype=torch.float32)
    if rows == 0:
        return out
    blocks = blocks.contiguous()
    qp = max(16, triton.next_power_of_2(q_block))
    kp = triton.next_power_of_2(k_block)
    dp = max(16, triton.next_power_of_2(d))
    if branches is None:
        branches = branches_per_dot(kp, n)
    _block_score_kernel[(rows,)](
        q,
        k,
        blocks,
        out,
        row_offset,
        t,
        h,
        h // k.shape[1],
        -(-t // q_block),
        -(-t // k_block),
        *q.stride(),
        *k.stride(),
        N=n,
        Q_BLOCK=q_block,
        K_BLOCK=k_block,
        HEAD_DIM=d,
        QP=qp,
        KP=kp,
        DP=dp,
        BRANCHES=branches,
        IEEE=q.dtype == torch.float32,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return out
