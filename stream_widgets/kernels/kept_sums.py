"""Triton kernel: the observe-mode records of a layer, summed from the model's probabilities in one pass.

Imports Triton at module level: import this module only where Triton is known to be installed (the
tracer does so lazily, for CUDA inputs).

Observe mode records, for the kept (query, key) pairs of a `StreamMask`, the model's true probabilities
p = exp(scale q.k - lse), lse the dense attention's log-sum-exp. The tracer keeps their sums only
(retained mass per query, probability per query block and kept key block, sentence-pair sums), so this
kernel never writes the probabilities: one program per block row (b, h, query block) loads the row's
queries and their lse once, then, `BRANCHES` kept key blocks at a time, reads those keys straight from k
(no gathered copy), takes one `tl.dot`, and reduces the probabilities into the sums in registers. The
sentence-pair sums go to global memory with atomic adds: one per (query-sentence run, kept block) where
a key block lies inside one sentence, one per (query, key) pair only for the few blocks a sentence
boundary cuts. Accumulation is fp32; fp32 inputs use IEEE fp32 products (not tf32).

Memory: the outputs only, O(T x K) per head; work O(kept pairs x D).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from stream_widgets.kernels.block_score import branches_per_dot
from stream_widgets.mask import StreamMask

__all__ = ["kept_sums"]


@triton.jit
def _kept_sums_kernel(
    q_ptr,
    k_ptr,
    lse_ptr,
    num_ptr,
    idx_ptr,
    sid_ptr,
    mass_ptr,
    blocks_ptr,
    sums_ptr,
    scale,
    seq_len,
    heads,
    group,
    num_q_blocks,
    num_sentences,
    sq_b,
    sq_h,
    sq_t,
    sq_d,
    sk_b,
    sk_h,
    sk_t,
    sk_d,
    WIDTH: tl.constexpr,
    Q_BLOCK: tl.constexpr,
    K_BLOCK: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    QP: tl.constexpr,
    KP: tl.constexpr,
    DP: tl.constexpr,
    BRANCHES: tl.constexpr,
    SENTENCES: tl.constexpr,
    IEEE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # (b, h, query block), flat
    q_block_index = row % num_q_blocks
    bh = row // num_q_blocks
    h = bh % heads
    b = bh // heads
    kv_head = h // group

    dims = tl.arange(0, DP)
    dim_ok = dims < HEAD_DIM
    q_lane = tl.arange(0, QP)
    q_pos = q_block_index * Q_BLOCK + q_lane
    q_ok = (q_lane < Q_BLOCK) & (q_pos < seq_len)
    q_ptrs = q_ptr + b * sq_b + h * sq_h + q_pos[:, None] * sq_t + dims[None, :] * sq_d
    queries = tl.load(q_ptrs, mask=q_ok[:, None] & dim_ok[None, :], other=0.0)
    lse = tl.load(lse_ptr + bh * seq_len + q_pos, mask=q_ok, other=0.0)

    num = tl.load(num_ptr + row)
    k_base = k_ptr + b * sk_b + kv_head * sk_h
    lanes = tl.arange(0, BRANCHES * KP)
    lane_branch = lanes // KP
    lane_key = lanes % KP
    if SENTENCES:
        q_sid = tl.load(sid_ptr + q_pos, mask=q_ok, other=-1)
        q_first = tl.min(tl.where(q_ok, q_sid, num_sentences))
        # Every real query of the row in one sentence: block sums can add per block.
        one_q_sentence = (q_first == tl.max(tl.where(q_ok, q_sid, -1))) & (q_first >= 0)
        head_sums = sums_ptr + bh * num_sentences * num_sentences

    mass = tl.zeros([QP], dtype=tl.float32)
    for step in range(0, tl.cdiv(WIDTH, BRANCHES)):
        branch = step * BRANCHES + lane_branch
        block = tl.load(idx_ptr + row * WIDTH + branch, mask=branch < WIDTH, other=0).to(tl.int64)
        k_pos = block * K_BLOCK + lane_key
        k_ok = (branch < num) & (lane_key < K_BLOCK) & (k_pos < seq_len)
        k_ptrs = k_base + k_pos[:, None] * sk_t + dims[None, :] * sk_d
        keys = tl.load(k_ptrs, mask=k_ok[:, None] & dim_ok[None, :], other=0.0)
        if IEEE:
            logits = tl.dot(queries, tl.trans(keys), input_precision="ieee")
        else:
            logits = tl.dot(queries, tl.trans(keys))
        ok = q_ok[:, None] & k_ok[None, :] & (k_pos[None, :] <= q_pos[:, None])
        probs = tl.where(ok, tl.exp(logits * scale - lse[:, None]), 0.0)  # [QP, BRANCHES * KP]
        mass += tl.sum(probs, axis=1)
        per_query = tl.sum(tl.reshape(probs, (QP, BRANCHES, KP)), axis=2)  # [QP, BRANCHES]
        per_block = tl.sum(per_query, axis=0)  # [BRANCHES]
        out_branch = step * BRANCHES + tl.arange(0, BRANCHES)
        tl.store(blocks_ptr + row * WIDTH + out_branch, per_block, mask=out_branch < WIDTH)
        if SENTENCES:
            # (sentence ids are padded to whole blocks; lanes past k_block read -1)
            k_sid = tl.load(sid_ptr + k_pos, mask=(branch < WIDTH) & (lane_key < K_BLOCK), other=-1)
            k_sid2 = tl.reshape(k_sid, (BRANCHES, KP))
            in_block = tl.reshape(lane_key, (BRANCHES, KP)) < K_BLOCK
            first = tl.min(tl.where(in_block, k_sid2, num_sentences), axis=1)  # [BRANCHES]
            last = tl.max(k_sid2, axis=1)
            kept = out_branch < num
            whole = kept & (first == last)
            # Blocks inside one sentence: one add per block (per query where the row spans sentences).
            if one_q_sentence:
                tl.atomic_add(
                    head_sums + q_first * num_sentences + first,
                    per_block,
                    mask=whole & (first >= 0),
                )
            else:
                tl.atomic_add(
                    head_sums + q_sid[:, None] * num_sentences + first[None, :],
                    per_query,
                    mask=(whole & (first >= 0))[None, :] & (q_sid >= 0)[:, None],
                )
            # Blocks a sentence boundary cuts: one add per (query, key) pair.
            split = kept & (first != last)
            if tl.max(split.to(tl.int32)) > 0:
                lane_split = tl.reshape(tl.broadcast_to(split[:, None], (BRANCHES, KP)), (BRANCHES * KP,))
                tl.atomic_add(
                    head_sums + q_sid[:, None] * num_sentences + k_sid[None, :],
                    probs,
                    mask=(q_sid >= 0)[:, None] & (lane_split & (k_sid >= 0))[None, :],
                )
    tl.store(mass_ptr + row * Q_BLOCK + q_lane, mass, mask=q_lane < Q_BLOCK)


def kept_sums(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    mask: StreamMask,
    scale: float,
    *,
    sentence_ids: torch.Tensor | None = None,
    sums: torch.Tensor | None = None,
    num_sentences: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Observe-mode sums of the true probabilities exp(scale q.k - lse) over the mask's kept pairs.

    Args:
        q: ``[B, H, T, D]`` CUDA queries (fp32, bf16 or fp16; any strides).
        k: ``[B, Hkv, T, D]`` keys, same dtype and device.
        lse: ``[B, H, T]`` float32 log-sum-exp of every query over all its causal keys.
        mask: The layer's mask.
        scale: Logit scale.
        sentence_ids: int64 sentence of every position, padded with -1 to at least
            ``num_k_blocks * k_block`` and ``num_q_blocks * q_block`` positions; with `sums`, or None.
        sums: float32 ``[B * H * S * S]`` sentence-pair sums to add into (in place), or None.
        num_sentences: S.

    Returns:
        ``(mass [B, H, Qb * q_block], blocks [B, H, Qb, K])`` float32: each query's summed probability
        (0 for padding positions past T) and each (query block, kept key block)'s (0 past the count).
    """
    b, h, t, d = q.shape
    width = mask.kv_indices.shape[-1]
    num_q = mask.num_q_blocks
    mass = torch.empty(b, h, num_q * mask.q_block, device=q.device, dtype=torch.float32)
    blocks = torch.empty(b, h, num_q, width, device=q.device, dtype=torch.float32)
    rows = b * h * num_q
    if rows == 0 or width == 0:
        return mass.zero_(), blocks.zero_()
    with_sentences = sums is not None and num_sentences > 0
    if with_sentences:
        assert sentence_ids is not None and sentence_ids.numel() >= max(
            mask.num_k_blocks * mask.k_block, num_q * mask.q_block
        ), "sentence ids must be padded to whole blocks"
    kp = triton.next_power_of_2(mask.k_block)
    branches = branches_per_dot(kp, width)
    dummy = mass  # pointer arguments the kernel does not read without sentence sums
    _kept_sums_kernel[(rows,)](
        q,
        k,
        lse.contiguous(),
        mask.kv_num_blocks.contiguous(),
        mask.kv_indices.contiguous(),
        sentence_ids if with_sentences else dummy,
        mass,
        blocks,
        sums if with_sentences else dummy,
        scale,
        t,
        h,
        h // k.shape[1],
        num_q,
        num_sentences,
        *q.stride(),
        *k.stride(),
        WIDTH=width,
        Q_BLOCK=mask.q_block,
        K_BLOCK=mask.k_block,
        HEAD_DIM=d,
        QP=max(16, triton.next_power_of_2(mask.q_block)),
        KP=kp,
        DP=max(16, triton.next_power_of_2(d)),
        BRANCHES=branches,
        SENTENCES=with_sentences,
        IEEE=q.dtype == torch.float32,
        num_warps=4,
        num_stages=2,
    )
    return mass, blocks
