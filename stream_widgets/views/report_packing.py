"""The report's data packed for the browser: every planned matrix, its links, bars and tag map, and the
token view's rows, quantised to 8 bits in flat arrays within a byte budget (numpy, no Bokeh).

`pack_matrices` plans which matrices go into the page (`_plan`): the receiver-head average at `max_size`
bins, then the layer means and receiver heads, then every other head, each group pooled to fewer bins
(`_SIZES`) when the budget needs it, and cut from its end when even 16 bins do not fit; it says what was
pooled or left out. `pack_tokens` packs every sentence's token rows (pooled to `MAX_TOKEN_ROWS`) of each
recorded head, leaving out the heads beyond its budget. The report page (`report_page`) unpacks them in
the browser into the shared sources.
"""

from __future__ import annotations

import numpy as np

from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import (
    color_scale,
    downsample,
    matrix_label,
    select_matrix,
    select_scores,
    sentence_token_rows,
    tag_attention,
    top_links,
)
from stream_widgets.views.sources import LINKS_PER_SENTENCE, MAX_TOKEN_ROWS, bars_title

__all__ = ["pack_matrices", "pack_tokens"]

_SIZES = (256, 200, 160, 128, 96, 64, 48, 32, 24, 16)  # heatmap resolutions tried to fit the budget


def _tri_bytes(n: int) -> int:
    return n * (n + 1) // 2


def _plan(data: ExploreData, max_size: int, budget: int) -> list[dict]:
    """Which matrices go into the page, at which resolution, with or without their links.

    Groups, in priority order: the receiver-head average (always, at `max_size`, with links); the layer
    means and receiver heads (with links); every other head (without links). Each later group takes the
    largest resolution of `_SIZES` (at most the first's) that fits what is left of the budget; a group that
    does not fit even at 16 bins is cut from its end.
    """
    size = data.n_sentences
    top = min(size, max_size)
    links = size * LINKS_PER_SENTENCE * 2 * 3  # int16 index + uint8 weight, both ways
    receiver = set(data.receiver_heads)
    groups = [
        [(None, None)],
        [(layer, None) for layer in range(data.n_layers)] + sorted(receiver),
        [
            (layer, head)
            for layer in range(data.n_layers)
            for head in range(data.n_heads)
            if (layer, head) not in receiver
        ],
    ]
    plan, left = [], budget
    for g, group in enumerate(groups):
        with_links = g < 2
        sizes = [top] if g == 0 else [top] + [s for s in _SIZES if s < top]
        chosen = None
        for n in sizes:
            cost = _tri_bytes(n) + (links if with_links else 0)
            if g == 0 or cost * len(group) <= left:
                chosen = n
                break
        if chosen is None:
            chosen = sizes[-1]
        cost = _tri_bytes(chosen) + (links if with_links else 0)
        for layer, head in group:
            if g > 0 and cost > left:
                plan.append({"layer": layer, "head": head, "n": 0, "links": False})
                continue
            plan.append({"layer": layer, "head": head, "n": chosen, "links": with_links})
            left -= cost
    return plan


def _key(layer: int | None, head: int | None) -> str:
    return "avg" if layer is None else (f"l{layer}" if head is None else f"l{layer}h{head}")


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """`[S]` scores as uint8 on [lo, hi] (255 = NaN)."""
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    span = (hi - lo) or 1.0
    q = np.where(np.isfinite(values), np.round((np.nan_to_num(values, nan=lo) - lo) / span * 254), 255)
    return q.astype(np.uint8), lo, span


def pack_matrices(data: ExploreData, max_size: int, budget: int) -> dict:
    """Quantise the planned matrices, their links, bars and tag maps into flat arrays for the page."""
    size, k = data.n_sentences, LINKS_PER_SENTENCE
    tags = data.tags_present()
    tri, link_index, link_weight, bars, tag_values = [], [], [], [], []
    meta: dict[str, list] = {
        name: []
        for name in (
            "key",
            "label",
            "n",
            "offset",
            "scale",
            "high",
            "clipped",
            "cells",
            "rule",
            "bars_title",
            "tag_high",
            "links_offset",
            "bar_offset",
            "bar_lo",
            "bar_span",
        )
    }
    offset = links_offset = bar_offset = 0
    left_out, pooled = [], {}
    for item in _plan(data, max_size, budget):
        layer, head, n = item["layer"], item["head"], item["n"]
        label = matrix_label(data, layer, head)
        if n == 0:
            left_out.append(label)
            continue
        matrix = select_matrix(data, layer, head)
        if n < size:
            pooled[n] = pooled.get(n, 0) + 1
        lower = downsample(matrix, n)[np.tril_indices(n)]
        scale = float(lower.max(initial=0.0)) or 1.0
        tri.append(np.round(np.clip(lower / scale, 0.0, 1.0) * 255).astype(np.uint8))
        colour = color_scale(matrix)
        values = tag_attention(matrix, data.tags, tags).ravel()
        finite = values[np.isfinite(values)]
        meta["key"].append(_key(layer, head))
        meta["label"].append(label)
        meta["n"].append(n)
        meta["offset"].append(offset)
        meta["scale"].append(scale)
        meta["high"].append(colour.high)
        meta["clipped"].append(colour.clipped)
        meta["cells"].append(colour.cells)
        meta["rule"].append(colour.rule)
        meta["bars_title"].append(bars_title(data, layer, head))
        meta["tag_high"].append(float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
        tag_values.append(values.astype(np.float32))
        offset += _tri_bytes(n)
        if item["links"]:
            index = np.full((2, size, k), -1, np.int16)
            weight = np.zeros((2, size, k))
            for i in range(size):
                attends_to, attended_by = top_links(matrix, i, k)
                index[0, i, : len(attends_to)], weight[0, i, : len(attends_to)] = (
                    attends_to,
                    matrix[i, attends_to],
                )
                index[1, i, : len(attended_by)], weight[1, i, : len(attended_by)] = (
                    attended_by,
                    matrix[attended_by, i],
                )
            link_index.append(index.ravel())
            link_weight.append(np.round(np.clip(weight / scale, 0, 1) * 255).astype(np.uint8).ravel())
            meta["links_offset"].append(links_offset)
            links_offset += 2 * size * k
        else:
            meta["links_offset"].append(-1)
        if layer is None:
            meta["bar_offset"].append(-1)  # the anchor score itself, exact
            meta["bar_lo"].append(0.0)
            meta["bar_span"].append(1.0)
        else:
            q, lo, span = _quantise(select_scores(data, layer, head))
            bars.append(q)
            meta["bar_offset"].append(bar_offset)
            meta["bar_lo"].append(lo)
            meta["bar_span"].append(span)
            bar_offset += size

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return {
        "meta": meta,
        "tri": cat(tri, np.uint8),
        "link_index": cat(link_index, np.int16),
        "link_weight": cat(link_weight, np.uint8),
        "bars": cat(bars, np.uint8),
        "tag_values": cat(tag_values, np.float32),
        "n_tags": len(tags),
        "left_out": left_out,
        "pooled": pooled,
    }


def pack_tokens(data: ExploreData, budget: int) -> dict | None:
    """Every sentence's token rows (pooled to `MAX_TOKEN_ROWS`) of each recorded head, 8-bit, within budget."""
    view = data.token_view
    if view is None:
        return None
    labels, row_offset, n_rows = [], [], []
    total = 0
    for span in data.token_spans:
        _, starts = sentence_token_rows(view, 0, span, MAX_TOKEN_ROWS)
        labels.append([view.tokens[p] for p in starts])
        row_offset.append(total)
        n_rows.append(len(starts))
        total += len(starts)
    head_bytes = total * view.n_bins
    blob, meta = [], {"label": [], "offset": [], "scale": []}
    left_out = []
    for r, (layer, head) in enumerate(view.heads):
        label = f"{data.layer_labels[layer]}, {data.head_labels[head]}"
        if blob and (len(blob) + 1) * head_bytes > budget:
            left_out.append(label)
            continue
        rows = [sentence_token_rows(view, r, span, MAX_TOKEN_ROWS)[0] for span in data.token_spans]
        stacked = np.concatenate(rows) if rows else np.zeros((0, view.n_bins), np.float32)
        scale = float(stacked.max(initial=0.0)) or 1.0
        meta["label"].append(label)
        meta["offset"].append(len(blob) * head_bytes)
        meta["scale"].append(scale)
        blob.append(np.round(np.clip(stacked / scale, 0, 1) * 255).astype(np.uint8).ravel())
    return {
        "blob": np.concatenate(blob) if blob else np.zeros(0, np.uint8),
        "meta": meta,
        "labels": labels,
        "row_offset": row_offset,
        "n_rows": n_rows,
        "left_out": left_out,
    }
