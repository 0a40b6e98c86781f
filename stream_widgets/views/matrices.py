"""Numpy aggregations the views show: which matrix, pooled to screen size, per-tag sums, top links.

Everything here is plain numpy on `[S, S]` sentence x sentence matrices (row `i` = the attending
sentence, column `j` = the attended one, lower-triangular), shared by the notebook explorer and the
standalone report so both show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_widgets.views.data import ExploreData, TokenView

__all__ = [
    "ColorScale",
    "color_scale",
    "downsample",
    "matrix_label",
    "select_matrix",
    "select_scores",
    "sentence_token_rows",
    "spearman",
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


@dataclass(frozen=True)
class ColorScale:
    """Top of a heatmap's linear colour scale and what lies above it.

    Attributes:
        high: The value drawn in the top colour.
        clipped: Lower-triangle cells above `high` (drawn in the over-scale colour, not the top colour).
        cells: Lower-triangle cells in all.
        rule: How `high` was chosen, in words, for the colour bar's note.
    """

    high: float
    clipped: int
    cells: int
    rule: str


def color_scale(matrix: np.ndarray, percentile: float = 99.0) -> ColorScale:
    """Colour scale of an `[S, S]` heatmap: up to the `percentile` of the strictly-lower entries.

    The diagonal (a sentence attending to itself) dwarfs everything else; scaling to it would leave the
    rest of the heatmap dark. So the top is the 99th percentile of the off-diagonal cells, and the cells
    above it (mostly the diagonal) are counted for the colour bar's note and drawn in a colour of their
    own. Falls back to the maximum, then to 1.0 for an all-zero matrix.
    """
    size = matrix.shape[0]
    lower = matrix[np.tril_indices(size, k=-1)]
    lower = lower[np.isfinite(lower)]
    high = float(np.percentile(lower, percentile)) if lower.size else 0.0
    rule = f"{percentile:g}th percentile of the off-diagonal cells"
    if high <= 0:
        finite = matrix[np.isfinite(matrix)]
        high, rule = float(finite.max(initial=0.0)), "maximum"
    if high <= 0:
        high, rule = 1.0, "1 (all cells are 0)"
    tril = matrix[np.tril_indices(size)]
    return ColorScale(high, int((tril[np.isfinite(tril)] > high).sum()), int(tril.size), rule)


def select_scores(data: ExploreData, layer: int | None, head: int | None) -> np.ndarray:
    """The `[S]` scores the anchor bars show with `select_matrix(data, layer, head)`.

    The receiver-head anchor score (`data.anchor_scores`) for the receiver-head average; a layer's
    mean of its heads' vertical scores for a layer; one head's vertical score for a head. NaN where a
    sentence is not scored (for a layer mean: where any head is NaN, which is the same sentences).
    """
    if layer is None:
        return data.anchor_scores
    if head is None:
        return data.vertical_scores[layer].mean(axis=0)
    return data.vertical_scores[layer, head]


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


def tag_table(tags: list[str], scores: np.ndarray, tag_order: list[str]) -> list[dict]:
    """Per tag of `tag_order` present in `tags`: sentence count, scored count, mean and max anchor score.

    Unscored sentences (NaN score) are counted in `count`, left out of `scored`, mean and max (None
    when no sentence of the tag is scored), so "not scored" never reads as a score of 0.
    """
    rows = []
    tag_array = np.array(tags)
    for tag in tag_order:
        values = scores[tag_array == tag]
        if values.size == 0:
            continue
        finite = values[~np.isnan(values)]
        rows.append(
            {
                "tag": tag,
                "count": int(values.size),
                "scored": int(finite.size),
                "mean_anchor_score": float(finite.mean()) if finite.size else None,
                "max_anchor_score": float(finite.max()) if finite.size else None,
            }
        )
    return rows


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, int]:
    """Spearman rank correlation of `x` and `y` over the pairs where both are finite.

    Returns:
        `(rho, n)`: rho is None when fewer than 3 finite pairs exist or either side is constant.
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return None, n
    return float(spearmanr(x[keep], y[keep]).statistic), n


def sentence_token_rows(
    view: TokenView, r: int, span: tuple[int, int], max_rows: int
) -> tuple[np.ndarray, list[int]]:
    """One sentence's rows of recorded head `r` of a `TokenView`, at most `max_rows` of them.

    Args:
        view: The token view.
        r: Index into `view.heads`.
        span: The sentence's half-open token span.
        max_rows: Largest number of rows; longer sentences are mean-pooled over contiguous token runs.

    Returns:
        `([n, B] float32, starts)`: the rows and, per row, the first token position it covers.
    """
    start, end = span
    rows = view.values[r, start:end]
    if rows.shape[0] <= max_rows:
        return rows, list(range(start, end))
    edges = np.linspace(0, rows.shape[0], max_rows + 1).round().astype(np.int64)
    pooled = np.add.reduceat(rows, edges[:-1], axis=0) / np.diff(edges)[:, None]
    return pooled.astype(np.float32), [start + int(e) for e in edges[:-1]]


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
