"""The phase-tag report: one standalone HTML file plus a JSON and a CSV summary (and tag corrections).

`write_report(data, out_dir)` writes its files as one set (`storage.write_files`: a kill leaves the old
report or the new one, never a mix):

- `report.html`: the shared views of `figures.build_views` with Bokeh's JavaScript inlined, so it opens
  offline from disk with no server and no network request. The views render and link in the browser
  through the same callbacks as the notebook explorer; this module only packs the data the report's own
  pickers feed into the shared sources: every (layer, head) matrix (a layer picker and a head picker),
  the bars of each, the token view's rows, the tag filter and the tag correction picker.
- `summary.json`: counts, top anchors with their evidence, tag counts and per-tag anchor summaries
  ("n scored of m"), which matrices the HTML holds and at what resolution, meta, the route.
- `sentences.csv`: one row per sentence: text, tag (and the tagger's, when corrected), confidence,
  anchor score (empty when not scored), evidence scores, character span.
- `tag_corrections.json` (`views.corrections`), when the data has corrections. A `tag_corrections.json`
  already in `out_dir` (e.g. downloaded from the report's page and put there) is re-applied first.

Size: Bokeh's JavaScript (about 1.6 MB) plus the packed matrices within `max_matrix_bytes` (raw bytes,
base64 adds a third): the receiver-head average at `max_size` bins, then the layer means and receiver
heads, then every other head, each group pooled to fewer bins when the budget needs it; what was pooled
or left out is said on the page and in `summary.json`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from stream_widgets import storage
from stream_widgets.views import corrections as corrections_io
from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import (
    color_scale,
    downsample,
    matrix_label,
    select_matrix,
    select_scores,
    sentence_token_rows,
    spearman,
    tag_attention,
    tag_table,
    top_links,
)
from stream_widgets.views.sources import (
    DIMMED_ALPHA,
    LINKS_PER_SENTENCE,
    MAX_TOKEN_ROWS,
    bars_title,
    browser_json,
)

__all__ = ["REPORT_FILES", "write_report"]

#: The files `write_report` always writes into its output folder (plus `tag_corrections.json` when
#: there are corrections).
REPORT_FILES = ("report.html", "summary.json", "sentences.csv")

_SIZES = (256, 200, 160, 128, 96, 64, 48, 32, 24, 16)  # heatmap resolutions tried to fit the budget


def _json_safe(value: Any) -> Any:
    """Values as JSON: numpy scalars and arrays to Python, NaN to null, anything else unknown to `str`."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# ---------------------------------------------------------------------------- packing for the browser


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


def _pack_matrices(data: ExploreData, max_size: int, budget: int) -> dict:
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


def _pack_tokens(data: ExploreData, budget: int) -> dict | None:
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


# ---------------------------------------------------------------------------- the report's own feeders

# These only feed the shared sources from the packed data (what the explorer does from Python); the
# shared callbacks of `figures` render every view from them.
_JS_PICK = r"""
const consts_report = JSON.parse(consts_report_json);
const S = sentences.data.index.length, M = meta.data;
const layer = parseInt(layer_select.value), head = parseInt(head_select.value);
head_select.disabled = layer < 0;
const key = layer < 0 ? 'avg' : (head < 0 ? 'l' + layer : 'l' + layer + 'h' + head);
const m = M.key.indexOf(key);
if (m < 0) {
  state.data = Object.assign({}, state.data, {note: ['This matrix was left out of the report to keep the file small (see summary.json); the notebook explorer shows every head.']});
  return;
}
const n = M.n[m], q = packed.data.tri, scale = M.scale[m];
const NDArray = heat.data.image[0].constructor;  // BokehJS's float32 ndarray: images need a shape
const flat = new Float32Array(n * n);
let o = M.offset[m];
for (let i = 0; i < n; i++) {
  for (let j = 0; j < n; j++) flat[i * n + j] = j <= i ? q[o + j] * scale / 255 : NaN;
  o += i + 1;
}
heat.data = {image: [new NDArray(flat, [n, n])], x: [0], y: [0], dw: [S], dh: [S]};
const k = consts_report.links_per_sentence, L = M.links_offset[m];
const to = [], by = [], to_w = [], by_w = [];
for (let x = 0; x < S * k; x++) {
  if (L < 0) { to.push(-1); by.push(-1); to_w.push(0); by_w.push(0); continue; }
  to.push(link_index.data.v[L + x]); by.push(link_index.data.v[L + S * k + x]);
  to_w.push(link_weight.data.v[L + x] * scale / 255); by_w.push(link_weight.data.v[L + S * k + x] * scale / 255);
}
links.data = {to: to, to_w: to_w, by: by, by_w: by_w};
const T = consts_report.n_tags, values = Array.from(tag_values.data.v.slice(m * T * T, (m + 1) * T * T));
tag_heat.data = Object.assign({}, tag_heat.data, {value: values, text: values.map(v => Number.isFinite(v) ? v.toPrecision(4) : 'no such pair of sentences')});
let note = M.n[m] < S ? `The report stores this matrix at ${M.n[m]} x ${M.n[m]} bins to keep the file small; the explorer shows it at full resolution.` : '';
if (L < 0) note += ' Its strongest links are not stored in the report (file budget): the info panel lists none.';
state.data = {label: [M.label[m]], high: [M.high[m]], clipped: [M.clipped[m]], cells: [M.cells[m]], rule: [M.rule[m]],
  bins: [M.n[m]], bars_title: [M.bars_title[m]], tag_high: [M.tag_high[m]], note: [note]};
const d = sentences.data;
let bar;
if (M.bar_offset[m] < 0) bar = Array.from(d.anchor);
else bar = Array.from(bars.data.v.slice(M.bar_offset[m], M.bar_offset[m] + S)).map(v => v === 255 ? NaN : M.bar_lo[m] + v / 254 * M.bar_span[m]);
sentences.data = Object.assign({}, d, {bar: bar});
"""

_JS_FILTER = r"""
const consts_report = JSON.parse(consts_report_json);
const shown = new Set(tag_filter.value);
const d = sentences.data;
const flag = d.tag.map(t => shown.has(t) ? 1 : 0);
const alpha = Array.from(d.fade).map((f, i) => f * (flag[i] ? 1 : consts_report.dimmed_alpha));
sentences.data = Object.assign({}, d, {shown: flag, alpha: alpha, alpha_dim: alpha.map(a => 0.45 * a)});
"""

_JS_CORRECT = r"""
const consts_report = JSON.parse(consts_report_json);
const s = sentences.selected.indices;
if (!s.length || tag_correct.value === '') return;
const i = s[0], d = sentences.data, t = tag_correct.value;
if (d.tag[i] === t) return;
const tag = Array.from(d.tag), color = Array.from(d.color), corrected = Array.from(d.corrected);
const fade = Array.from(d.fade), alpha = Array.from(d.alpha);
tag[i] = t;
color[i] = consts_report.tag_colors[t] || consts_report.fallback_color;
corrected[i] = t === d.tagger_tag[i] ? 0 : 1;
fade[i] = 1;
alpha[i] = d.shown[i] ? 1 : consts_report.dimmed_alpha;
sentences.data = Object.assign({}, d, {tag: tag, color: color, corrected: corrected, fade: fade, alpha: alpha, alpha_dim: alpha.map(a => 0.45 * a)});
"""

_JS_DOWNLOAD = r"""
const consts_report = JSON.parse(consts_report_json);
const d = sentences.data, doc = Object.assign({}, consts_report.corrections_base);
doc.corrections = [];
for (let i = 0; i < d.tag.length; i++) {
  if (d.tag[i] === d.tagger_tag[i]) continue;
  doc.corrections.push({index: i, char_start: consts_report.char_spans[i][0], char_end: consts_report.char_spans[i][1],
                        sentence: d.sentence[i], tag: d.tag[i], tagger_tag: d.tagger_tag[i]});
}
const blob = new Blob([JSON.stringify(doc, null, 2) + '\n'], {type: 'application/json'});
const a = document.createElement('a');
a.href = URL.createObjectURL(blob);
a.download = 'tag_corrections.json';
document.body.appendChild(a);
a.click();
a.remove();
"""

_JS_SELECTION = r"""
const s = sentences.selected.indices, i = s.length ? s[0] : null;
const want = i === null ? '-1' : String(i);
if (anchor_select.value !== want) anchor_select.value = want;
tag_correct.disabled = i === null;
if (i !== null && tag_correct.value !== sentences.data.tag[i]) tag_correct.value = sentences.data.tag[i];
"""

_JS_ANCHOR = r"""
const i = parseInt(anchor_select.value);
const want = i < 0 ? [] : [i];
if (JSON.stringify(Array.from(sentences.selected.indices)) !== JSON.stringify(want)) sentences.selected.indices = want;
"""

_JS_TOKENS = r"""
const consts_report = JSON.parse(consts_report_json);
const s = sentences.selected.indices, i = s.length ? s[0] : null, r = parseInt(token_select.value);
const TM = JSON.parse(token_meta_json), B = consts_report.token_bins, T = consts_report.token_count;
const NDArray = tokens.data.image[0].constructor;
if (i === null || r < 0 || r >= TM.offset.length) {
  tokens.data = {image: [new NDArray(new Float32Array(B).fill(NaN), [1, B])], x: [0], y: [0], dw: [T], dh: [1]};
  token_state.data = {title: ['token attention: select a sentence'], rows: [[]], n: [0], sentence: [-1]};
  return;
}
const n = consts_report.n_rows[i], base = TM.offset[r] + consts_report.row_offset[i] * B, scale = TM.scale[r];
const flat = new Float32Array(Math.max(n, 1) * B).fill(NaN);
for (let a = 0; a < n * B; a++) flat[a] = token_blob.data.v[base + a] * scale / 255;
tokens.data = {image: [new NDArray(flat, [Math.max(n, 1), B])], x: [0], y: [0], dw: [T], dh: [Math.max(n, 1)]};
token_state.data = {title: [`token attention of sentence #${i} (${TM.label[r]})`], rows: [consts_report.row_labels[i]], n: [n], sentence: [i]};
"""


def _build_document(
    data: ExploreData, max_size: int, max_matrix_bytes: int, max_token_bytes: int, backend: str
):
    """The report's Bokeh document and what went into it."""
    from bokeh.models import Button, ColumnDataSource, CustomJS, Div, MultiChoice, Select

    from stream_widgets.views.figures import HALF_WIDTH, attach, build_views

    packed = _pack_matrices(data, max_size, max_matrix_bytes)
    tokens_packed = _pack_tokens(data, max_token_bytes)
    notes = []
    if packed["pooled"]:
        sizes = ", ".join(
            f"{count} at {n} x {n}" for n, count in sorted(packed["pooled"].items(), reverse=True)
        )
        notes.append(f"To keep the file small, matrices are stored pooled ({sizes} bins).")
    if packed["left_out"]:
        notes.append(
            f"{len(packed['left_out'])} matrices are left out (file budget): the notebook explorer shows them."
        )
    if tokens_packed and tokens_packed["left_out"]:
        notes.append(
            f"Token rows of {len(tokens_packed['left_out'])} recorded heads are left out (file budget)."
        )
    layer_select = Select(
        title="heatmap layer",
        value="-1",
        options=[("-1", "receiver-head average")]
        + [(str(i), name) for i, name in enumerate(data.layer_labels)],
        name="sw_layer_select",
        width=200,
    )
    head_select = Select(
        title="head",
        value="-1",
        options=[("-1", "mean of heads")] + [(str(i), name) for i, name in enumerate(data.head_labels)],
        name="sw_head_select",
        width=160,
        disabled=True,
    )
    # every sentence, best anchor first, so that any selection shows here
    anchor_options = [("-1", "(no sentence selected)")]
    anchor_options += [
        (str(i), f"#{i} {data.anchor_scores[i]:.3g} {data.tags[i]}: {data.sentences[i][:50]}")
        for i in data.top_anchors(data.n_sentences)
    ]
    anchor_options += [
        (str(i), f"#{i} not scored {data.tags[i]}: {data.sentences[i][:50]}")
        for i in range(data.n_sentences)
        if not data.scored[i]
    ]
    anchor_select = Select(
        title="sentences, best anchor first",
        value="-1",
        options=anchor_options,
        name="sw_anchor_select",
        width=HALF_WIDTH,
    )
    tag_filter = MultiChoice(  # the whole vocabulary: a corrected tag may be one no sentence had
        title="tags shown (the others are dimmed)",
        options=list(data.tag_vocabulary),
        value=list(data.tag_vocabulary),
        name="sw_tag_filter",
        width=HALF_WIDTH,
    )
    tag_correct = Select(
        title="correct the selected sentence's tag",
        value="",
        options=[""] + list(data.tag_vocabulary),
        name="sw_tag_correct",
        width=240,
        disabled=True,
    )
    download = Button(label="download tag_corrections.json", name="sw_download_corrections", width=240)
    correction_help = Div(
        text="<div style='font-size:11px;color:#444'>Corrections show at once. A page opened from disk cannot "
        "write files: download them, put <code>tag_corrections.json</code> in this report's folder and rebuild "
        "the report there to keep them; <code>python -m tagging.train --corrections FILE</code> trains on them."
        "</div>",
        width=HALF_WIDTH,
    )
    budget_note = Div(
        text=f"<div style='font-size:11px;color:#777'>{' '.join(notes)}</div>" if notes else "",
        name="sw_budget_note",
        width=HALF_WIDTH,
    )
    controls = [
        layer_select,
        head_select,
        anchor_select,
        tag_correct,
        download,
        correction_help,
        tag_filter,
        budget_note,
    ]
    token_select = None
    if tokens_packed is not None:
        token_select = Select(
            title="token view head",
            value="0",
            options=[(str(r), label) for r, label in enumerate(tokens_packed["meta"]["label"])],
            name="sw_token_head_select",
            width=200,
        )
        controls.insert(4, token_select)
    views = build_views(
        data,
        select_matrix(data, None, None),
        None,
        None,
        max_size,
        controls=controls,
        state_note=" ".join(notes[:1]),
        output_backend=backend,
    )
    document = attach(views)

    def blob(name: str, values: np.ndarray) -> ColumnDataSource:
        return ColumnDataSource({"v": values}, name=name)

    consts_report = {
        "links_per_sentence": LINKS_PER_SENTENCE,
        "n_tags": packed["n_tags"],
        "dimmed_alpha": DIMMED_ALPHA,
        "tag_colors": dict(data.tag_colors),
        "fallback_color": data.tag_color("\0"),
        "char_spans": [list(span) for span in data.char_spans],
        "corrections_base": {
            k: v for k, v in corrections_io.corrections_document(data).items() if k != "corrections"
        },
    }
    args = dict(
        sentences=views.sentences,
        heat=views.heat,
        links=views.links,
        state=views.state,
        tag_heat=views.tag_heat,
        meta=ColumnDataSource(packed["meta"], name="sw_matrix_meta"),
        packed=ColumnDataSource({"tri": packed["tri"]}, name="sw_matrices"),
        link_index=blob("sw_link_index", packed["link_index"]),
        link_weight=blob("sw_link_weight", packed["link_weight"]),
        bars=blob("sw_bars_packed", packed["bars"]),
        tag_values=blob("sw_tag_values", packed["tag_values"]),
        layer_select=layer_select,
        head_select=head_select,
        anchor_select=anchor_select,
        tag_filter=tag_filter,
        tag_correct=tag_correct,
        consts_report_json=browser_json(consts_report),
    )
    layer_select.js_on_change("value", CustomJS(args=args, code=_JS_PICK))
    head_select.js_on_change("value", CustomJS(args=args, code=_JS_PICK))
    tag_filter.js_on_change("value", CustomJS(args=args, code=_JS_FILTER))
    tag_correct.js_on_change("value", CustomJS(args=args, code=_JS_CORRECT))
    download.js_on_event("button_click", CustomJS(args=args, code=_JS_DOWNLOAD))
    views.sentences.selected.js_on_change("indices", CustomJS(args=args, code=_JS_SELECTION))
    anchor_select.js_on_change("value", CustomJS(args=args, code=_JS_ANCHOR))
    if tokens_packed is not None:
        view = data.token_view
        consts_report.update(
            token_bins=view.n_bins,
            token_count=len(view.tokens),
            n_rows=tokens_packed["n_rows"],
            row_offset=tokens_packed["row_offset"],
            row_labels=tokens_packed["labels"],
        )
        token_args = dict(
            sentences=views.sentences,
            tokens=views.tokens,
            token_state=views.token_state,
            token_select=token_select,
            token_blob=blob("sw_token_blob", tokens_packed["blob"]),
            token_meta_json=browser_json(tokens_packed["meta"]),
            consts_report_json=browser_json(consts_report),
        )
        feed = CustomJS(args=token_args, code=_JS_TOKENS)
        views.sentences.selected.js_on_change("indices", feed)
        token_select.js_on_change("value", feed)
    return document, packed, tokens_packed


# ---------------------------------------------------------------------------- summary files


def _summary(data: ExploreData, packed: dict, tokens_packed: dict | None, top_anchors: int) -> dict:
    counts = {t: int(sum(1 for x in data.tags if x == t)) for t in data.tags_present()}
    table = tag_table(data.tags, data.anchor_scores, data.tags_present())
    evidence = {name: list(spearman(data.anchor_scores, values)) for name, values in data.evidence.items()}
    return {
        "n_sentences": data.n_sentences,
        "n_scored": int(data.scored.sum()),
        "n_layers": data.n_layers,
        "n_heads": data.n_heads,
        "receiver_heads": [list(h) for h in data.receiver_heads],
        "receiver_heads_source": data.meta.get("receiver_heads_source", "given"),
        "score_variant": data.meta.get("score_variant"),
        "top_anchors": [
            {
                "index": i,
                "sentence": data.sentences[i],
                "tag": data.tags[i],
                "tag_confidence": float(data.tag_confidence[i]),
                "anchor_score": float(data.anchor_scores[i]),
                "evidence": {name: float(values[i]) for name, values in data.evidence.items()},
                "char_span": list(data.char_spans[i]),
            }
            for i in data.top_anchors(top_anchors)
        ],
        "tag_counts": counts,
        "mean_anchor_score_per_tag": {r["tag"]: r["mean_anchor_score"] for r in table},
        "tag_table": table,
        "tag_corrections": sum(data.corrected),
        "evidence_spearman": {name: {"rho": rho, "n": n} for name, (rho, n) in evidence.items()},
        "suppression": None if data.suppression is None else data.suppression,
        "heatmap_matrices": packed["meta"]["label"],
        "heatmap_bins": packed["meta"]["n"],
        "heatmap_matrices_left_out": packed["left_out"],
        "heatmap_size": packed["meta"]["n"][0],
        "token_view_heads": [] if tokens_packed is None else tokens_packed["meta"]["label"],
        "token_view_heads_left_out": [] if tokens_packed is None else tokens_packed["left_out"],
        "tag_colors": {t: data.tag_color(t) for t in counts},
        "meta": data.meta,
        "route": None if data.route is None else data.route.to_dict(),
    }


def _number(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else ""


def _sentences_csv(data: ExploreData) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(data.evidence)
    writer.writerow(
        [
            "index",
            "sentence",
            "tag",
            "tagger_tag",
            "tag_confidence",
            "anchor_score",
            *names,
            "char_start",
            "char_end",
        ]
    )
    tagger = data.tagger_tags or data.tags
    for i, sentence in enumerate(data.sentences):
        start, end = data.char_spans[i]
        writer.writerow(
            [
                i,
                sentence,
                data.tags[i],
                tagger[i],
                _number(data.tag_confidence[i]),
                _number(data.anchor_scores[i]),
                *(_number(data.evidence[name][i]) for name in names),
                start,
                end,
            ]
        )
    return buffer.getvalue()


def write_report(
    data: ExploreData,
    out_dir: str | os.PathLike,
    *,
    max_size: int = 200,
    max_matrix_bytes: int = 900_000,
    max_token_bytes: int = 400_000,
    top_anchors: int = 10,
    output_backend: str = "canvas",
) -> Path:
    """Write `report.html`, `summary.json` and `sentences.csv` into `out_dir` (created if missing).

    A `tag_corrections.json` already in `out_dir` is applied first (and written back with any the data
    brings), so corrections downloaded from the page survive a rebuild into the same folder.

    Args:
        data: Sentences, tags, scores and sentence attention (`ExploreData`).
        out_dir: Output folder.
        max_size: Largest heatmap side in the HTML; longer traces are mean-pooled to this many bins.
        max_matrix_bytes: Budget for the matrices packed into the HTML (raw bytes; base64 adds a third):
            beyond the receiver-head average, groups are pooled to fewer bins, then cut, to fit.
        max_token_bytes: Budget for the token view's rows (raw bytes); heads beyond it are left out.
        top_anchors: How many top anchors `summary.json` lists.
        output_backend: ``"canvas"`` (each figure's save tool writes PNG) or ``"svg"`` (SVG).

    Returns:
        The path of `report.html`.
    """
    if not isinstance(data, ExploreData):
        raise TypeError(f"write_report needs an ExploreData, got {type(data).__name__}")
    if max_size < 2:
        raise ValueError(f"max_size must be >= 2, got {max_size}")
    if max_matrix_bytes < 0 or max_token_bytes < 0:
        raise ValueError(
            f"max_matrix_bytes and max_token_bytes must be >= 0, got {max_matrix_bytes}, {max_token_bytes}"
        )
    if top_anchors < 1:
        raise ValueError(f"top_anchors must be >= 1, got {top_anchors}")
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = out / corrections_io.CORRECTIONS_FILE
    if existing.is_file():
        data = corrections_io.apply_corrections(data, corrections_io.load_corrections(existing))
    document, packed, tokens_packed = _build_document(
        data, max_size, max_matrix_bytes, max_token_bytes, output_backend
    )
    title = str(data.meta.get("title", "stream-widgets report"))
    summary = _json_safe(_summary(data, packed, tokens_packed, top_anchors))
    files = {
        "report.html": file_html(document, resources=INLINE, title=title),
        "summary.json": json.dumps(summary, indent=2, allow_nan=False) + "\n",
        "sentences.csv": _sentences_csv(data),
    }
    if any(data.corrected):
        files[corrections_io.CORRECTIONS_FILE] = corrections_io.corrections_json(
            corrections_io.corrections_document(data)
        )
    # One swap for the whole set: a kill leaves the old report or the new one, never a mix.
    folder = storage.write_files(out, files)
    return folder / "report.html"
