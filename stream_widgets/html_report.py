"""The phase-tag report: one standalone HTML file plus a JSON and a CSV summary.

`write_report(data, out_dir)` writes three files, each atomically (temporary file + `os.replace`):

- `report.html`: the linked views of `widgets.figures.build_views` with Bokeh's JavaScript inlined, so
  it opens offline from disk with no server and no network request. Links run in the browser through
  `CustomJS`: clicking an anchor bar, a heatmap cell, a sentence or an entry of the anchor list selects
  that sentence everywhere; a Select swaps the heatmap between the receiver-head average, each layer's
  head mean and each receiver head; checkboxes filter tags. When the data has a needle route, its view
  comes last; tapping an edge selects the sentence holding the token it reads.
- `summary.json`: top anchors, tag counts, mean anchor score per tag, which matrices the HTML holds, meta,
  and the route (`Route.to_dict()`, or null).
- `sentences.csv`: index, sentence, tag, anchor score, vertical score, character span.

Size: the HTML holds Bokeh's JavaScript (about 1.6 MB) and, per matrix, the lower triangle of the
pooled `[n, n]` matrix quantised to 8 bits (`n (n + 1) / 2` bytes, base64-encoded) plus the top links
of every sentence. Matrices are added in the order above until `max_matrix_bytes` is reached; the
receiver-head average is always in. With 200 sentences and the default budget the file stays under 3 MB.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stream_widgets.widgets.data import TAG_COLORS, ExploreData
from stream_widgets.widgets.matrices import (
    color_high,
    downsample,
    matrix_label,
    select_matrix,
    tag_attention,
    tag_table,
    top_links,
)

__all__ = ["REPORT_FILES", "write_report"]

#: The files `write_report` writes into its output folder.
REPORT_FILES = ("report.html", "summary.json", "sentences.csv")

_TOP_LINKS = 3


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """Meta values as JSON: numpy scalars and arrays to Python, anything else unknown to `str`."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# ---------------------------------------------------------------------------- matrices for the browser


def _matrix_choices(data: ExploreData) -> list[tuple[int | None, int | None]]:
    """Candidate matrices in priority order: receiver average, each layer's head mean, receiver heads."""
    choices: list[tuple[int | None, int | None]] = [(None, None)]
    choices += [(layer, None) for layer in range(data.n_layers)]
    choices += sorted(data.receiver_heads)
    return choices


def _pack_matrices(data: ExploreData, max_size: int, max_matrix_bytes: int) -> dict:
    """Quantise the chosen matrices for the browser, within a byte budget (base64 size)."""
    size = data.n_sentences
    n = min(size, max_size)
    tril = np.tril_indices(n)
    per_matrix = math.ceil(len(tril[0]) / 3) * 4 + math.ceil(size * _TOP_LINKS * 2 * 2 / 3) * 4
    tags = data.tags_present()
    packed: dict[str, Any] = {
        "keys": [],
        "labels": [],
        "scale": [],
        "high": [],
        "tag_values": [],
        "tag_high": [],
    }
    columns: dict[str, np.ndarray] = {}
    links: dict[str, np.ndarray] = {}
    skipped = []
    for layer, head in _matrix_choices(data):
        label = matrix_label(data, layer, head)
        if packed["keys"] and (len(packed["keys"]) + 1) * per_matrix > max_matrix_bytes:
            skipped.append(label)
            continue
        key = f"m{len(packed['keys'])}"
        matrix = select_matrix(data, layer, head)
        pooled = downsample(matrix, n)[tril]
        scale = float(pooled.max(initial=0.0)) or 1.0
        columns[key] = np.round(np.clip(pooled / scale, 0.0, 1.0) * 255).astype(np.uint8)
        to_links = np.full((size, _TOP_LINKS), -1, dtype=np.int16)
        by_links = np.full((size, _TOP_LINKS), -1, dtype=np.int16)
        for i in range(size):
            attends_to, attended_by = top_links(matrix, i, _TOP_LINKS)
            to_links[i, : len(attends_to)] = attends_to
            by_links[i, : len(attended_by)] = attended_by
        links[f"to_{key}"] = to_links.ravel()
        links[f"by_{key}"] = by_links.ravel()
        values = tag_attention(matrix, data.tags, tags).ravel()
        finite = values[np.isfinite(values)]
        packed["keys"].append(key)
        packed["labels"].append(label)
        packed["scale"].append(scale)
        packed["high"].append(color_high(matrix))
        packed["tag_values"].append([float(v) if np.isfinite(v) else float("nan") for v in values])
        packed["tag_high"].append(float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    packed.update(n=n, columns=columns, links=links, skipped=skipped)
    return packed


# ---------------------------------------------------------------------------- browser-side callbacks

# Shared by every CustomJS below (each gets the same args). Mirrors figures.span_style / info_html.
_JS_PRELUDE = r"""
const S = sentences.data.index.length;
function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
function selectedIndex() { const s = sentences.selected.indices; return s.length ? s[0] : null; }
function matrixPos() { return Math.max(0, meta.data.key.indexOf(matrix_select.value)); }
function spanStyle(color, sel, dim) {
  let st = `background:${color}44;border-radius:3px;padding:0 1px;cursor:pointer;`;
  if (sel) st += `outline:2px solid ${selected_color};background:${color}77;font-weight:600;`;
  if (dim) st += `opacity:${dimmed_alpha};`;
  return st;
}
function renderText(sel) {
  const tags = sentences.data.tag, colors = sentences.data.color, alpha = sentences.data.alpha;
  const parts = [];
  for (let i = 0; i < S; i++) {
    const cls = i === sel ? 'sw-sentence sw-selected' : 'sw-sentence';
    const click = `if(window.Bokeh){for(const d of Bokeh.documents){const m=d.get_model_by_id('${sentences.id}');if(m){m.selected.indices=[${i}];}}}`;
    parts.push(gaps[i] + `<span class="${cls}" data-sw-index="${i}" title="#${i} ${tags[i]}" ` +
      `style="${spanStyle(colors[i], i === sel, alpha[i] < 1)}" onclick="${click}">${bodies[i]}</span>`);
  }
  text_div.text = `<div class="sw-text" style="white-space:pre-wrap;line-height:1.5">${parts.join('')}${tail}</div>`;
}
function linkItems(list) {
  const items = [];
  for (const j of list) {
    if (j < 0) continue;
    const s = sentences.data.sentence[j];
    const short = s.length <= 90 ? s : s.slice(0, 87) + '...';
    items.push(`<li><b style="color:${sentences.data.color[j]}">#${j}</b> ${esc(short)} <i>${sentences.data.tag[j]}</i></li>`);
  }
  return items.length ? items.join('') : '<li>none</li>';
}
function renderInfo(sel) {
  if (sel === null) {
    info_div.text = "<div class='sw-info'><i>Click a bar, a heatmap cell or a sentence to select it.</i></div>";
    return;
  }
  const pos = matrixPos(), key = meta.data.key[pos], k = top_k;
  const to = Array.from(links.data['to_' + key].slice(sel * k, sel * k + k));
  const by = Array.from(links.data['by_' + key].slice(sel * k, sel * k + k));
  const d = sentences.data, tag = d.tag[sel];
  info_div.text = `<div class='sw-info' data-sw-index='${sel}'><b>Sentence #${sel}</b> ` +
    `<span style='background:${d.color[sel]}44;padding:0 4px'>${tag}</span><br>` +
    `anchor score ${Number(d.anchor[sel]).toPrecision(4)}, vertical score ${Number(d.vertical[sel]).toPrecision(4)}` +
    `<blockquote style='margin:4px 8px'>${esc(d.sentence[sel])}</blockquote>` +
    `<b>Attends to most</b> (${esc(meta.data.label[pos])})<ul style='margin:2px'>${linkItems(to)}</ul>` +
    `<b>Attended to most by</b><ul style='margin:2px'>${linkItems(by)}</ul></div>`;
}
function renderHighlight(sel) {
  if (sel === null) { highlight.data = {x: [], y: [], w: [], h: []}; return; }
  const c = sel + 0.5;
  highlight.data = {x: [c, S / 2], y: [S / 2, c], w: [1, S], h: [S, 1]};
}
"""

_JS_SELECT = r"""
const sel = selectedIndex();
renderText(sel); renderInfo(sel); renderHighlight(sel);
const want = sel === null ? '-1' : String(sel);
if (anchor_select.options.some(o => o[0] === want) && anchor_select.value !== want) anchor_select.value = want;
"""

_JS_MATRIX = r"""
const pos = matrixPos(), key = meta.data.key[pos], n = meta.data.n[pos], scale = meta.data.scale[pos];
const q = matrices.data[key];
const img = heat.data.image[0];  // the [n, n] float32 image; same n for every matrix, filled in place
let off = 0;
for (let i = 0; i < n; i++) {
  for (let j = 0; j < n; j++) img[i * n + j] = j <= i ? q[off + j] * scale / 255 : NaN;
  off += i + 1;
}
heat.data = {image: [img], x: [0], y: [0], dw: [S], dh: [S]};
heat_mapper.high = meta.data.high[pos];
tag_heat.data = Object.assign({}, tag_heat.data, {value: meta.data.tag_values[pos]});
tag_mapper.high = meta.data.tag_high[pos];
heat_figure.title.text = 'sentence attention: ' + meta.data.label[pos];
renderInfo(selectedIndex());
"""

_JS_TAP = r"""
const j = Math.floor(cb_obj.x);
if (j >= 0 && j < S) sentences.selected.indices = [j];
"""

_JS_ANCHOR = r"""
const i = parseInt(anchor_select.value);
const want = i < 0 ? [] : [i];
if (JSON.stringify(Array.from(sentences.selected.indices)) !== JSON.stringify(want)) sentences.selected.indices = want;
"""

_JS_FILTER = r"""
const shown = new Set(tag_filter.active.map(k => tag_filter.labels[k]));
const alpha = sentences.data.tag.map(t => shown.has(t) ? 1.0 : dimmed_alpha);
sentences.data = Object.assign({}, sentences.data, {alpha: alpha, alpha_dim: alpha.map(a => 0.45 * a)});
renderText(selectedIndex());
"""


def _build_document(data: ExploreData, max_size: int, max_matrix_bytes: int):
    """The report's Bokeh layout and what went into it."""
    from bokeh.layouts import column, row
    from bokeh.models import CheckboxGroup, ColumnDataSource, CustomJS, Div, Select

    from stream_widgets.widgets.figures import (
        DIMMED_ALPHA,
        SELECTED_COLOR,
        build_views,
        text_pieces,
    )

    packed = _pack_matrices(data, max_size, max_matrix_bytes)
    first = select_matrix(data, None, None)
    views = build_views(data, first, packed["labels"][0], max_size)
    matrices = ColumnDataSource(packed["columns"], name="sw_matrices")
    links = ColumnDataSource(packed["links"], name="sw_links")
    meta = ColumnDataSource(
        {
            "key": packed["keys"],
            "label": packed["labels"],
            "n": [packed["n"]] * len(packed["keys"]),
            "scale": packed["scale"],
            "high": packed["high"],
            "tag_values": packed["tag_values"],
            "tag_high": packed["tag_high"],
        },
        name="sw_matrix_meta",
    )
    matrix_select = Select(
        title="heatmap",
        value=packed["keys"][0],
        options=list(zip(packed["keys"], packed["labels"], strict=True)),
        name="sw_matrix_select",
        width=320,
    )
    anchor_options = [("-1", "(no sentence selected)")] + [
        (str(i), f"#{i} {data.anchor_scores[i]:.3g} {data.tags[i]}: {data.sentences[i][:50]}")
        for i in data.top_anchors(20)
    ]
    anchor_select = Select(
        title="top anchors", value="-1", options=anchor_options, name="sw_anchor_select", width=460
    )
    present = data.tags_present()
    tag_filter = CheckboxGroup(
        labels=present, active=list(range(len(present))), inline=True, name="sw_tag_filter"
    )
    gaps, bodies, tail = text_pieces(data)
    args = dict(
        sentences=views.sentences,
        heat=views.heat,
        highlight=views.highlight,
        tag_heat=views.tag_heat,
        heat_mapper=views.heat_mapper,
        tag_mapper=views.tag_mapper,
        text_div=views.text_div,
        info_div=views.info_div,
        heat_figure=views.heat_figure,
        matrices=matrices,
        links=links,
        meta=meta,
        matrix_select=matrix_select,
        anchor_select=anchor_select,
        tag_filter=tag_filter,
        gaps=gaps,
        bodies=bodies,
        tail=tail,
        top_k=_TOP_LINKS,
        selected_color=SELECTED_COLOR,
        dimmed_alpha=DIMMED_ALPHA,
    )

    def callback(code: str) -> CustomJS:
        return CustomJS(args=args, code=_JS_PRELUDE + code)

    views.sentences.selected.js_on_change("indices", callback(_JS_SELECT))
    matrix_select.js_on_change("value", callback(_JS_MATRIX))
    anchor_select.js_on_change("value", callback(_JS_ANCHOR))
    tag_filter.js_on_change("active", callback(_JS_FILTER))
    views.heat_figure.js_on_event("tap", callback(_JS_TAP))
    note = Div(
        text=f"<span style='color:#777;font-size:11px'>{len(packed['skipped'])} more matrices left out to keep the "
        "file small; use the notebook explorer for every head.</span>"
        if packed["skipped"]
        else "",
        disable_math=True,
    )
    controls = column(row(matrix_select, anchor_select), tag_filter, note)
    layout = column(views.layout.children[0], controls, *views.layout.children[1:], name="sw_report")
    return layout, packed


def _summary(data: ExploreData, packed: dict, top_k: int) -> dict:
    counts = {t: int(sum(1 for x in data.tags if x == t)) for t in data.tags_present()}
    table = tag_table(data)
    return {
        "n_sentences": data.n_sentences,
        "n_layers": data.n_layers,
        "n_heads": data.n_heads,
        "receiver_heads": [list(h) for h in data.receiver_heads],
        "score_variant": data.meta.get("score_variant"),
        "top_anchors": [
            {
                "index": i,
                "sentence": data.sentences[i],
                "tag": data.tags[i],
                "anchor_score": float(data.anchor_scores[i]),
                "vertical_score": float(data.vertical_scores[i]),
                "char_span": list(data.char_spans[i]),
            }
            for i in data.top_anchors(top_k)
        ],
        "tag_counts": counts,
        "mean_anchor_score_per_tag": {r["tag"]: r["mean_anchor_score"] for r in table},
        "tag_table": table,
        "heatmap_matrices": packed["labels"],
        "heatmap_matrices_left_out": packed["skipped"],
        "heatmap_size": packed["n"],
        "tag_colors": {t: TAG_COLORS[t] for t in counts},
        "meta": _json_safe(data.meta),
        "route": None if data.route is None else _json_safe(data.route.to_dict()),
    }


def _sentences_csv(data: ExploreData) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "sentence", "tag", "anchor_score", "vertical_score", "char_start", "char_end"])
    for i, sentence in enumerate(data.sentences):
        start, end = data.char_spans[i]
        writer.writerow(
            [
                i,
                sentence,
                data.tags[i],
                repr(float(data.anchor_scores[i])),
                repr(float(data.vertical_scores[i])),
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
    max_matrix_bytes: int = 1_000_000,
    top_k: int = 10,
) -> Path:
    """Write `report.html`, `summary.json` and `sentences.csv` into `out_dir` (created if missing).

    Args:
        data: Sentences, tags, scores and sentence attention (`ExploreData`).
        out_dir: Output folder.
        max_size: Largest heatmap side in the HTML; longer traces are mean-pooled to this many bins.
        max_matrix_bytes: Budget for the matrices embedded in the HTML (base64 bytes); matrices beyond
            it are left out and listed in `summary.json` under `heatmap_matrices_left_out`.
        top_k: How many top anchors `summary.json` lists.

    Returns:
        The path of `report.html`.
    """
    if not isinstance(data, ExploreData):
        raise TypeError(f"write_report needs an ExploreData, got {type(data).__name__}")
    if max_size < 2:
        raise ValueError(f"max_size must be >= 2, got {max_size}")
    if max_matrix_bytes < 0:
        raise ValueError(f"max_matrix_bytes must be >= 0, got {max_matrix_bytes}")
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout, packed = _build_document(data, max_size, max_matrix_bytes)
    title = str(data.meta.get("title", "stream-widgets report"))
    page = file_html(layout, resources=INLINE, title=title)
    html_path = out / "report.html"
    _write_atomic(html_path, page)
    _write_atomic(
        out / "summary.json", json.dumps(_summary(data, packed, top_k), indent=2, allow_nan=False) + "\n"
    )
    _write_atomic(out / "sentences.csv", _sentences_csv(data))
    return html_path
