"""The columns Python feeds into the views' shared sources: plain numpy and lists, no Bokeh.

The explorer calls these from Python on every change; the report calls them once to pack its data. The
browser-side renderer (`views.renderer`) reads the same columns in both.
"""

from __future__ import annotations

import html
import json

import numpy as np

from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import (
    color_scale,
    downsample,
    matrix_label,
    sentence_token_rows,
    tag_attention,
    top_links,
)

__all__ = [
    "DIMMED_ALPHA",
    "LINKS_PER_SENTENCE",
    "MAX_HEATMAP_SIZE",
    "MAX_TOKEN_ROWS",
    "bars_title",
    "browser_json",
    "fade",
    "heat_data",
    "links_data",
    "sentence_columns",
    "state_data",
    "tag_heat_data",
    "text_pieces",
    "token_data",
]

#: Largest heatmap side sent to the notebook; longer traces are mean-pooled to this many bins.
MAX_HEATMAP_SIZE = 300
#: Opacity of sentences whose tag the tag filter hides.
DIMMED_ALPHA = 0.2
#: Strongest links per sentence listed in the info panel (each way).
LINKS_PER_SENTENCE = 3
#: Largest number of query-token rows of the token view; longer sentences are pooled.
MAX_TOKEN_ROWS = 64


def text_pieces(data: ExploreData) -> tuple[list[str], list[str], str]:
    """The trace text cut at the sentence spans, HTML-escaped.

    Returns:
        `(gaps, bodies, tail)`: `gaps[i]` is the text between sentence `i - 1` and sentence `i`,
        `bodies[i]` the text of sentence `i` (from `data.text` and its span), `tail` what follows the
        last sentence. Concatenated in order they give back `data.text`.
    """
    gaps, bodies, position = [], [], 0
    for start, end in data.char_spans:
        gaps.append(html.escape(data.text[position:start]))
        bodies.append(html.escape(data.text[start:end]))
        position = end
    return gaps, bodies, html.escape(data.text[position:])


def fade(confidence: np.ndarray, corrected: list[bool]) -> np.ndarray:
    """Colour strength per sentence from its tag confidence: 1 at probability 1 (and for a corrected or
    hand-given tag of unknown confidence), 0.25 at probability 0."""
    strength = 0.25 + 0.75 * np.nan_to_num(confidence, nan=1.0)
    return np.where(np.asarray(corrected, dtype=bool), 1.0, strength)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _top_receiver_heads(data: ExploreData, count: int = 3) -> list[str]:
    """Per sentence, the receiver heads that give it its highest vertical scores, e.g. 'L12.H3, L9.H0'."""
    layers, heads = zip(*data.receiver_heads, strict=True)
    scores = data.vertical_scores[list(layers), list(heads)]  # [R, S]
    out = []
    for j in range(data.n_sentences):
        column_j = scores[:, j]
        if np.isnan(column_j).all():
            out.append("")
            continue
        order = np.argsort(-np.nan_to_num(column_j, nan=-np.inf), kind="stable")[:count]
        out.append(", ".join(f"L{data.receiver_heads[r][0]}.H{data.receiver_heads[r][1]}" for r in order))
    return out


def sentence_columns(data: ExploreData, scores: np.ndarray, hidden: set[str] = frozenset()) -> dict:
    """Columns of the shared per-sentence source (one row per sentence).

    Args:
        data: The trace data (its current tags, corrections and confidences).
        scores: `[S]` the scores the anchor bars show (`matrices.select_scores`).
        hidden: Tags the tag filter dims.
    """
    corrected = data.corrected
    strength = fade(data.tag_confidence, corrected)
    shown = np.array([t not in hidden for t in data.tags])
    alpha = strength * np.where(shown, 1.0, DIMMED_ALPHA)
    tagger = data.tagger_tags or data.tags
    spans = data.token_spans or [(-1, -1)] * data.n_sentences
    columns = {
        "index": np.arange(data.n_sentences),
        "sentence": data.sentences,
        "short": [_short(s, 120) for s in data.sentences],
        "tip": [_short(s, 60) for s in data.sentences],
        "tag": list(data.tags),
        "tagger_tag": list(tagger),
        "color": [data.tag_color(t) for t in data.tags],
        "confidence": data.tag_confidence.astype(np.float64),
        "fade": strength,
        "corrected": np.array(corrected, dtype=np.int8),
        "shown": shown.astype(np.int8),
        "alpha": alpha,
        "alpha_dim": 0.45 * alpha,
        "anchor": data.anchor_scores.astype(np.float64),
        "bar": np.asarray(scores, dtype=np.float64),
        "top_heads": _top_receiver_heads(data),
        "token_start": np.array([s for s, _ in spans], dtype=np.int64),
        "token_end": np.array([e for _, e in spans], dtype=np.int64),
    }
    for k, name in enumerate(data.evidence):
        columns[f"ev_{k}"] = data.evidence[name]
    return columns


def heat_data(matrix: np.ndarray, max_size: int = MAX_HEATMAP_SIZE) -> dict:
    """Image-glyph columns for one `[S, S]` matrix, pooled to at most `max_size` bins per axis.

    The image covers data coordinates `0..S` on both axes whatever the pooling, so a tap at `(x, y)`
    is sentence `floor(x)` (attended) and `floor(y)` (attending). Cells above the diagonal are NaN
    (drawn transparent).
    """
    size = matrix.shape[0]
    pooled = downsample(np.nan_to_num(matrix, nan=0.0), max_size).copy()
    pooled[np.triu_indices(pooled.shape[0], k=1)] = np.nan
    return {"image": [pooled], "x": [0.0], "y": [0.0], "dw": [float(size)], "dh": [float(size)]}


def links_data(matrix: np.ndarray, k: int = LINKS_PER_SENTENCE) -> dict:
    """Flat `[S * k]` columns of every sentence's strongest links in `matrix` (-1 / 0 where fewer):
    `to`/`to_w` the earlier sentences it attends to most, `by`/`by_w` the later ones attending to it."""
    size = matrix.shape[0]
    to, by = np.full((size, k), -1, np.int32), np.full((size, k), -1, np.int32)
    to_w, by_w = np.zeros((size, k)), np.zeros((size, k))
    for i in range(size):
        attends_to, attended_by = top_links(matrix, i, k)
        to[i, : len(attends_to)] = attends_to
        by[i, : len(attended_by)] = attended_by
        to_w[i, : len(attends_to)] = matrix[i, attends_to]
        by_w[i, : len(attended_by)] = matrix[attended_by, i]
    return {"to": to.ravel(), "to_w": to_w.ravel(), "by": by.ravel(), "by_w": by_w.ravel()}


def bars_title(data: ExploreData, layer: int | None, head: int | None) -> str:
    """What the anchor bars show for a (layer, head) pick, in words."""
    variant = data.meta.get("score_variant", "unspecified")
    scored = f"{int(data.scored.sum())} of {data.n_sentences} sentences scored"
    if layer is None:
        heads = f"{len(data.receiver_heads)} receiver heads"
        if data.meta.get("receiver_heads_source") == "all heads":
            heads = f"all {len(data.receiver_heads)} heads (too few scored sentences to pick receiver heads)"
        return f"anchor score: mean '{variant}' vertical score over {heads}; {scored}"
    if head is None:
        return (
            f"{data.layer_labels[layer]}: mean '{variant}' vertical score of its {data.n_heads} heads "
            f"(not the receiver-head anchor score); {scored}"
        )
    return (
        f"{data.layer_labels[layer]}, {data.head_labels[head]}: its '{variant}' vertical score "
        f"(not the receiver-head anchor score); {scored}"
    )


def state_data(
    data: ExploreData, matrix: np.ndarray, layer: int | None, head: int | None, max_size: int, note: str = ""
) -> dict:
    """The one-row source describing the matrix shown: label, colour scale, pooling, bar title."""
    scale = color_scale(matrix)
    values = tag_attention(matrix, data.tags, data.tags_present())
    finite = values[np.isfinite(values)]
    return {
        "label": [matrix_label(data, layer, head)],
        "high": [scale.high],
        "clipped": [scale.clipped],
        "cells": [scale.cells],
        "rule": [scale.rule],
        "bins": [min(data.n_sentences, max_size)],
        "bars_title": [bars_title(data, layer, head)],
        "tag_high": [float(finite.max()) if finite.size and finite.max() > 0 else 1.0],
        "note": [note],
    }


def tag_heat_data(data: ExploreData, matrix: np.ndarray) -> dict:
    """Columns of the tag x tag map for the tags present (row-major: from, to); NaN where no pair."""
    tags = data.tags_present()
    values = tag_attention(matrix, data.tags, tags).ravel()
    return {
        "from_tag": [a for a in tags for _ in tags],
        "to_tag": [b for _ in tags for b in tags],
        "value": values,
        "text": [f"{v:.4g}" if np.isfinite(v) else "no such pair of sentences" for v in values],
    }


def token_data(data: ExploreData, r: int, i: int | None, max_rows: int = MAX_TOKEN_ROWS) -> tuple[dict, dict]:
    """The token view's image and state for recorded head `r` and sentence `i` (None: nothing selected).

    Only the selected sentence's query rows (pooled to at most `max_rows`) over the text's key bins
    travel: `[n, B]` numbers, never T x T.
    """
    view = data.token_view
    layer, head = view.heads[r]
    label = f"{data.layer_labels[layer]}, {data.head_labels[head]}"
    t = len(view.tokens)
    if i is None:
        image = np.full((1, view.n_bins), np.nan, dtype=np.float32)
        return (
            {"image": [image], "x": [0.0], "y": [0.0], "dw": [float(t)], "dh": [1.0]},
            {
                "title": [f"token attention ({label}): select a sentence"],
                "rows": [[]],
                "n": [0],
                "sentence": [-1],
            },
        )
    rows, starts = sentence_token_rows(view, r, data.token_spans[i], max_rows)
    if rows.shape[0] == 0:
        rows, starts = np.full((1, view.n_bins), np.nan, dtype=np.float32), []
    return (
        {"image": [rows], "x": [0.0], "y": [0.0], "dw": [float(t)], "dh": [float(rows.shape[0])]},
        {
            "title": [f"token attention of sentence #{i} ({label})"],
            "rows": [[view.tokens[p] for p in starts]],
            "n": [len(starts)],
            "sentence": [i],
        },
    )


def browser_json(value) -> str:
    """`value` as plain JSON for a browser-side callback (NaN to null): Bokeh would turn a dict argument
    into a JS `Map`, so the callbacks get JSON text and parse it."""

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json.dumps(clean(value), allow_nan=False)
