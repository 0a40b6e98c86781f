"""The Stream sparse-mask estimator: hierarchical top-k key-block search, and its exact oracle.

For every query head and every block of `q_block` queries, `estimate_mask` picks the `top_k` key blocks
(of `k_block` keys) with the highest block score, max over (query in block, key in block) of q.k, without
scoring every block: it cuts the candidate blocks into `top_k` ranges and, round after round, splits
every range in two, scores each half cheaply and keeps the `top_k` best halves, until every range is one
block (HiP attention's binary-search refinement). `oracle_mask` scores every candidate block and keeps the
exact top-k: O(T^2), the reference that tests and benchmarks compare against.

Cost of the search, per head: (T / q_block) query blocks x ceil(log2(n / top_k)) rounds x 2 top_k
halves, each scored with q_block x k_block x D multiply-adds (``representative`` rule) or
q_block x D (``bound`` rule): O(T log T) time. Memory: the mask, O(T), plus the work buffers of one
chunk of query blocks (`max_chunk_bytes`), plus O(T x D) key summaries for the ``bound`` rule. No tensor
of size T x T, nor (T / k_block)^2, is ever allocated.

Every shape is static (ranges are padded and empty ranges score -inf), so `estimate_mask` compiles with
``torch.compile(fullgraph=True)`` and gives the same mask as eager.
"""

from __future__ import annotations

import warnings

import torch

from stream_widgets import search
from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask

__all__ = ["estimate_mask", "estimate_mask_reference", "oracle_mask"]

# Work buffers of one chunk of query blocks; the result does not depend on it, only the peak memory.
DEFAULT_CHUNK_BYTES = 64 * 2**20
# The oracle is O(T^2): refuse sizes where it would run for minutes on a CPU.
_ORACLE_LIMIT = 65_536


def _check_inputs(q: torch.Tensor, k: torch.Tensor, config: StreamConfig | None) -> StreamConfig:
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"q and k must be torch.Tensors, got {type(q).__name__} and {type(k).__name__}")
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(
            f"q must be [B, H, T, D] and k [B, Hkv, T, D]; got q.dim()={q.dim()}, k.dim()={k.dim()}"
        )
    if not q.is_floating_point() or not k.is_floating_point():
        raise TypeError(f"q and k must be floating point, got {q.dtype} and {k.dtype}")
    (b, h, t, d), (bk, hkv, tk, dk) = q.shape, k.shape
    if (b, t, d) != (bk, tk, dk):
        raise ValueError(
            f"q [B, H, T, D]={tuple(q.shape)} and k [B, Hkv, T, D]={tuple(k.shape)} must agree on B, T and D"
        )
    if hkv == 0 or h % hkv != 0:
        raise ValueError(f"query heads ({h}) must be a multiple of key heads ({hkv}) for GQA/MQA")
    if t == 0:
        raise ValueError("empty sequence: q and k have T = 0 positions")
    if b == 0 or h == 0 or d == 0:
        raise ValueError(f"q [B, H, T, D]={tuple(q.shape)} is empty: B, H and D must be >= 1")
    if q.device != k.device:
        raise ValueError(f"q and k are on different devices ({q.device}, {k.device})")
    # NaN and inf propagate through a sum (accumulated in fp32, no copy of q or k): one read of each.
    # (Skipped under torch.compile, where a data-dependent branch would break the graph.)
    for name, x in (("q", q), ("k", k)):
        if not torch.compiler.is_compiling() and not torch.isfinite(x.sum(dtype=torch.float32)):
            raise ValueError(
                f"{name} holds NaN or infinite values: the model's weights or activations are not finite "
                "(check the weights; in float16, try bfloat16 or float32)"
            )
    if config is None:
        config = StreamConfig()
    if not isinstance(config, StreamConfig):
        raise TypeError(f"config must be a StreamConfig, got {type(config).__name__}")
    return search.fit(config, t)


def _blocked(q: torch.Tensor, k: torch.Tensor, config: StreamConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad and reshape into block rows: q ``[B*H*Qb, q_block, D]``, k ``[B*Hkv*Kb, k_block, D]`` (fp32).

    The last query block is padded by repeating the last query, which leaves every max over the block
    unchanged; the last key block is padded with zeros (it is never a candidate, being local).
    """
    (b, h, t, d), hkv = q.shape, k.shape[1]
    qb, kb = config.q_block, config.k_block
    q_pad = -t % qb
    k_pad = -t % kb
    q = q.to(torch.float32)
    k = k.to(torch.float32)
    if q_pad:
        q = torch.cat([q, q[:, :, -1:].expand(b, h, q_pad, d)], dim=2)
    if k_pad:
        k = torch.cat([k, k.new_zeros(b, hkv, k_pad, d)], dim=2)
    return q.reshape(-1, qb, d), k.reshape(-1, kb, d)


def _row_ids(q: torch.Tensor, k: torch.Tensor, config: StreamConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """For every block row (b, h, query block): its query-block index and its KV-head row, int64 ``[B*H*Qb]``."""
    (b, h, t, _), hkv = q.shape, k.shape[1]
    num_q_blocks = -(-t // config.q_block)
    device = q.device
    block = torch.arange(num_q_blocks, device=device, dtype=torch.int64).repeat(b * h)
    kv_head = torch.arange(hkv, device=device, dtype=torch.int64).repeat_interleave(h // hkv)  # GQA groups
    kv_row = torch.arange(b, device=device, dtype=torch.int64)[:, None] * hkv + kv_head[None, :]
    return block, kv_row.repeat_interleave(num_q_blocks).reshape(-1)


def _chunk_rows(total: int, bytes_per_row: int, max_chunk_bytes: int) -> int:
    return max(1, min(total, max_chunk_bytes // max(bytes_per_row, 1)))


def _block_scores(
    q_rows: torch.Tensor,
    k_blocks: torch.Tensor,
    kv_row: torch.Tensor,
    blocks: torch.Tensor,
    num_k_blocks: int,
    needed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact block score: max over the row's queries and the block's keys of q.k.

    Args:
        q_rows: ``[R, q_block, D]`` the queries of R block rows.
        k_blocks: ``[B*Hkv*Kb, k_block, D]`` all key blocks.
        kv_row: ``[R]`` the KV-head row of each block row.
        blocks: ``[R, N]`` key-block indices to score (clamped into range; callers mask invalid ones).
        needed: bool ``[R, N]``, the scores wanted, or None for all. On the CPU the others may be
            skipped: their values are undefined (-inf where skipped).

    Returns:
        ``[R, N]`` fp32 scores. Memory: R x N x k_block x (D + q_block) floats.
    """
    flat = kv_row[:, None] * num_k_blocks + blocks.clamp(0, num_k_blocks - 1)
    if q_rows.device.type == "cpu":
        return _block_scores_cpu(q_rows, k_blocks, flat, needed)
    return _gathered_scores(q_rows, k_blocks, flat)


# Block rows scored per product on the CPU (of 4 to 64, 8 and 16 were fastest on SmolLM2's q/k at 4k and
# 8k tokens in throwaway timings; the paired benchmark is in docs/benchmarks.md).
_CPU_SCORE_ROWS = 8


def _block_scores_cpu(
    q_rows: torch.Tensor, k_blocks: torch.Tensor, flat: torch.Tensor, needed: torch.Tensor | None
) -> torch.Tensor:
    """`_block_scores` on the CPU, a few rows per product, whose keys and scores stay in the cache (a
    whole 64 MiB chunk's products run memory-bound).

    Outside torch.compile, only the `needed` blocks are scored: each row's moved to its front (a stable
    sort), each product as wide as its rows' most (the search's empty halves are a fifth to a quarter of
    its halves at 4k-8k tokens, more in the last round).
    """
    r, n = flat.shape
    step = _CPU_SCORE_ROWS
    if needed is None or torch.compiler.is_compiling():
        pieces = [
            _gathered_scores(q_rows[i : i + step], k_blocks, flat[i : i + step]) for i in range(0, r, step)
        ]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
    order = torch.sort((~needed).to(torch.uint8), dim=1, stable=True).indices  # the needed first
    flat = flat.gather(1, order)
    counts = needed.sum(dim=1).tolist()
    scores = q_rows.new_full((r, n), float("-inf"))
    for i in range(0, r, step):
        width = max(counts[i : i + step])
        if width:
            scores[i : i + step, :width] = _gathered_scores(
                q_rows[i : i + step], k_blocks, flat[i : i + step, :width]
            )
    return torch.empty_like(scores).scatter_(1, order, scores)


def _gathered_scores(q_rows: torch.Tensor, k_blocks: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Block scores of rows ``[R, q_block, D]`` against the key blocks ``flat [R, N]`` (rows of `k_blocks`)."""
    r, n = flat.shape
    keys = k_blocks.index_select(0, flat.reshape(-1)).reshape(
        r, n * k_blocks.shape[1], -1
    )  # [R, N*k_block, D]
    scores = torch.bmm(keys, q_rows.transpose(1, 2))  # [R, N*k_block, q_block]
    # One reduction over each block's keys and queries (on the CPU faster than two in a row).
    return scores.view(r, n, k_blocks.shape[1], -1).amax(dim=(2, 3))


def _range_summaries(
    k_blocks: torch.Tensor, num_k_blocks: int, levels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension key max and min over every range of 2^l blocks starting at every block.

    A sparse table: level l, entry j summarises key blocks [j, j + 2^l). Any range [lo, hi) is the union
    of the two (overlapping) level-floor(log2(hi - lo)) entries at lo and at hi - 2^l, and max/min do not
    mind the overlap.

    Returns:
        kmax, kmin: ``[levels * B*Hkv*Kb, D]`` (level-major). Memory: O(levels x T / k_block x D).
    """
    d = k_blocks.shape[-1]
    kmax = [k_blocks.amax(dim=1).view(-1, num_k_blocks, d)]
    kmin = [k_blocks.amin(dim=1).view(-1, num_k_blocks, d)]
    for level in range(1, levels):
        step = 1 << (level - 1)
        prev_max, prev_min = kmax[-1], kmin[-1]
        # Entries whose range would run past the end are never read; padding them keeps shapes static.
        kmax.append(
            torch.cat([torch.maximum(prev_max[:, :-step], prev_max[:, step:]), prev_max[:, -step:]], 1)
        )
        kmin.append(
            torch.cat([torch.minimum(prev_min[:, :-step], prev_min[:, step:]), prev_min[:, -step:]], 1)
        )
    return torch.stack(kmax).reshape(-1, d), torch.stack(kmin).reshape(-1, d)


def _bound_scores(
    q_rows: torch.Tensor,
    summaries: tuple[torch.Tensor, torch.Tensor],
    kv_row: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    num_kv_blocks_total: int,
    num_k_blocks: int,
) -> torch.Tensor:
    """Upper bound of q.k over key blocks [lo, hi): max over queries of sum_d max(q_d kmax_d, q_d kmin_d).

    max(q_d kmax_d, q_d kmin_d) is q_d kmax_d when q_d >= 0 and q_d kmin_d otherwise, so the bound is
    relu(q) @ kmax + min(q, 0) @ kmin: two matmuls. Ranges must be non-empty (callers mask empty ones).
    """
    kmax, kmin = summaries
    width = torch.clamp(hi - lo, min=1)
    level = torch.floor(torch.log2(width.to(torch.float32))).to(torch.int64)
    base = level * num_kv_blocks_total + kv_row[:, None] * num_k_blocks
    first = base + lo.clamp(0, num_k_blocks - 1)
    second = base + (hi - (1 << level)).clamp(0, num_k_blocks - 1)
    range_max = torch.maximum(kmax[first], kmax[second])  # [R, N, D]
    range_min = torch.minimum(kmin[first], kmin[second])
    bound = torch.bmm(q_rows.clamp(min=0), range_max.transpose(1, 2))
    bound = bound + torch.bmm(q_rows.clamp(max=0), range_min.transpose(1, 2))
    return bound.amax(dim=1)


def estimate_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    config: StreamConfig | None = None,
    *,
    max_chunk_bytes: int | None = None,
) -> StreamMask:
    """Estimate the Stream sparse mask of one attention layer by hierarchical top-k search.

    Args:
        q: ``[B, H, T, D]`` post-RoPE queries (fp32, bf16 or fp16; CPU or CUDA).
        k: ``[B, Hkv, T, D]`` post-RoPE keys, one per KV head (H must be a multiple of Hkv: GQA/MQA).
            Query heads share their KV head's keys but each query head gets its own mask.
        config: The estimator settings; `StreamConfig()` if None.
        max_chunk_bytes: Work-buffer budget; query blocks are processed in chunks that fit it. Changes the
            peak memory, never the result. None: 64 MiB on the reference path, 512 MiB on the CUDA path.

    Returns:
        The `StreamMask` ``[B, H, T, T]``: per query block the sinks, the local window and the `top_k`
        key blocks the search kept (`top_k` and `search_width` are first fitted to the text: no more
        than its most candidate blocks, `search.fit`).

    Raises:
        ValueError: For shapes that disagree or are empty, or q / k holding NaN or infinite values.

    Cost: O(B H T/q_block x log(T/(k_block top_k)) x top_k x k_block x D) time; O(T) memory for the mask,
    plus one chunk of work buffers, plus O(T x D) key summaries with ``score_rule="bound"``.

    CUDA inputs with the ``representative`` rule take `stream_widgets.estimator_cuda` (Triton block
    scoring, same search, same mask up to rounding of q.k); without Triton they fall back to this
    reference with a one-time warning. The ``bound`` rule always runs the reference. On a CPU that
    multiplies bf16 natively (AVX512-BF16 or AMX), the ``representative`` search scores its rounds
    before the last in bf16 (the estimator about 1.4x faster at 8k tokens; the last round, which picks
    the blocks, in fp32): the same mask up to rounding of q.k, as on CUDA. `estimate_mask_reference` keeps fp32.
    With ``config.exhaustive`` on a text short enough, every candidate block is scored (fp32) instead.
    """
    config = _check_inputs(q, k, config)
    if config.exhaustive and search.exhaustive_is_cheaper(q.shape[2], config):
        return _score_every_block(q, k, config, max_chunk_bytes or _exhaustive_budget(q))
    if q.is_cuda and config.score_rule == "representative":
        from stream_widgets import estimator_cuda

        if estimator_cuda.triton_available():
            if max_chunk_bytes is None:
                return estimator_cuda.estimate_mask_cuda(q, k, config)
            return estimator_cuda.estimate_mask_cuda(q, k, config, max_chunk_bytes=max_chunk_bytes)
        _warn_no_triton()
    coarse = config.score_rule == "representative" and q.device.type == "cpu" and _native_bf16()
    return _search_reference(
        q, k, config, DEFAULT_CHUNK_BYTES if max_chunk_bytes is None else max_chunk_bytes, coarse=coarse
    )


_warned_no_triton = False


def _cpu_has(feature: str) -> bool:
    """A CPU feature query of torch's (private: a torch without it answers False, the fp32 path)."""
    query = getattr(torch.cpu, f"_is_{feature}_supported", None)
    return bool(query()) if callable(query) else False


_NATIVE_BF16 = _cpu_has("avx512_bf16") or _cpu_has("amx_tile")


def _native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX); asked once, at import
    (torch.compile does not trace the query)."""
    return _NATIVE_BF16


def _warn_no_triton() -> None:
    global _warned_no_triton
    if not _warned_no_triton:
        _warned_no_triton = True
        warnings.warn(
            "Triton is not installed: estimate_mask on CUDA runs the slower reference path "
            "(pip install triton for the fast one)",
            RuntimeWarning,
            stacklevel=3,
        )


def estimate_mask_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    config: StreamConfig | None = None,
    *,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> StreamMask:
    """`estimate_mask` on its plain-torch backend, whatever the device: the reference the CUDA path is
    tested and benchmarked against. Arguments and result as in `estimate_mask`."""
    return _search_reference(q, k, _check_inputs(q, k, config), max_chunk_bytes)


def _search_reference(
    q: torch.Tensor, k: torch.Tensor, config: StreamConfig, max_chunk_bytes: int, *, coarse: bool = False
) -> StreamMask:
    """The search in plain torch. `coarse`: score the rounds before the last in bf16 (the CPU fast path).

    Rounds before the last rank ranges by one representative block each, a heuristic whose order
    survives bf16 rounding; where the CPU multiplies bf16 natively the estimator is about 1.4x faster at
    8k tokens (the block products gain, the reduction over the queries does not). The last round, which picks the kept blocks, always scores in fp32.
    """
    t, d = q.shape[2], q.shape[3]
    num_k_blocks = -(-t // config.k_block)
    q_rows, k_blocks = _blocked(q, k, config)
    block, kv_row = _row_ids(q, k, config)

    rounds = search.num_rounds(t, config)
    summaries = None
    if config.score_rule == "bound" and rounds > 1:
        levels = max(search.max_candidates(t, config), 1).bit_length()
        summaries = _range_summaries(k_blocks, num_k_blocks, levels)

    k_coarse = k_blocks.bfloat16() if coarse else None
    per_row = 4 * 2 * config.width * (config.k_block * (d + config.q_block) + 2 * d + config.q_block)
    chunk = _chunk_rows(q_rows.shape[0], per_row, max_chunk_bytes)
    nums, idxs = [], []
    for begin in range(0, q_rows.shape[0], chunk):
        rows = slice(begin, begin + chunk)
        layout = search.layout(block[rows, None], t, config)
        start = layout.sink_end[:, 0]
        count = layout.local_start[:, 0] - start
        chunk_q, chunk_kv = q_rows[rows], kv_row[rows]
        chunk_q_coarse = chunk_q.bfloat16() if coarse else None  # once per chunk, not per round

        def score_halves(lo2, hi2, last_round, chunk_q=chunk_q, chunk_kv=chunk_kv, q_coarse=chunk_q_coarse):
            centre = (lo2 + hi2 - 1) // 2
            needed = hi2 > lo2  # empty halves are masked to -inf whatever they score
            if coarse and not last_round:
                return _block_scores(q_coarse, k_coarse, chunk_kv, centre, num_k_blocks, needed).float()
            if config.score_rule == "representative" or last_round:
                # After the last split every range is at most one block wide: its centre block is
                # itself, so this is the exact block score.
                return _block_scores(chunk_q, k_blocks, chunk_kv, centre, num_k_blocks, needed)
            return _bound_scores(chunk_q, summaries, chunk_kv, lo2, hi2, k_blocks.shape[0], num_k_blocks)

        selected, valid = search.search(start, count, config, rounds, score_halves)
        num, idx = search.assemble(selected, valid, layout, config, num_k_blocks)
        nums.append(num)
        idxs.append(idx)
    return search.to_mask(torch.cat(nums), torch.cat(idxs), q, config)


def oracle_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    config: StreamConfig | None = None,
    *,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> StreamMask:
    """The exact reference: score every candidate key block and keep the `top_k` best.

    Same block score, sinks and window as `estimate_mask`, so where the search is exact (no more
    candidates than `top_k`) the two masks are identical. O(T^2 D) time; T <= 65,536.

    Args:
        q: ``[B, H, T, D]`` post-RoPE queries.
        k: ``[B, Hkv, T, D]`` post-RoPE keys.
        config: The estimator settings (`score_rule` is ignored: every block is scored exactly).
        max_chunk_bytes: Work-buffer budget per chunk of query blocks.
    """
    config = _check_inputs(q, k, config)
    if q.shape[2] > _ORACLE_LIMIT:
        raise ValueError(f"oracle_mask is O(T^2); T={q.shape[2]} is over its limit of {_ORACLE_LIMIT}")
    return _score_every_block(q, k, config, max_chunk_bytes)


def _exhaustive_budget(q: torch.Tensor) -> int:
    return 8 * DEFAULT_CHUNK_BYTES if q.is_cuda else DEFAULT_CHUNK_BYTES


def _score_every_block(
    q: torch.Tensor, k: torch.Tensor, config: StreamConfig, max_chunk_bytes: int
) -> StreamMask:
    """Every candidate block's score (max q.k over the block's queries and keys) and the exact `top_k`.

    The queries of a KV head's whole GQA group and of a chunk of query blocks go through one matrix
    product with the keys up to the chunk's last candidate, whose block maxima are the scores: the same
    scores `_block_scores` gives block by block, without gathering keys. Ties go to the earlier block (a
    stable sort), so the result is deterministic. O(B H T^2 D / 2) time; memory: one chunk of scores.
    It reads the candidates' extent to the host once, so unlike the search it does not compile with
    ``fullgraph=True``.
    """
    (b, h, t, d), hkv = q.shape, k.shape[1]
    group, qb, kb, top_k = h // hkv, config.q_block, config.k_block, config.top_k
    num_q_blocks, num_k_blocks = -(-t // qb), -(-t // kb)
    q_rows, k_blocks = _blocked(q, k, config)
    queries = q_rows.view(b, hkv, group, num_q_blocks, qb, d)
    keys = k_blocks.view(b, hkv, num_k_blocks * kb, d)
    block = torch.arange(num_q_blocks, device=q.device, dtype=torch.int64)
    rows = search.layout(block, t, config)
    candidates_end = rows.local_start.tolist()  # non-decreasing: a chunk's candidates end at its last row's
    selected = torch.zeros(b, hkv, group, num_q_blocks, top_k, dtype=torch.int64, device=q.device)
    valid = torch.zeros(selected.shape, dtype=torch.bool, device=q.device)
    # per query block: its group's scores (4 bytes each) and their first block maxima
    step = max(1, max_chunk_bytes // (4 * group * qb * num_k_blocks * kb * 2))
    for begin in range(0, num_q_blocks, step):
        end = min(begin + step, num_q_blocks)
        nk = candidates_end[end - 1]
        if nk == 0:
            continue
        columns = torch.arange(nk, device=q.device)
        is_candidate = (columns >= rows.sink_end[begin:end, None]) & (
            columns < rows.local_start[begin:end, None]
        )
        kept = min(top_k, nk)
        for bi in range(b):
            for kv_head in range(hkv):
                chunk = queries[bi, kv_head, :, begin:end].reshape(-1, d)
                scores = chunk @ keys[bi, kv_head, : nk * kb].T  # [group * n * q_block, nk * k_block]
                scores = scores.view(group, end - begin, qb, nk, kb).amax(dim=4).amax(dim=2)
                scores = scores.masked_fill(~is_candidate, float("-inf"))
                keep = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :kept]
                selected[bi, kv_head, :, begin:end, :kept] = keep
                valid[bi, kv_head, :, begin:end, :kept] = is_candidate.expand(group, -1, -1).gather(-1, keep)
    every_row = search.layout(block.repeat(b * h)[:, None], t, config)
    num, idx = search.assemble(
        selected.view(-1, top_k), valid.view(-1, top_k), every_row, config, num_k_blocks
    )
    return search.to_mask(num, idx, q, config)
