"""Numpy aggregations the views show: which matrix, pooled to screen size, per-tag sums, top links.

Everything here is plain numpy on `[S, S]` sentence x sentence matrices (row `i` = the attending
sentence, column `j` = the attended one, lower-triangular), shared by the notebook explorer and the
standalone report so both show the same numbers.
"""

from __future__ import annotations

import numpy as np

from stream_widgets.widgets.data import ExploreData

__all__ = [
    "color_high",
    "downsample",
    "matrix_label",
    "select_matrix",
    "tag_attention",
    "tag_table",
    "top_links",
]


def select_matrix(data: ExploreData, layer: int | None, head: int | None) -> np.ndarray:
    """The `[S, S]` matrix a view shows.

    Args:
        data: The trace data.
        layer: Layer index, or None for the mean over the receiver heads.
        head: Head index, or None for the mean over the heads of `layer` (ignored when `layer` is None).

    Returns:
        `[S, S]` float32, lower-triangular.
    """
    if layer is None:
        layers, heads = zip(*data.receiver_heads, strict=True)
        return data.sentence_attention[list(layers), list(heads)].mean(axis=0)
    if not 0 <= layer < data.n_layers:
        raise ValueError(f"layer {layer} is out of range: pick 0..{data.n_layers - 1} or None")
    if head is None:
        return data.sentence_attention[layer].mean(axis=0)
    if not 0 <= head < data.n_heads:
        raise ValueError(f"head {head} is out of range: pick 0..{data.n_heads - 1} or None")
    return data.sentence_attention[layer, head]


def matrix_label(data: ExploreData, layer: int | None, head: int | None) -> str:
    """A display name for `select_matrix(data, layer, head)`."""
    if layer is None:
        return f"receiver-head average ({len(data.receiver_heads)} heads)"
    if head is None:
        return f"{data.layer_labels[layer]}, mean of {data.n_heads} heads"
    return f"{data.layer_labels[layer]}, {data.head_labels[head]}"


def downsample(matrix: np.ndarray, max_size: int) -> np.ndarray:
    """Mean-pool an `[S, S]` matrix to at most `[max_size, max_size]`.

    Bins are contiguous sentence ranges of near-equal size (`np.linspace` edges), so pixel `b` covers
    sentences `S * b / n` to `S * (b + 1) / n`. A matrix already small enough is returned unchanged.

    Args:
        matrix: `[S, S]` values.
        max_size: Largest number of bins per axis (>= 1).

    Returns:
        `[n, n]` float32 with `n = min(S, max_size)`.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    size = matrix.shape[0]
    if size <= max_size:
        return matrix.astype(np.float32, copy=False)
    edges = np.linspace(0, size, max_size + 1).round().astype(np.int64)
    starts = edges[:-1]
    counts = np.diff(edges).astype(np.float64)
    pooled = np.add.reduceat(np.add.reduceat(matrix.astype(np.float64), starts, axis=0), starts, axis=1)
    return (pooled / np.outer(counts, counts)).astype(np.float32)


def color_high(matrix: np.ndarray) -> float:
    """Top of the colour scale: the 99th percentile of the strictly-lower entries.

    The diagonal (a sentence attending to itself) dwarfs everything else; scaling to it would leave the
    rest of the heatmap dark. Falls back to the maximum, then to 1.0 for an all-zero matrix.
    """
    lower = matrix[np.tril_indices(matrix.shape[0], k=-1)]
    high = float(np.percentile(lower, 99)) if lower.size else 0.0
    if high <= 0:
        high = float(matrix.max(initial=0.0))
    return high if high > 0 else 1.0


def tag_attention(matrix: np.ndarray, tags: list[str], tag_order: list[str]) -> np.ndarray:
    """How much each phase attends to each earlier phase.

    Cell `(a, b)` is the mean of `matrix[i, j]` over pairs with `tags[i] == tag_order[a]`,
    `tags[j] == tag_order[b]` and `j < i` (a sentence attending to itself is left out). NaN where no
    such pair exists.

    Args:
        matrix: `[S, S]` sentence attention.
        tags: `S` function tags.
        tag_order: The `T` tags of the output axes.

    Returns:
        `[T, T]` float64: rows attend (from), columns receive (to).
    """
    index = {t: k for k, t in enumerate(tag_order)}
    codes = np.array([index.get(t, -1) for t in tags])
    n_tags = len(tag_order)
    rows, cols = np.tril_indices(matrix.shape[0], k=-1)
    keep = (codes[rows] >= 0) & (codes[cols] >= 0)
    flat = codes[rows[keep]] * n_tags + codes[cols[keep]]
    sums = np.bincount(flat, weights=matrix[rows[keep], cols[keep]], minlength=n_tags * n_tags)
    counts = np.bincount(flat, minlength=n_tags * n_tags)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means.reshape(n_tags, n_tags)


def tag_table(data: ExploreData) -> list[dict]:
    """Per function tag present: its colour-free summary row (count, mean and max anchor score)."""
    rows = []
    tags = np.array(data.tags)
    for tag in data.tags_present():
        scores = data.anchor_scores[tags == tag]
        rows.append(
            {
                "tag": tag,
                "count": int(scores.size),
                "mean_anchor_score": float(scores.mean()),
                "max_anchor_score": float(scores.max()),
            }
        )
    return rows


def top_links(matrix: np.ndarray, i: int, k: int = 3) -> tuple[list[int], list[int]]:
    """The sentences `i` attends to most and the ones that attend to `i` most.

    Args:
        matrix: `[S, S]` sentence attention.
        i: Sentence index.
        k: How many of each to return.

    Returns:
        `(attends_to, attended_by)`: up to `k` earlier sentences `j < i` by `matrix[i, j]`, and up to
        `k` later sentences `r > i` by `matrix[r, i]`, strongest first, zero entries left out.
    """
    row = matrix[i, :i]
    col = matrix[i + 1 :, i]
    attends_to = [int(j) for j in np.argsort(-row, kind="stable")[:k] if row[j] > 0]
    attended_by = [int(r) + i + 1 for r in np.argsort(-col, kind="stable")[:k] if col[r] > 0]
    return attends_to, attended_by
