"""Attention over a `StreamMask`, chunked so nothing T x T is ever allocated.

Three pieces, used by the tracer at every layer:

* `dense_attention` -- the model's ordinary causal attention plus each query's log-sum-exp (the softmax
  normaliser over all causal keys), from PyTorch's fused kernels (cuDNN, flash, memory-efficient) when
  one returns it, else computed in query chunks.
* `masked_chunks` -- walks the query blocks of a mask in chunks and yields, per chunk, the scaled logits
  of every kept (query, key) pair, laid out ``[B, H, n, q_block, K * k_block]`` (the kept key blocks of
  each query block side by side), with -inf where the pair is not kept (padding, non-causal, past T).
  Observe mode turns these into true probabilities with the dense log-sum-exp; sparse mode softmaxes
  them (renormalised over the mask) and multiplies with the gathered values.
* `reference_attention` -- the slow, obviously correct dense version of both, for tests (small T).

Memory: one chunk of gathered keys/values and logits, bounded by `max_chunk_bytes` (default 64 MiB on
the CPU, 512 MiB on CUDA), plus O(T) outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from stream_widgets.attention import repeat_kv
from stream_widgets.mask import StreamMask

__all__ = [
    "MaskedChunk",
    "dense_attention",
    "masked_chunks",
    "reference_attention",
    "sparse_attention",
]

DEFAULT_CHUNK_BYTES = 64 * 2**20
# Larger on CUDA: each chunk costs ~30 kernel launches whatever its size, and with 64 MiB a 128k-token,
# 12-head layer took 410 chunks, launch-bound (H200: 0.14 s per layer vs 0.03 s with 512 MiB).
CUDA_CHUNK_BYTES = 512 * 2**20
_NEG_INF = float("-inf")


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    *,
    max_chunk_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal softmax attention and its log-sum-exp, as the model's own SDPA computes it.

    Args:
        q: ``[B, H, T, D]`` post-RoPE queries.
        k: ``[B, Hkv, T, D]`` keys (H a multiple of Hkv).
        v: ``[B, Hkv, T, D]`` values.
        scale: Logit scale (usually D ** -0.5).
        max_chunk_bytes: Work budget of the chunked fallback; None for `DEFAULT_CHUNK_BYTES` on the CPU,
            `CUDA_CHUNK_BYTES` on CUDA.

    Returns:
        ``(out [B, H, T, D], lse [B, H, T] float32)``, lse = log sum_{j <= i} exp(scale q_i.k_j).

    Uses a fused kernel that returns the log-sum-exp with the output: flash on the CPU; cuDNN for CUDA
    fp16/bf16 (the kernel the plain forward's SDPA picks on Hopper, 1.7x faster than flash at 128k tokens
    on an H200, GQA inside the kernel; docs/benchmarks.md), else flash; memory-efficient attention for
    CUDA fp32. Other cases (or a CUDA kernel that refuses the shape) fall back to query chunks of
    O(chunk x T) memory.
    """
    heads = q.shape[1]
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        try:
            out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k, v, None, True, 0.0, True, False, scale=scale
            )[:2]
            return out, lse.reshape(q.shape[:3]).float()  # cuDNN's lse is [B, H, T, 1]
        except RuntimeError:  # no cuDNN attention for this GPU, head size or layout: flash
            pass
    k_rep, v_rep = repeat_kv(k, heads), repeat_kv(v, heads)
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k_rep, v_rep, 0.0, True, scale=scale
        )
        return out, lse.float()
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        result = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k_rep, v_rep, 0.0, True, False, scale=scale
        )
        return result[0], result[1].float()
    if q.device.type == "cuda" and q.dtype == torch.float32:
        try:
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k_rep, v_rep, None, True, 0.0, True, scale=scale
            )[:2]
            return out, lse[..., : q.shape[2]].float()  # the kernel pads lse's T axis to its block size
        except RuntimeError:  # a head size or layout the kernel does not take: the chunked path
            pass
    if max_chunk_bytes is None:
        max_chunk_bytes = CUDA_CHUNK_BYTES if q.is_cuda else DEFAULT_CHUNK_BYTES
    return _chunked_attention(q, k_rep, v_rep, scale, max_chunk_bytes)


def _chunked_attention(q, k, v, scale, max_chunk_bytes):
    b, h, t, _ = q.shape
    rows = max(1, max_chunk_bytes // max(1, 3 * 4 * b * h * t))
    outs, lses = [], []
    keys = torch.arange(t, device=q.device)
    for begin in range(0, t, rows):
        end = min(begin + rows, t)
        logits = torch.einsum("bhqd,bhkd->bhqk", q[:, :, begin:end].float(), k[:, :, :end].float()) * scale
        causal = keys[:end][None, :] <= torch.arange(begin, end, device=q.device)[:, None]
        logits = logits.masked_fill(~causal, _NEG_INF)
        lse = torch.logsumexp(logits, dim=-1)
        probs = torch.exp(logits - lse[..., None])
        outs.append(torch.einsum("bhqk,bhkd->bhqd", probs, v[:, :, :end].float()).to(q.dtype))
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


@dataclass(frozen=True)
class MaskedChunk:
    """The kept (query, key) pairs of a run of query blocks.

    Attributes:
        rows: The query blocks covered, ``slice(first, end)``; n = end - first.
        logits: float32 ``[B, H, n, q_block, K * k_block]``: scale * q.k for kept pairs, -inf elsewhere.
            Column ``j * k_block + r`` is key ``kv_indices[..., j] * k_block + r``.
        key_pos: int64 ``[B, H, n, K * k_block]``: the key position of every column (may be >= T where
            the column is padding; such columns have -inf logits).
        query_pos: int64 ``[n, q_block]``: the query position of every row (>= T for padding rows).
        values: ``[B, H, n, K * k_block, D]`` float32 gathered values, or None unless asked for.
    """

    rows: slice
    logits: torch.Tensor
    key_pos: torch.Tensor
    query_pos: torch.Tensor
    values: torch.Tensor | None


def masked_chunks(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: StreamMask,
    scale: float,
    *,
    v: torch.Tensor | None = None,
    max_chunk_bytes: int | None = None,
) -> Iterator[MaskedChunk]:
    """Yield the logits of the mask's kept pairs, a chunk of query blocks at a time.

    Args:
        q: ``[B, H, T, D]`` queries.
        k: ``[B, Hkv, T, D]`` keys; each query head reads its KV head's keys.
        mask: The mask ``[B, H, T, T]``; token-level causality applies inside kept blocks.
        scale: Logit scale.
        v: ``[B, Hkv, T, D]`` values to gather alongside (sparse attention), or None.
        max_chunk_bytes: Bound on one chunk's buffers; None for `DEFAULT_CHUNK_BYTES` on the CPU,
            `CUDA_CHUNK_BYTES` on CUDA.

    Cost: O(retained blocks x k_block x (q_block + D)) time; O(chunk) memory.
    """
    if max_chunk_bytes is None:
        max_chunk_bytes = CUDA_CHUNK_BYTES if q.is_cuda else DEFAULT_CHUNK_BYTES
    b, h, t, d = q.shape
    qb, kb = mask.q_block, mask.k_block
    num_q, num_k = mask.num_q_blocks, mask.num_k_blocks
    width = mask.kv_indices.shape[-1]
    device = q.device
    q_blocks = torch.nn.functional.pad(q, (0, 0, 0, num_q * qb - t)).view(b, h, num_q, qb, d)
    k_blocks = torch.nn.functional.pad(k, (0, 0, 0, num_k * kb - t)).view(b, k.shape[1], num_k, kb, d)
    v_blocks = None
    if v is not None:
        v_blocks = torch.nn.functional.pad(v, (0, 0, 0, num_k * kb - t)).view(b, v.shape[1], num_k, kb, d)
    # Gather through one flat index over (batch, KV head, key block): cheaper than broadcast indexing.
    hkv = k.shape[1]
    base = (
        torch.arange(b, device=device)[:, None] * hkv + torch.arange(h, device=device) // (h // hkv)
    ) * num_k
    k_flat = k_blocks.reshape(b * hkv * num_k, kb, d)
    v_flat = None if v_blocks is None else v_blocks.reshape(b * hkv * num_k, kb, d)
    offsets = torch.arange(kb, device=device)
    valid = mask.valid()
    # per query block and head: gathered keys (+ values) and about four logit-sized temporaries
    per_row = 4 * b * h * width * kb * ((2 if v is not None else 1) * d + 4 * qb)
    step = max(1, max_chunk_bytes // per_row)
    for first in range(0, num_q, step):
        rows = slice(first, min(first + step, num_q))
        index = mask.kv_indices[:, :, rows].to(torch.int64)  # [B, H, n, K]
        n = index.shape[2]
        flat = (base[:, :, None, None] + index).reshape(-1)
        keys = k_flat.index_select(0, flat).float().reshape(b, h, n, width * kb, d)
        logits = torch.einsum("bhnqd,bhnkd->bhnqk", q_blocks[:, :, rows].float(), keys)
        logits.mul_(scale)
        key_pos = (index[..., None] * kb + offsets).reshape(b, h, n, width * kb)
        key_ok = valid[:, :, rows].repeat_interleave(kb, dim=-1) & (key_pos < t)
        # Only the diagonal blocks are partly causal, but one broadcast comparison is cheaper than
        # finding them; it also rules out padding columns and padding query rows.
        query_pos = (torch.arange(rows.start, rows.stop, device=device) * qb)[:, None] + torch.arange(
            qb, device=device
        )
        last_key = torch.where(query_pos < t, query_pos, -1)  # padding query rows see no key
        seen_from = key_pos.masked_fill(~key_ok, t)  # the first query position that sees each column
        first = _first_masked_column(seen_from, last_key) if device.type == "cpu" else 0
        masked = seen_from[:, :, :, None, first:] > last_key[None, None, :, :, None]
        logits[..., first:].masked_fill_(masked, _NEG_INF)
        values = None
        if v_flat is not None:
            values = v_flat.index_select(0, flat).float().reshape(b, h, n, width * kb, d)
        yield MaskedChunk(rows, logits, key_pos, query_pos, values)


def _first_masked_column(seen_from: torch.Tensor, last_key: torch.Tensor) -> int:
    """The first column any query of the chunk does not see (`seen_from` ``[B, H, n, C]``, `last_key`
    ``[n, q_block]``); C if none. Columns before it need no mask.

    The kept blocks ascend, so only the last few columns of a row (the diagonal blocks and the padding)
    are masked: at the default sizes, about a tenth. Reading the column back is free on the CPU, a
    stall on CUDA, which masks every column instead.
    """
    partial = (seen_from > last_key.amin(dim=1)[:, None]).flatten(0, 2).any(dim=0)  # [C]
    return int(partial.to(torch.uint8).argmax()) if bool(partial.any()) else partial.shape[0]


def _softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis that gives 0 (not NaN) for rows with no kept key (padding rows)."""
    top = logits.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)
    weights = torch.exp(logits - top)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).tiny)


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: StreamMask,
    scale: float,
    *,
    max_chunk_bytes: int | None = None,
) -> Iterator[tuple[MaskedChunk, torch.Tensor, torch.Tensor]]:
    """Attention restricted to the mask (softmax renormalised over the kept keys), chunk by chunk.

    Yields ``(chunk, probs, out)`` with probs float32 ``[B, H, n, q_block, K * k_block]`` and out
    float32 ``[B, H, n, q_block, D]``; the caller stitches the chunks' outputs back into ``[B, H, T, D]``.
    """
    for chunk in masked_chunks(q, k, mask, scale, v=v, max_chunk_bytes=max_chunk_bytes):
        probs = _softmax_rows(chunk.logits)
        out = torch.einsum("bhnqk,bhnkd->bhnqd", probs, chunk.values)
        yield chunk, probs, out


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense causal attention, optionally restricted to a boolean mask: the slow reference. Small T only.

    Args:
        q: ``[B, H, T, D]``; k, v: ``[B, Hkv, T, D]``.
        scale: Logit scale.
        keep: bool ``[B, H, T, T]`` pairs to attend to (e.g. `StreamMask.to_dense()`), or None for causal.

    Returns:
        ``(out [B, H, T, D], lse [B, H, T], probs [B, H, T, T])`` in float32; allocates T x T per head.
    """
    t = q.shape[2]
    heads = q.shape[1]
    logits = torch.einsum("bhqd,bhkd->bhqk", q.float(), repeat_kv(k, heads).float()) * scale
    allowed = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    if keep is not None:
        allowed = allowed & keep
    logits = logits.masked_fill(~allowed, _NEG_INF)
    lse = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", probs, repeat_kv(v, heads).float()), lse, probs
