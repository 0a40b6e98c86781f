"""The hierarchical top-k search of the Stream estimator, shared by every backend.

Both backends of `estimate_mask` (the plain-torch reference in `stream_widgets.estimator` and the Triton
one in `stream_widgets.estimator_cuda`) run exactly this search; they differ only in how they score the
halves of a round (a `ScoreHalves` function). Imports run one way: the backends import this module, it
imports neither.

For every block row (batch, query head, query block):

1. `layout` says where its sinks, its candidate key blocks and its local window lie.
2. `search` cuts the candidates into `config.width` contiguous near-equal ranges and, round after
   round (`num_rounds`), splits every range in two, scores each half and keeps the best ones (`width`
   of them, or `top_k` after `config.wide_rounds` rounds), until every range is one block; the last
   round keeps `top_k`.
3. `assemble` adds the sinks and the local window, sorts and counts; `to_mask` shapes the rows into a
   `StreamMask`.

Every shape is static (ranges are padded and empty ones score -inf), so the search compiles with
``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask

__all__ = [
    "Layout",
    "ScoreHalves",
    "assemble",
    "exhaustive_is_cheaper",
    "fit",
    "halves_scored",
    "layout",
    "max_candidates",
    "num_rounds",
    "search",
    "to_mask",
]

ScoreHalves = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
"""Scores the halves ``[lo2, hi2)`` of one round, ``[R, 2 width]`` each; the flag says it is the last round."""


@dataclass(frozen=True)
class Layout:
    """Where the sinks, candidates and local window lie for given query blocks (int64, like `block`)."""

    sink_end: torch.Tensor  # sinks are key blocks [0, sink_end); candidates start here
    local_start: torch.Tensor  # candidates end here; the local window runs to last_block
    last_block: torch.Tensor  # the key block holding the query block's last query


def layout(block: torch.Tensor, seq_len: int, config: StreamConfig) -> Layout:
    """The layout of query blocks `block` (any shape of int64 query-block indices), elementwise."""
    kb = config.k_block
    q_start = block * config.q_block
    q_end = torch.clamp(q_start + config.q_block, max=seq_len)
    # floor-divide first, then clamp: the same value, and it sidesteps an inductor indexing bug.
    local_start = torch.clamp((q_start - config.window) // kb, min=0)
    sink_end = torch.clamp(local_start, max=config.sink_blocks)
    return Layout(sink_end, local_start, (q_end - 1) // kb)


def max_candidates(seq_len: int, config: StreamConfig) -> int:
    """Candidates of the last query block, the most of any: the same arithmetic as `layout`, in ints."""
    last_q_start = (-(-seq_len // config.q_block) - 1) * config.q_block
    local_start = max((last_q_start - config.window) // config.k_block, 0)
    return local_start - min(local_start, config.sink_blocks)


def fit(config: StreamConfig, seq_len: int) -> StreamConfig:
    """`config` with `top_k` and `search_width` cut to the most candidate blocks a query block of this
    sequence has (at least 1): the same mask, without work buffers and mask columns for blocks that do
    not exist (``top_k=10**6`` on 200 tokens would otherwise allocate a million-column mask)."""
    most = max(max_candidates(seq_len, config), 1)
    top_k = min(config.top_k, most)
    width = None if config.search_width is None else max(min(config.search_width, most), top_k)
    if (top_k, width) == (config.top_k, config.search_width):
        return config
    return dataclasses.replace(config, top_k=top_k, search_width=width)


def num_rounds(seq_len: int, config: StreamConfig) -> int:
    """Halving rounds until every range is one block: ceil(log2(max candidates / width)), at least 0.

    A search wider than `top_k` needs at least one round to cut its single blocks down to `top_k`.
    """
    most = max_candidates(seq_len, config)
    rounds = 0
    while config.width << rounds < most:
        rounds += 1
    return max(rounds, 1) if most > config.top_k else rounds


def halves_scored(seq_len: int, config: StreamConfig) -> int:
    """Halves `search` scores for the query block with the most candidates: twice the ranges entering
    each round (`width` at first, `top_k` once `wide_rounds` rounds have passed). Each costs one
    q_block x k_block block product under the ``representative`` rule."""
    total = 0
    for index in range(num_rounds(seq_len, config)):
        wide = index == 0 or config.wide_rounds is None or index - 1 < config.wide_rounds
        total += 2 * (config.width if wide else config.top_k)
    return total


def exhaustive_is_cheaper(seq_len: int, config: StreamConfig) -> bool:
    """Whether scoring every candidate block is measured to be no slower than the search: the most
    candidates a query block has (`max_candidates`) at most 0.85x the halves the search scores per query
    block (`halves_scored`). SmolLM2 on a 2-core CPU (docs/benchmarks.md): at 4k tokens (ratio 1.29)
    scoring every block takes 1.53x the search's time, so a candidate costs about 1.19 halves; before
    the CPU search's block products were batched it took 0.76x, and the bound was a ratio of 1.5."""
    return 20 * max_candidates(seq_len, config) <= 17 * halves_scored(seq_len, config)


def search(
    start: torch.Tensor, count: torch.Tensor, config: StreamConfig, rounds: int, score_halves: ScoreHalves
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hierarchical top-k over candidate blocks [start, start + count) of R block rows.

    Args:
        start: int64 ``[R]`` first candidate block of every row.
        count: int64 ``[R]`` number of candidates of every row (may be 0).
        config: The estimator settings (`top_k`, `width`).
        rounds: `num_rounds` for the sequence.
        score_halves: The backend's scorer of one round's halves.

    Returns:
        blocks ``[R, top_k]`` int64 and valid ``[R, top_k]`` bool: the chosen key blocks.
    """
    width = config.width
    # `width` contiguous near-equal ranges; with fewer candidates than that, some ranges are empty and
    # the others are single blocks.
    # (Computed through float64, exact for any realistic count: integer floor-division of this product
    # trips an indexing bug in torch.compile's inductor.)
    cuts = torch.floor(
        torch.arange(width + 1, device=start.device, dtype=torch.float64) * count[:, None] / width
    )
    cuts = start[:, None] + cuts.to(torch.int64)
    lo, hi = cuts[:, :-1], cuts[:, 1:]
    for round_index in range(rounds):
        mid = lo + (hi - lo + 1) // 2
        lo2 = torch.cat([lo, mid], dim=1)
        hi2 = torch.cat([mid, hi], dim=1)
        scores = score_halves(lo2, hi2, round_index == rounds - 1)
        scores = scores.masked_fill(hi2 <= lo2, float("-inf"))
        # A stable sort breaks ties by position, so the result is deterministic on every backend.
        narrow = config.wide_rounds is not None and round_index >= config.wide_rounds
        kept = config.top_k if round_index == rounds - 1 or narrow else width
        keep = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :kept]
        lo, hi = lo2.gather(1, keep), hi2.gather(1, keep)
    if lo.shape[1] > config.top_k:  # a wide search that needed no round: at most top_k candidates
        keep = torch.sort((hi - lo != 1).to(torch.int8), dim=1, stable=True).indices[:, : config.top_k]
        lo, hi = lo.gather(1, keep), hi.gather(1, keep)
    return lo, hi - lo == 1


def assemble(
    selected: torch.Tensor,
    selected_valid: torch.Tensor,
    rows: Layout,
    config: StreamConfig,
    num_k_blocks: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add sinks and the local window to the chosen blocks; sort; count.

    Args:
        selected: int64 ``[R, N]`` chosen key blocks; selected_valid: bool ``[R, N]``.
        rows: The `Layout` of the R rows, as ``[R, 1]`` tensors.
        config: The estimator settings.
        num_k_blocks: Key blocks of the sequence.

    Returns:
        ``(num [R], idx [R, K])``: kept blocks per row and their indices, ascending, padded with 0.
    """
    device = selected.device
    sinks = torch.arange(config.sink_blocks, device=device, dtype=torch.int64)[None, :]
    local = (
        rows.local_start + torch.arange(config.max_window_blocks, device=device, dtype=torch.int64)[None, :]
    )
    count = selected.shape[0]
    blocks = torch.cat([sinks.expand(count, -1), local, selected], dim=1)
    valid = torch.cat([sinks < rows.sink_end, local <= rows.last_block, selected_valid], dim=1)
    # The three sets are disjoint by construction: sinks < sink_end <= candidates < local_start.
    ordered = torch.sort(torch.where(valid, blocks, num_k_blocks), dim=1).values
    num = valid.sum(dim=1)
    ordered = ordered.masked_fill(ordered == num_k_blocks, 0)
    return num, ordered


def to_mask(num: torch.Tensor, idx: torch.Tensor, q: torch.Tensor, config: StreamConfig) -> StreamMask:
    """Shape ``[B*H*Qb]`` counts and ``[B*H*Qb, K]`` indices of the rows of `q` ``[B, H, T, D]`` into a mask."""
    b, h, t, _ = q.shape
    num_q_blocks = -(-t // config.q_block)
    return StreamMask(
        kv_num_blocks=num.to(torch.int32).view(b, h, num_q_blocks),
        kv_indices=idx.to(torch.int32).view(b, h, num_q_blocks, -1),
        q_block=config.q_block,
        k_block=config.k_block,
        seq_len=t,
    )
