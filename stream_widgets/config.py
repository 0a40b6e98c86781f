"""`StreamConfig`: every knob of the Stream mask estimator, validated once.

The estimator works on blocks: queries are grouped into blocks of `q_block` consecutive positions, keys
into blocks of `k_block`. For every query block it keeps

* the attention-sink blocks covering the first `sink` tokens,
* the local window: the key blocks covering the `window` tokens before the query block, and the block(s)
  holding the query block itself (the diagonal),
* `top_k` further key blocks chosen by the hierarchical search (or by the exact oracle).

All sizes are in tokens except `top_k`, which counts key blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["MAX_BLOCK", "MAX_TOKENS", "MAX_TOP_K", "MAX_WIDE_ROUNDS", "ScoreRule", "StreamConfig"]

ScoreRule = Literal["representative", "bound"]
_SCORE_RULES = ("representative", "bound")

MAX_BLOCK = 65_536
"""Largest `q_block` / `k_block` (tokens): beyond this a block is larger than any model's context."""
MAX_TOP_K = 65_536
"""Largest `top_k` / `search_width` (key blocks): 2^16, every key block of a 1M-token text at
``k_block=16``. The mask's width and the estimator's work buffers grow with these, so the bound keeps
a typo from asking for terabytes."""
MAX_WIDE_ROUNDS = 64
"""Largest `wide_rounds`: more rounds than any search has (a 1M-token text needs about 12)."""
MAX_TOKENS = 16_777_216
"""Largest `sink` / `window` (tokens): 2^24, beyond any model's context."""


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the Stream sparse-mask estimator.

    Attributes:
        q_block: Queries per query block (1 to `MAX_BLOCK`). Each query block gets one set of kept key
            blocks, so a smaller value gives finer masks at a cost linear in T / q_block. Default 64.
        k_block: Keys per key block (1 to `MAX_BLOCK`); the unit in which keys are kept or pruned.
            Default 16.
        top_k: Key blocks chosen by the search per query block, on top of the sink and window blocks
            (1 to `MAX_TOP_K`). A `top_k` that covers every key block of a text keeps everything:
            sparsity 0. Default 32.
        sink: Leading tokens always kept (attention sinks), rounded up to whole key blocks (0 to
            `MAX_TOKENS`). Default 16.
        window: Tokens before each query block always kept (local window), rounded out to whole key
            blocks; the diagonal block is always kept whatever this is (0 to `MAX_TOKENS`). Default 64.
        score_rule: How a range of key blocks is scored during the search. ``"representative"`` (the
            paper's rule): the max of q.k over the query block and the keys of the range's centre block.
            ``"bound"``: an upper bound of q.k over the whole range from per-dimension key maxima and
            minima (as Quest does per page), which cannot miss a strong key inside a wide range; it costs
            O(T x D) extra memory for the range summaries. The last round always scores single blocks
            exactly. Default ``"representative"``.
        search_width: Ranges the search keeps between rounds (top_k to `MAX_TOP_K`), or None for
            `top_k` (the paper's search). A wider search scores 2 x search_width halves per round and keeps the
            `top_k` best single blocks only in its last round: it finds more of the exact top-k (the
            oracle's) blocks at a cost linear in the width. Default None.
        wide_rounds: With a `search_width`: how many rounds keep `search_width` ranges before the search
            narrows to `top_k` (0 to `MAX_WIDE_ROUNDS`), or None for every round. ``0`` is a *wide
            start*: the candidates are cut into `search_width` shorter ranges, the first round scores
            their ``2 x search_width`` halves and keeps `top_k`, and the rest runs as the paper's search,
            so it costs about one round more than the paper's search instead of a factor of the width.
            Default None.
        exhaustive: Where scoring every candidate key block is no slower than the search (short texts,
            where a query block has at most 0.85x as many candidates as the search scores halves, up to
            about 2.7k tokens at the default sizes; `search.exhaustive_is_cheaper`), score them all with one
            matrix product per KV head and keep the exact `top_k` by block score (max q.k, as
            `oracle_mask`) instead of searching. Longer texts search as before; `oracle_mask` (as the
            tracer's ``mask_fn``) keeps the exact top_k at any length, at its cost (SmolLM2 at 4k: 0.8
            points under the exact-mass oracle instead of the search's 3.7, for 1.53x the estimator's
            time). Default False (always search).
    """

    q_block: int = 64
    k_block: int = 16
    top_k: int = 32
    sink: int = 16
    window: int = 64
    score_rule: ScoreRule = "representative"
    search_width: int | None = None
    wide_rounds: int | None = None
    exhaustive: bool = False

    def __post_init__(self) -> None:
        for name, low, high in (
            ("q_block", 1, MAX_BLOCK),
            ("k_block", 1, MAX_BLOCK),
            ("top_k", 1, MAX_TOP_K),
            ("sink", 0, MAX_TOKENS),
            ("window", 0, MAX_TOKENS),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"StreamConfig.{name} must be an int, got {type(value).__name__} {value!r:.40}"
                )
            if value < low:
                raise ValueError(f"StreamConfig.{name} must be >= {low}, got {value}")
            if value > high:
                raise ValueError(f"StreamConfig.{name} must be <= {high:,}, got {value:,}")
        if self.search_width is not None and (
            isinstance(self.search_width, bool)
            or not isinstance(self.search_width, int)
            or not self.top_k <= self.search_width <= MAX_TOP_K
        ):
            raise ValueError(
                f"StreamConfig.search_width must be None or an int in [top_k ({self.top_k}), {MAX_TOP_K:,}], "
                f"got {self.search_width!r:.40}"
            )
        if self.wide_rounds is not None and (
            isinstance(self.wide_rounds, bool)
            or not isinstance(self.wide_rounds, int)
            or not 0 <= self.wide_rounds <= MAX_WIDE_ROUNDS
        ):
            raise ValueError(
                f"StreamConfig.wide_rounds must be None or an int in [0, {MAX_WIDE_ROUNDS}], "
                f"got {self.wide_rounds!r:.40}"
            )
        if not isinstance(self.exhaustive, bool):
            raise ValueError(
                f"StreamConfig.exhaustive must be True or False, got {type(self.exhaustive).__name__} "
                f"{self.exhaustive!r:.40}"
            )
        if self.score_rule not in _SCORE_RULES:
            raise ValueError(
                f"StreamConfig.score_rule must be one of {_SCORE_RULES}, got {self.score_rule!r:.40}"
            )

    @property
    def width(self) -> int:
        """Ranges the search keeps between rounds: `search_width`, or `top_k` when that is None."""
        return self.top_k if self.search_width is None else self.search_width

    @property
    def sink_blocks(self) -> int:
        """Number of key blocks the sink tokens occupy."""
        return -(-self.sink // self.k_block)

    @property
    def max_window_blocks(self) -> int:
        """Upper bound on the window + diagonal key blocks of one query block."""
        return (self.window + self.q_block - 1) // self.k_block + 2

    @property
    def max_blocks_per_row(self) -> int:
        """Upper bound on the key blocks kept for one query block: sinks + window + top_k."""
        return self.sink_blocks + self.max_window_blocks + self.top_k

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict. `wide_rounds` and `exhaustive` (added later) appear only when
        set, so a config without them keeps the dict it always had: saved traces and corpus content
        hashes stay as they were."""
        data = asdict(self)
        if data["wide_rounds"] is None:
            del data["wide_rounds"]
        if not data["exhaustive"]:
            del data["exhaustive"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamConfig:
        """Rebuild a config from `to_dict` output; unknown keys raise `ValueError`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown StreamConfig fields {sorted(unknown)}")
        return cls(**data)
