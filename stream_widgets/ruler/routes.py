"""Needle routes: which heads, in which layers, through which positions carry a needle to the output.

One ``observe`` pass (`capture_attention`) keeps every layer's post-RoPE queries and keys and its
Stream mask. From them, the exact attention row of any single query position costs O(T) per head
(one row of q.k, softmax over its causal keys), so nothing T x T is built:

* `needle_mass` -- for a few final query positions, the attention paid to the needle tokens: the true
  dense probabilities, and the part of them at entries the Stream mask keeps.
* `find_route` -- a route is a set of attention edges (layer, head, query, key, weight) that links the
  needle tokens to the output position, layer by layer. Found in two sweeps: (1) down from the last
  layer, starting at the output position, collect every edge of weight >= `min_weight` whose query is
  already on the frontier (positions keep their information through the residual stream, so a frontier
  only grows), adding the strongest few new key positions to the frontier; (2) up from layer 0, the
  strongest chain (product of weights) from a needle token to every position, and the `num_paths`
  strongest chains that end in the output position. `Route.edges` uses only edges the mask keeps;
  `Route.pruned` lists the edges of the same search on dense attention that the mask drops.

Memory: L x (H + Hkv) x T x D floats for the capture (~0.75 GB for SmolLM2 at 8k tokens).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from stream_widgets.attention import install_attention, repeat_kv
from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask
from stream_widgets.sparse_attention import dense_attention

__all__ = ["AttentionCapture", "Route", "RouteEdge", "capture_attention", "find_route", "needle_mass"]


@dataclass
class AttentionCapture:
    """What one pass keeps for exact single-row attention (batch of one).

    Attributes:
        queries: Per layer float32 ``[H, T, D]`` post-RoPE queries (CPU).
        keys: Per layer float32 ``[Hkv, T, D]`` post-RoPE keys (CPU).
        masks: Per layer the `StreamMask` ``[1, H, T, T]`` estimated from them.
        scale: Attention logit scale.
    """

    queries: list[torch.Tensor] = field(default_factory=list)
    keys: list[torch.Tensor] = field(default_factory=list)
    masks: list[StreamMask] = field(default_factory=list)
    scale: float = 1.0

    @property
    def num_layers(self) -> int:
        return len(self.masks)

    @property
    def seq_len(self) -> int:
        return int(self.keys[0].shape[1])

    def rows(self, layer: int, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact attention rows of some query positions at one layer, and which entries the mask keeps.

        Args:
            layer: The layer.
            positions: P query positions.

        Returns:
            ``(probs [H, P, T] float32, kept [H, P, T] bool)``: softmax over each query's causal keys (0
            past the query), and whether the mask keeps each (query, key) entry (causal ones only).

        Cost O(H x P x T x D).
        """
        q = self.queries[layer][:, list(positions)]  # [H, P, D]
        h, t = q.shape[0], self.keys[layer].shape[1]
        k = repeat_kv(self.keys[layer][None], h)[0]
        pos = torch.tensor(list(positions), dtype=torch.int64)
        causal = torch.arange(t)[None, :] <= pos[:, None]  # [P, T]
        logits = torch.einsum("hpd,htd->hpt", q, k) * self.scale
        probs = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        mask = self.masks[layer]
        blocks = mask.to_block_dense()[0][:, pos // mask.q_block]  # [H, P, Kb]
        kept = blocks.repeat_interleave(mask.k_block, dim=-1)[..., :t] & causal
        return probs, kept


@contextlib.contextmanager
def capture_attention(model, config: StreamConfig | None = None) -> Iterator[AttentionCapture]:
    """Run the model with its own attention inside the block, capturing queries, keys and Stream masks.

    One forward pass (batch of one, no padding; a KV cache may be filled) per block; the capture is
    complete when the block ends. The model's output is its usual output (the same causal attention as
    the tracer's ``observe`` mode); the per-entry records of a trace are not kept: the needle mass and
    routes recompute exactly the few rows they need.

    Args:
        model: A transformers causal LM whose attention goes through `AttentionInterface`.
        config: Estimator settings; `StreamConfig()` if None.

    Raises:
        ValueError: As `attention.install_attention`, or if the block did not run exactly one pass.
    """
    from stream_widgets.estimator import estimate_mask

    config = config or StreamConfig()
    capture = AttentionCapture()

    def attend(call):
        capture.scale = call.scale
        capture.masks.append(estimate_mask(call.query, call.key, config).to("cpu"))
        capture.queries.append(call.query[0].detach().float().cpu())
        capture.keys.append(call.key[0].detach().float().cpu())
        return dense_attention(call.query, call.key, call.value, call.scale)[0]

    with install_attention(model, attend) as installed:
        yield capture
    installed.check_one_pass()


def needle_mass(
    capture: AttentionCapture, positions: Sequence[int], needle: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention some query positions pay to the needle tokens: dense, and kept by the mask.

    Args:
        capture: From `capture_attention` (``observe`` mode for the model's true probabilities).
        positions: P query positions (e.g. the last few of the prompt).
        needle: Token positions of the needle(s).

    Returns:
        ``(dense [L, H], kept [L, H])`` float32: summed over the positions and needle tokens, the true
        probabilities, and those at entries the Stream mask keeps. ``kept / dense`` is the share kept.

    Cost O(L x H x P x T x D).
    """
    if not needle:
        raise ValueError("needle is empty: give the token positions of the needle")
    index = torch.tensor(list(needle), dtype=torch.int64)
    dense, kept = [], []
    for layer in range(capture.num_layers):
        probs, keep = capture.rows(layer, positions)
        on_needle = probs[..., index]
        dense.append(on_needle.sum(dim=(1, 2)))
        kept.append((on_needle * keep[..., index]).sum(dim=(1, 2)))
    return torch.stack(dense), torch.stack(kept)


# ----------------------------------------------------------------- routes
@dataclass(frozen=True)
class RouteEdge:
    """One attention edge: at `layer`, `head`, position `query` reads position `key` with `weight`."""

    layer: int
    head: int
    query: int
    key: int
    weight: float
    retained: bool


@dataclass(frozen=True)
class Route:
    """The attention edges that carry the needle tokens to the output position.

    Attributes:
        edges: The route through edges the Stream mask keeps, sorted by (layer, head, query, key).
        pruned: Edges of the route found on dense attention that the mask drops.
        sources: The needle token positions the route starts from.
        output: The output position (the last prompt token, which predicts the answer).
        num_layers: L.
        num_heads: H.
        seq_len: T.
        min_weight: The edge weight threshold used.
        tokens: Position -> token text, for the positions on the route (may be empty).
        spans: Name -> ``[start, end)`` token spans to mark in views (e.g. ``"needle"``, ``"distractor"``).
    """

    edges: tuple[RouteEdge, ...]
    pruned: tuple[RouteEdge, ...]
    sources: tuple[int, ...]
    output: int
    num_layers: int
    num_heads: int
    seq_len: int
    min_weight: float
    tokens: dict[int, str] = field(default_factory=dict, hash=False)
    spans: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict, hash=False)

    @property
    def reaches_output(self) -> bool:
        """A chain of kept edges links a needle token to the output position."""
        return any(e.query == self.output for e in self.edges)

    def heads(self) -> dict[int, list[int]]:
        """Layer -> the heads with edges on the route."""
        out: dict[int, set[int]] = {}
        for e in self.edges:
            out.setdefault(e.layer, set()).add(e.head)
        return {layer: sorted(h) for layer, h in sorted(out.items())}

    def positions(self) -> list[int]:
        """Positions on the route other than the sources and the output (where the needle passes)."""
        on = {e.query for e in self.edges} | {e.key for e in self.edges}
        return sorted(on - set(self.sources) - {self.output})

    def to_dict(self) -> dict:
        """JSON-ready dict (what the Bokeh route view takes)."""
        data = asdict(self)
        data["tokens"] = {str(k): v for k, v in self.tokens.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Route:
        """Inverse of `to_dict`."""
        return cls(
            edges=tuple(RouteEdge(**e) for e in data["edges"]),
            pruned=tuple(RouteEdge(**e) for e in data["pruned"]),
            sources=tuple(data["sources"]),
            output=int(data["output"]),
            num_layers=int(data["num_layers"]),
            num_heads=int(data["num_heads"]),
            seq_len=int(data["seq_len"]),
            min_weight=float(data["min_weight"]),
            tokens={int(k): v for k, v in data.get("tokens", {}).items()},
            spans={k: tuple(tuple(s) for s in v) for k, v in data.get("spans", {}).items()},
        )

    def labelled(self, tokens: Sequence[str], spans: dict | None = None) -> Route:
        """The same route with the token text of its positions (``tokens[i]``: token i) and view spans."""
        on = {e.query for e in self.edges + self.pruned} | {e.key for e in self.edges + self.pruned}
        on |= set(self.sources) | {self.output}
        return replace(self, tokens={p: tokens[p] for p in sorted(on)}, spans=dict(spans or self.spans))

    def __repr__(self) -> str:
        return (
            f"Route({len(self.edges)} kept edges over {len(self.heads())} layers, {len(self.pruned)} dense edges "
            f"pruned, reaches_output={self.reaches_output}, via positions {self.positions()[:8]})"
        )


def _candidate_edges(
    capture, output, sources, min_weight, max_new_positions, use_mask
) -> list[list[RouteEdge]]:
    """Sweep down from the output: per layer, the edges >= min_weight out of frontier positions."""
    sources_set = set(sources)
    frontier = {output}
    per_layer: list[list[RouteEdge]] = [[] for _ in range(capture.num_layers)]
    for layer in reversed(range(capture.num_layers)):
        queries = sorted(frontier)
        probs, kept = capture.rows(layer, queries)
        strong = probs >= min_weight
        if use_mask:
            strong &= kept
        new: dict[int, float] = {}
        for h, p, k in torch.nonzero(strong).tolist():
            q = queries[p]
            if k == q:
                continue  # reading itself moves nothing
            w = float(probs[h, p, k])
            per_layer[layer].append(RouteEdge(layer, h, q, k, w, bool(kept[h, p, k])))
            if k not in frontier and k not in sources_set:
                new[k] = max(new.get(k, 0.0), w)
        frontier |= set(sorted(new, key=new.get, reverse=True)[:max_new_positions])
    return per_layer


def _best_paths(
    per_layer: list[list[RouteEdge]], sources: Sequence[int], output: int, num_paths: int
) -> list[RouteEdge]:
    """The `num_paths` strongest needle -> output chains (weight = product of edge weights).

    Sweeping up the layers, ``best[p]`` is the strongest chain from a needle token to position p using
    the layers so far (a position keeps what it holds through the residual stream). Each chain ends with
    a distinct edge into the output position; chains are traced back through their stored predecessors.
    """
    best: dict[int, tuple[float, tuple[RouteEdge, ...]]] = {s: (1.0, ()) for s in sources}
    finals: list[tuple[float, tuple[RouteEdge, ...]]] = []
    for edges in per_layer:
        updates: dict[int, tuple[float, tuple[RouteEdge, ...]]] = {}
        for e in edges:
            if e.key not in best:
                continue
            score, chain = best[e.key]
            path = (score * e.weight, (*chain, e))
            if e.query == output:
                finals.append(path)
            if path[0] > max(best.get(e.query, (0.0,))[0], updates.get(e.query, (0.0,))[0]):
                updates[e.query] = path
        best.update(updates)  # after the layer: edges of one layer do not chain with each other
    finals.sort(key=lambda f: -f[0])
    return sorted(
        {e for _, chain in finals[:num_paths] for e in chain}, key=lambda e: (e.layer, e.head, e.query, e.key)
    )


def find_route(
    capture: AttentionCapture,
    sources: Sequence[int],
    output: int,
    *,
    min_weight: float = 0.05,
    max_new_positions: int = 4,
    num_paths: int = 6,
) -> Route:
    """The layer-by-layer route of high-weight attention edges from the needle tokens to the output.

    Args:
        capture: From `capture_attention` in ``observe`` mode (true probabilities, Stream masks).
        sources: Token positions of the needle (e.g. its number's tokens).
        output: The output position (usually T - 1, which predicts the first answer token).
        min_weight: Smallest attention probability an edge needs.
        max_new_positions: Most new positions the downward sweep adds to its frontier per layer (the
            strongest ones); bounds the cost at O(L x (1 + L x max_new_positions) x H x T x D).
        num_paths: How many of the strongest chains make up the route (each ends with its own edge into
            the output position; chain strength = product of its edge weights).

    Returns:
        The `Route` (kept edges) with `Route.pruned`: the dense route's edges the mask drops.
    """
    if not sources:
        raise ValueError("sources is empty: give the needle's token positions")
    t = capture.seq_len
    if not 0 <= output < t or any(not 0 <= s < t for s in sources):
        raise ValueError(f"output {output} and sources must be token positions in [0, {t})")
    if not 0.0 < min_weight <= 1.0:
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight}")
    kept = _best_paths(
        _candidate_edges(capture, output, sources, min_weight, max_new_positions, True),
        sources,
        output,
        num_paths,
    )
    dense = _best_paths(
        _candidate_edges(capture, output, sources, min_weight, max_new_positions, False),
        sources,
        output,
        num_paths,
    )
    return Route(
        edges=tuple(kept),
        pruned=tuple(e for e in dense if not e.retained),
        sources=tuple(int(s) for s in sources),
        output=int(output),
        num_layers=capture.num_layers,
        num_heads=int(capture.queries[0].shape[0]),
        seq_len=t,
        min_weight=float(min_weight),
    )
