"""The one browser-side renderer of the views, shared by the notebook explorer and the report.

Every HTML part (the text view, the info panel, the per-tag summary, the evidence table, the notes and
titles) and every highlight is drawn by the JavaScript `RENDERER_JS`, from the views' sources, on the
events of `ENTRIES`: the document is ready (the first render), the selection changes, or a source that
Python (the explorer, through jupyter_bokeh) or the report's own pickers feed changes. `callback` makes
the `CustomJS` of one event; every one gets the same arguments (`figures.build_views` assembles them).
"""

from __future__ import annotations

from bokeh.models import CustomJS

__all__ = ["ENTRIES", "RENDERER_JS", "callback"]

# The one renderer of every HTML part, shared by the explorer and the report. Every CustomJS of the views
# gets the same `args` (the sources, the Divs, constants) and this prelude, then one entry line.
RENDERER_JS = r"""
const consts = JSON.parse(consts_json);
const S = sentences.data.index.length;
function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
function sel() { const s = sentences.selected.indices; return s.length ? s[0] : null; }
function finite(v) { return v !== null && v !== undefined && Number.isFinite(Number(v)); }
function fmt(v, digits) { return finite(v) ? Number(v).toPrecision(digits || 4) : 'n/a'; }
function hex2(a) { return Math.max(0, Math.min(255, Math.round(a * 255))).toString(16).padStart(2, '0'); }
function notScored() {
  return `not scored (fewer than ${consts.min_later} later sentences beyond the ${consts.proximity_ignore} nearest)`;
}
function confidenceText(i) {
  const d = sentences.data;
  if (d.corrected[i]) return `corrected by hand (the tagger said ${d.tagger_tag[i]})`;
  return finite(d.confidence[i]) ? `tagger probability ${Number(d.confidence[i]).toFixed(2)}` : 'tagger probability not known';
}
function badge(i) {
  const d = sentences.data;
  return `<span class='sw-tag' style='background:${d.color[i]}${hex2(0.15 + 0.45 * d.fade[i])};padding:0 4px;border-radius:3px'>${esc(d.tag[i])}</span>`;
}
function register() {
  window.__sw_sources = window.__sw_sources || {};
  window.__sw_sources[sentences.id] = sentences;
}
function clickCode(i) {
  // Div content cannot carry Bokeh callbacks: a click selects through the registered source.
  return `window.__sw_sources['${sentences.id}'].selected.indices=[${i}]`;
}
function renderText() {
  register();
  const d = sentences.data, s = sel(), parts = [];
  for (let i = 0; i < S; i++) {
    let style = `background:${d.color[i]}${hex2(0.1 + 0.4 * d.fade[i])};border-radius:3px;padding:0 1px;cursor:pointer;`;
    if (i === s) style += `outline:2px solid ${consts.selected_color};font-weight:600;`;
    if (!d.shown[i]) style += `opacity:${consts.dimmed_alpha};`;
    if (d.corrected[i]) style += 'text-decoration:underline dotted;';
    const cls = i === s ? 'sw-sentence sw-selected' : 'sw-sentence';
    const title = `#${i} ${d.tag[i]}: ${confidenceText(i)}`;
    parts.push(gaps[i] + `<span class="${cls}" data-sw-index="${i}" data-sw-tag="${esc(d.tag[i])}" ` +
      `title="${esc(title)}" style="${style}" onclick="${clickCode(i)}">${bodies[i]}</span>`);
  }
  text_div.text = `<div class="sw-text" style="white-space:pre-wrap;line-height:1.5">${parts.join('')}${tail}</div>`;
  setTimeout(() => {
    // keep the selected sentence in sight inside the scrolling text view
    if (!(window.Bokeh && Bokeh.index && Bokeh.index.find_one)) return;
    const view = Bokeh.index.find_one(text_div);
    const root = view && (view.shadow_el || view.el.shadowRoot || view.el);
    const el = root && root.querySelector('.sw-selected');
    if (el) el.scrollIntoView({block: 'nearest'});
  }, 0);
}
function linkItems(list, weights) {
  const d = sentences.data, items = [];
  for (let k = 0; k < list.length; k++) {
    const j = list[k];
    if (j < 0) continue;
    items.push(`<li><a class='sw-link' data-sw-index='${j}' style='color:${d.color[j]};cursor:pointer' onclick="${clickCode(j)}"><b>#${j}</b></a> ` +
      `(${fmt(weights[k], 3)}) ${esc(d.short[j].length > 90 ? d.short[j].slice(0, 87) + '...' : d.short[j])} <i>${esc(d.tag[j])}</i></li>`);
  }
  return items.length ? items.join('') : '<li>none</li>';
}
function renderInfo() {
  const i = sel();
  if (i === null) {
    info_div.text = `<div class='sw-info'><i>${consts.help}</i></div>`;
    return;
  }
  const d = sentences.data, L = links.data, k = consts.links_per_sentence, st = state.data;
  const part = (a) => Array.from(a.slice(i * k, i * k + k));
  const anchor = finite(d.anchor[i]) ? fmt(d.anchor[i]) : notScored();
  let scores = `<tr><td>anchor score (${esc(consts.variant)}, receiver heads)</td><td>${anchor}</td></tr>`;
  if (st.label[0] !== consts.receiver_label) {
    scores += `<tr><td>bar value (${esc(st.label[0])})</td><td>${finite(d.bar[i]) ? fmt(d.bar[i]) : 'not scored'}</td></tr>`;
  }
  if (d.top_heads[i]) scores += `<tr><td>its strongest receiver heads</td><td>${esc(d.top_heads[i])}</td></tr>`;
  for (let e = 0; e < consts.evidence.length; e++) {
    scores += `<tr><td>${esc(consts.evidence[e])}</td><td>${fmt(d['ev_' + e][i])}</td></tr>`;
  }
  info_div.text = `<div class='sw-info' data-sw-index='${i}'><b>Sentence #${i}</b> ${badge(i)} ` +
    `<span style='color:#555'>${esc(confidenceText(i))}</span>` +
    `<table class='sw-scores' style='font-size:12px'>${scores}</table>` +
    `<blockquote style='margin:4px 8px'>${esc(d.sentence[i])}</blockquote>` +
    `<b>Attends to most</b> (${esc(st.label[0])})<ul style='margin:2px'>${linkItems(part(L.to), part(L.to_w))}</ul>` +
    `<b>Attended to most by</b><ul style='margin:2px'>${linkItems(part(L.by), part(L.by_w))}</ul></div>`;
}
function renderHighlight() {
  const i = sel();
  for (const h of highlights) {
    h.data = i === null ? {x: [], y: [], w: [], h: []} : {x: [i + 0.5, S / 2], y: [S / 2, i + 0.5], w: [1, S], h: [S, 1]};
  }
}
function renderState() {
  const st = state.data;
  heat_mapper.high = st.high[0];
  tag_mapper.high = st.tag_high[0];
  heat_figure.title.text = 'sentence attention: ' + st.label[0];
  bars_figure.title.text = st.bars_title[0];
  const per = S / st.bins[0];
  const pooled = st.bins[0] < S ? ` Pooled to ${st.bins[0]} x ${st.bins[0]} pixels: each is the mean over about ${per.toFixed(1)} x ${per.toFixed(1)} sentence pairs.` : '';
  heat_note.text = `<div class='sw-note' style='font-size:11px;color:#444'>Colour: mean token attention probability from sentence i's tokens to sentence j's ` +
    `(pruned entries count as 0), linear from 0 to ${fmt(st.high[0], 3)} (the ${esc(st.rule[0])}). ` +
    `<span class='sw-clipped'>${st.clipped[0]} of ${st.cells[0]} cells lie above that and are drawn <b style='color:${consts.over_color}'>magenta</b>` +
    ` (mostly the diagonal: a sentence attending to itself).</span>${pooled} ` +
    `Hover a cell for both sentences; <b>click a cell to select its column j</b> (the attended sentence).` +
    (st.note[0] ? ` ${esc(st.note[0])}` : '') + `</div>`;
}
function scoredCounts() {
  const d = sentences.data;
  let n = 0;
  for (let i = 0; i < S; i++) if (finite(d.anchor[i])) n++;
  return n;
}
function renderSummary() {
  const d = sentences.data, groups = new Map();
  for (const t of consts.vocabulary) groups.set(t, []);
  for (let i = 0; i < S; i++) { if (!groups.has(d.tag[i])) groups.set(d.tag[i], []); groups.get(d.tag[i]).push(d.anchor[i]); }
  let rows = '';
  for (const [tag, values] of groups) {
    if (!values.length) continue;
    const f = values.filter(finite).map(Number);
    const mean = f.length ? fmt(f.reduce((a, b) => a + b, 0) / f.length) : 'n/a';
    const max = f.length ? fmt(Math.max(...f)) : 'n/a';
    const color = consts.tag_colors[tag] || consts.fallback_color;
    rows += `<tr data-sw-tag='${esc(tag)}'><td><span style='background:${color};display:inline-block;width:10px;height:10px'></span> ${esc(tag)}</td>` +
      `<td align='right'>${values.length}</td><td align='right' class='sw-scored'>${f.length} of ${values.length}</td><td align='right'>${mean}</td><td align='right'>${max}</td></tr>`;
  }
  const n = scoredCounts();
  const why = n < S ? ` The last ${S - n} cannot be scored: ${notScored()}; they are left out of the means, not counted as 0.` : '';
  summary_div.text = `<div class='sw-summary-note' style='font-size:12px'><b>${n} scored of ${S} sentences</b>.${why}${consts.heads_note ? ' ' + esc(consts.heads_note) : ''}</div>` +
    `<table class='sw-summary' style='border-collapse:collapse;font-size:12px'><tr><th align='left'>function tag</th><th>sentences</th><th>scored</th>` +
    `<th>mean anchor</th><th>max anchor</th></tr>${rows}</table>`;
}
function renderEvidence() {
  if (!evidence_div) return;
  const d = sentences.data, s = sel();
  const order = [];
  for (let i = 0; i < S; i++) if (finite(d.anchor[i])) order.push(i);
  order.sort((a, b) => (d.anchor[b] - d.anchor[a]) || (a - b));
  if (!order.length) {
    evidence_div.text = `<div class='sw-evidence'><i>No sentence has an anchor score, so there are no anchors to list: ${notScored()} holds for every sentence of this trace.</i></div>`;
    return;
  }
  let head = `<tr><th>#</th><th>tag</th><th>anchor score</th><th>strongest receiver heads</th>`;
  for (const name of consts.evidence) head += `<th>${esc(name)}</th>`;
  let rows = '';
  for (const i of order.slice(0, consts.evidence_rows)) {
    let cells = `<td><a style='cursor:pointer' onclick="${clickCode(i)}">#${i}</a></td><td>${badge(i)}</td><td>${fmt(d.anchor[i])}</td><td>${esc(d.top_heads[i])}</td>`;
    for (let e = 0; e < consts.evidence.length; e++) cells += `<td>${fmt(d['ev_' + e][i])}</td>`;
    rows += `<tr class='sw-evidence-row' data-sw-index='${i}'${i === s ? " style='outline:2px solid " + consts.selected_color + "'" : ''}>${cells}</tr>`;
  }
  evidence_div.text = `<div class='sw-evidence' style='font-size:12px'><b>Top anchors and the evidence beside them</b>` +
    `<table style='border-collapse:collapse'>${head}</tr>${rows}</table></div>`;
}
function renderScatter() {
  if (!scatter) return;
  const d = sentences.data, name = evidence_select.value, e = consts.evidence.indexOf(name);
  const cols = {x: [], y: [], index: [], color: [], short: []};
  if (e >= 0) {
    const y = d['ev_' + e];
    for (let i = 0; i < S; i++) {
      if (!finite(d.anchor[i]) || !finite(y[i])) continue;
      cols.x.push(d.anchor[i]); cols.y.push(y[i]); cols.index.push(i); cols.color.push(d.color[i]); cols.short.push(d.tip[i]);
    }
  }
  scatter.data = cols;
  scatter_yaxis.axis_label = name;
  const r = consts.spearman[name];
  scatter_note.text = `<div class='sw-spearman' style='font-size:12px'>` + (r && r[0] !== null ?
    `Spearman rho = <b>${Number(r[0]).toFixed(3)}</b> over ${r[1]} sentences with both scores (computed in Python).` :
    `Spearman rho: not defined (${r ? r[1] : 0} sentences with both scores; needs 3 and varying values).`) + `</div>`;
}
function renderUnscored() {
  const d = sentences.data, cols = {x: [], y: [], tip: []};
  for (let i = 0; i < S; i++) if (!finite(d.bar[i])) { cols.x.push(i); cols.y.push(0); cols.tip.push(d.tip[i]); }
  unscored.data = cols;
}
function renderTokens() {
  if (!token_state) return;
  const ts = token_state.data;
  token_figure.title.text = ts.title[0];
}
function selectAt(x) {
  const j = Math.floor(x);
  if (j >= 0 && j < S) sentences.selected.indices = [j];
}
function renderAll() { renderText(); renderInfo(); renderHighlight(); renderState(); renderSummary(); renderEvidence(); renderScatter(); renderUnscored(); renderTokens(); }
"""

ENTRIES = {
    "ready": "renderAll();",
    "select": "renderText(); renderInfo(); renderHighlight(); renderEvidence();",
    "data": "renderText(); renderInfo(); renderSummary(); renderEvidence(); renderScatter(); renderUnscored();",
    "links": "renderInfo();",
    "state": "renderState(); renderInfo();",
    "tokens": "renderTokens();",
    "evidence": "renderScatter();",
    "tap": "selectAt(cb_obj.x);",
    "scatter_tap": "const k = scatter.selected.indices; if (k.length) { sentences.selected.indices = [scatter.data.index[k[0]]]; }",
}


def callback(args: dict, entry: str) -> CustomJS:
    """The `CustomJS` that runs the renderer's `entry` (a key of `ENTRIES`) with the views' `args`."""
    return CustomJS(args=args, code=RENDERER_JS + ENTRIES[entry])
