"""The report's page: the shared views of `figures.build_views` plus the report's own pickers, fed from
the packed data in the browser.

`build_document` packs the data (`report_packing`) and adds the report's controls above the shared
views: a layer picker and a head picker (every packed (layer, head) matrix), the sentence picker (best
anchor first), the tag filter, the tag correction picker with its download button, and the token view's
head picker. `report_files.write_report` turns the document into ``report.html``. Bokeh is imported
here, on first use.
"""

from __future__ import annotations

import numpy as np

from stream_widgets.views import corrections as corrections_io
from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import select_matrix
from stream_widgets.views.report_packing import pack_matrices, pack_tokens
from stream_widgets.views.sources import DIMMED_ALPHA, LINKS_PER_SENTENCE, browser_json

__all__ = ["build_document"]

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


def build_document(
    data: ExploreData, max_size: int, max_matrix_bytes: int, max_token_bytes: int, backend: str
):
    """The report's Bokeh document and what went into it."""
    from bokeh.models import Button, ColumnDataSource, CustomJS, Div, MultiChoice, Select

    from stream_widgets.views.figures import HALF_WIDTH, attach, build_views

    packed = pack_matrices(data, max_size, max_matrix_bytes)
    tokens_packed = pack_tokens(data, max_token_bytes)
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
