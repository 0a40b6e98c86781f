"""The Bokeh views shared by the notebook explorer and the standalone report.

`build_views` makes one Bokeh layout with five linked parts: the trace text coloured by function tag,
the sentence x sentence heatmap, anchor-score bars, a per-tag summary (table and tag x tag attention)
and an info panel for the selected sentence; a sixth, the needle route view (`widgets.routes`), when
the data carries a route. Tapping a route edge selects the sentence holding the token it reads. All selection state lives in one `ColumnDataSource`
(`Views.sentences`, one row per sentence): its `selected.indices` is the selected sentence, its
`alpha` columns are the tag filter. The explorer drives the views from Python, the report from
browser-side `CustomJS`; both only swap one pooled `[n, n]` matrix at a time.

Bokeh is imported here; importing `stream_widgets` does not import this module.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    Div,
    HoverTool,
    LinearColorMapper,
    Range1d,
    TapTool,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import transform

from stream_widgets.widgets.data import TAG_COLORS, ExploreData
from stream_widgets.widgets.matrices import color_high, downsample, tag_attention, tag_table, top_links

__all__ = [
    "DIMMED_ALPHA",
    "MAX_HEATMAP_SIZE",
    "SELECTED_COLOR",
    "Views",
    "build_views",
    "heat_data",
    "info_html",
    "span_style",
    "tag_heat_values",
    "text_html",
    "text_pieces",
]

#: Largest heatmap side sent to the browser; longer traces are mean-pooled to this many bins.
MAX_HEATMAP_SIZE = 300
#: Opacity of sentences whose tag the tag filter hides.
DIMMED_ALPHA = 0.2
#: Outline colour of the selected sentence in every view.
SELECTED_COLOR = "#d62728"


# Keeps the selected sentence in sight inside the scrolling text view, wherever the selection came
# from (runs in the browser, for the notebook and the report alike). The Div renders on the next tick.
_JS_SCROLL_TO_SELECTED = """
setTimeout(() => {
  if (!(window.Bokeh && Bokeh.index)) return;
  const view = Bokeh.index.find_one(cb_obj);
  const root = view && (view.shadow_el || view.el.shadowRoot || view.el);
  const el = root && root.querySelector('.sw-selected');
  if (el) el.scrollIntoView({block: 'nearest'});
}, 0);
"""


@dataclass
class Views:
    """The Bokeh models of one explorer or report; the parts a controller updates."""

    sentences: ColumnDataSource
    heat: ColumnDataSource
    highlight: ColumnDataSource
    tag_heat: ColumnDataSource
    heat_mapper: LinearColorMapper
    tag_mapper: LinearColorMapper
    text_div: Div
    info_div: Div
    summary_div: Div
    title_div: Div
    heat_figure: figure
    bars_figure: figure
    tag_figure: figure
    layout: object
    route_figure: figure | None = None
    route_edges: ColumnDataSource | None = None


# ---------------------------------------------------------------------------- html pieces


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


def span_style(color: str, selected: bool, dimmed: bool) -> str:
    """Inline CSS of one sentence in the text view (mirrored by the report's JavaScript)."""
    style = f"background:{color}44;border-radius:3px;padding:0 1px;cursor:pointer;"
    if selected:
        style += f"outline:2px solid {SELECTED_COLOR};background:{color}77;font-weight:600;"
    if dimmed:
        style += f"opacity:{DIMMED_ALPHA};"
    return style


def _click_handler(source_id: str, i: int) -> str:
    # Inline handler: Div content cannot carry Bokeh callbacks, so a click finds the shared source in
    # whichever BokehJS document holds it and selects the sentence there; the source's own callbacks
    # (Python through jupyter_bokeh, or CustomJS in the report) do the rest.
    return (
        "if(window.Bokeh){for(const d of Bokeh.documents){const m=d.get_model_by_id("
        f"'{source_id}');if(m){{m.selected.indices=[{i}];}}}}}}"
    )


def text_html(data: ExploreData, source_id: str, selected: int | None, hidden_tags: set[str]) -> str:
    """The text view: every sentence a `<span>` coloured by its tag, the selected one outlined."""
    gaps, bodies, tail = text_pieces(data)
    parts = []
    for i, (gap, body) in enumerate(zip(gaps, bodies, strict=True)):
        tag = data.tags[i]
        style = span_style(TAG_COLORS[tag], i == selected, tag in hidden_tags)
        css_class = "sw-sentence sw-selected" if i == selected else "sw-sentence"
        parts.append(
            f'{gap}<span class="{css_class}" data-sw-index="{i}" title="#{i} {tag}" style="{style}" '
            f'onclick="{_click_handler(source_id, i)}">{body}</span>'
        )
    return f'<div class="sw-text" style="white-space:pre-wrap;line-height:1.5">{"".join(parts)}{tail}</div>'


def _sentence_link(data: ExploreData, j: int, weight: float) -> str:
    text = data.sentences[j]
    short = text if len(text) <= 90 else text[:87] + "..."
    color = TAG_COLORS[data.tags[j]]
    return (
        f'<li><b style="color:{color}">#{j}</b> ({weight:.3g}) {html.escape(short)} '
        f"<i>{data.tags[j]}</i></li>"
    )


def info_html(data: ExploreData, matrix: np.ndarray, selected: int | None, label: str) -> str:
    """The info panel: the selected sentence, its tag and scores, and its strongest links in `matrix`."""
    if selected is None:
        return "<div class='sw-info'><i>Click a bar, a heatmap cell or a sentence to select it.</i></div>"
    i = selected
    attends_to, attended_by = top_links(matrix, i)
    to_items = "".join(_sentence_link(data, j, float(matrix[i, j])) for j in attends_to) or "<li>none</li>"
    by_items = "".join(_sentence_link(data, r, float(matrix[r, i])) for r in attended_by) or "<li>none</li>"
    tag = data.tags[i]
    return (
        f"<div class='sw-info' data-sw-index='{i}'>"
        f"<b>Sentence #{i}</b> <span style='background:{TAG_COLORS[tag]}44;padding:0 4px'>{tag}</span><br>"
        f"anchor score {data.anchor_scores[i]:.4g}, vertical score {data.vertical_scores[i]:.4g}"
        f"<blockquote style='margin:4px 8px'>{html.escape(data.sentences[i])}</blockquote>"
        f"<b>Attends to most</b> ({html.escape(label)})<ul style='margin:2px'>{to_items}</ul>"
        f"<b>Attended to most by</b><ul style='margin:2px'>{by_items}</ul></div>"
    )


def _summary_html(data: ExploreData) -> str:
    rows = "".join(
        f"<tr><td><span style='background:{TAG_COLORS[r['tag']]};display:inline-block;width:10px;"
        f"height:10px'></span> {r['tag']}</td><td align='right'>{r['count']}</td>"
        f"<td align='right'>{r['mean_anchor_score']:.4g}</td><td align='right'>{r['max_anchor_score']:.4g}</td></tr>"
        for r in tag_table(data)
    )
    return (
        "<table class='sw-summary' style='border-collapse:collapse;font-size:12px'>"
        "<tr><th align='left'>function tag</th><th>count</th><th>mean anchor</th><th>max anchor</th></tr>"
        f"{rows}</table>"
    )


def _title_html(data: ExploreData) -> str:
    meta = data.meta
    facts = [f"{data.n_sentences} sentences", f"{data.n_layers} layers x {data.n_heads} heads"]
    if "model" in meta:
        facts.insert(0, f"model {html.escape(str(meta['model']))}")
    if "sparsity" in meta:
        facts.append(f"sparsity {float(meta['sparsity']):.1%}")
    facts.append(f"anchor score: {html.escape(str(meta.get('score_variant', 'unspecified variant')))}")
    if meta.get("synthetic"):
        facts.append("<b>synthetic data</b>")
    title = html.escape(str(meta.get("title", "Thought anchors and function tags")))
    return f"<h3 style='margin:0'>{title}</h3><div style='color:#555'>{' | '.join(facts)}</div>"


# ---------------------------------------------------------------------------- data for glyphs


def heat_data(matrix: np.ndarray, max_size: int = MAX_HEATMAP_SIZE) -> dict:
    """Image-glyph columns for one `[S, S]` matrix, pooled to at most `max_size` bins per axis.

    The image covers data coordinates `0..S` on both axes whatever the pooling, so a tap at `(x, y)`
    is sentence `floor(x)` (attended) and `floor(y)` (attending). Cells above the diagonal are NaN
    (drawn transparent).
    """
    size = matrix.shape[0]
    pooled = downsample(matrix, max_size).copy()
    pooled[np.triu_indices(pooled.shape[0], k=1)] = np.nan
    return {"image": [pooled], "x": [0.0], "y": [0.0], "dw": [float(size)], "dh": [float(size)]}


def highlight_data(size: int, selected: int | None) -> dict:
    """Rect columns outlining the selected sentence's row and column in the heatmap."""
    if selected is None:
        return {"x": [], "y": [], "w": [], "h": []}
    centre = selected + 0.5
    return {
        "x": [centre, size / 2],
        "y": [size / 2, centre],
        "w": [1.0, float(size)],
        "h": [float(size), 1.0],
    }


def tag_heat_values(data: ExploreData, matrix: np.ndarray) -> list[float]:
    """Flattened `[T, T]` tag x tag attention for the tags present (row-major: from, to)."""
    values = tag_attention(matrix, data.tags, data.tags_present())
    return [float(v) for v in values.ravel()]


# ---------------------------------------------------------------------------- figures


def _sentence_source(data: ExploreData) -> ColumnDataSource:
    short = [s if len(s) <= 120 else s[:117] + "..." for s in data.sentences]
    return ColumnDataSource(
        {
            "index": list(range(data.n_sentences)),
            "sentence": data.sentences,
            "short": short,
            "tag": data.tags,
            "color": [TAG_COLORS[t] for t in data.tags],
            "anchor": data.anchor_scores.tolist(),
            "vertical": data.vertical_scores.tolist(),
            "alpha": [1.0] * data.n_sentences,
            "alpha_dim": [0.45] * data.n_sentences,
        },
        name="sw_sentences",
    )


def _heat_figure(data: ExploreData, heat: ColumnDataSource, highlight: ColumnDataSource, mapper) -> figure:
    size = data.n_sentences
    fig = figure(
        name="sw_heatmap",
        width=440,
        height=420,
        x_range=Range1d(0, size, bounds=(0, size)),
        y_range=Range1d(size, 0, bounds=(0, size)),
        tools="pan,wheel_zoom,box_zoom,reset",
        title="sentence attention",
        x_axis_label="attended sentence j",
        y_axis_label="attending sentence i",
    )
    image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper, source=heat)
    fig.add_tools(
        HoverTool(renderers=[image], tooltips=[("i", "$y{0}"), ("j", "$x{0}"), ("attention", "@image")])
    )
    fig.rect(
        x="x",
        y="y",
        width="w",
        height="h",
        source=highlight,
        fill_alpha=0.0,
        line_color=SELECTED_COLOR,
        line_width=2,
    )
    fig.toolbar.logo = None
    fig.grid.visible = False
    return fig


def _bars_figure(data: ExploreData, sentences: ColumnDataSource) -> figure:
    variant = data.meta.get("score_variant", "unspecified variant")
    fig = figure(
        name="sw_anchor_bars",
        width=900,
        height=220,
        x_range=Range1d(-1, data.n_sentences),
        tools="xpan,xwheel_zoom,reset",
        title=f"anchor score per sentence ({variant}); click a bar to select",
        x_axis_label="sentence",
    )
    bars = fig.vbar(
        x="index",
        top="anchor",
        width=0.85,
        source=sentences,
        fill_color="color",
        line_color=None,
        fill_alpha="alpha",
        name="sw_bars",
    )
    bars.selection_glyph = bars.glyph.clone(line_color=SELECTED_COLOR, line_width=2, fill_alpha="alpha")
    bars.nonselection_glyph = bars.glyph.clone(fill_alpha="alpha_dim")
    fig.add_tools(TapTool(renderers=[bars]))
    fig.add_tools(
        HoverTool(
            renderers=[bars],
            tooltips=[("#", "@index"), ("tag", "@tag"), ("anchor", "@anchor"), ("", "@short")],
        )
    )
    fig.toolbar.logo = None
    fig.xgrid.visible = False
    return fig


def _tag_figure(data: ExploreData, tag_heat: ColumnDataSource, mapper) -> figure:
    tags = data.tags_present()
    fig = figure(
        name="sw_tag_heatmap",
        width=400,
        height=340,
        x_range=tags,
        y_range=list(reversed(tags)),
        tools="hover",
        tooltips=[("from", "@from_tag"), ("to", "@to_tag"), ("mean attention", "@value")],
        title="tag to tag attention (mean)",
        x_axis_label="attended (earlier) tag",
        y_axis_label="attending tag",
    )
    fig.rect(
        x="to_tag",
        y="from_tag",
        width=1,
        height=1,
        source=tag_heat,
        line_color=None,
        fill_color=transform("value", mapper),
    )
    fig.xaxis.major_label_orientation = 0.9
    fig.toolbar.logo = None
    fig.grid.visible = False
    return fig


def route_edge_sentences(data: ExploreData, keys: list[int], queries: list[int]) -> list[int]:
    """Per route edge, the sentence a tap on it selects: the one holding its key token (the token read),
    else the one holding its query token; -1 for neither (or no `data.token_spans`)."""
    out = []
    for key, query in zip(keys, queries, strict=True):
        sentence = data.sentence_of(key)
        if sentence is None:
            sentence = data.sentence_of(query)
        out.append(-1 if sentence is None else sentence)
    return out


# A tapped route edge selects its sentence through the shared source, like a click in the text view:
# the source's own callbacks (Python in the explorer, CustomJS in the report) do the rest.
_JS_ROUTE_TAP = """
const k = edges.selected.indices;
if (!k.length) return;
const j = edges.data.sentence[k[0]];
if (j >= 0 && !(sentences.selected.indices.length === 1 && sentences.selected.indices[0] === j)) {
  sentences.selected.indices = [j];
}
"""


def _route_view(data: ExploreData, sentences: ColumnDataSource) -> tuple[figure, ColumnDataSource]:
    """The needle route figure of `data.route`, its edges linked to the sentences when token spans are known."""
    from stream_widgets.widgets.routes import route_figure

    fig = route_figure(data.route, width=900, height=360)
    edges = fig.select_one({"name": "sw_route_edges"})
    segments = fig.select_one({"name": "sw_route_segments"})
    edges.data["sentence"] = route_edge_sentences(data, list(edges.data["key"]), list(edges.data["query"]))
    if data.token_spans is None:
        fig.title.text += " (no token spans: not linked to the sentences)"
    else:
        fig.title.text += "; tap an edge to select the sentence it reads"
        fig.add_tools(TapTool(renderers=[segments]))
        hover = next(t for t in fig.tools if isinstance(t, HoverTool))
        hover.tooltips = [*hover.tooltips, ("sentence", "#@sentence")]
        edges.selected.js_on_change(
            "indices", CustomJS(args=dict(edges=edges, sentences=sentences), code=_JS_ROUTE_TAP)
        )
    fig.toolbar.logo = None
    return fig, edges


def build_views(data: ExploreData, matrix: np.ndarray, label: str, max_size: int = MAX_HEATMAP_SIZE) -> Views:
    """Build the linked Bokeh views, showing `matrix` and nothing selected.

    Args:
        data: The trace data.
        matrix: `[S, S]` matrix shown first (see `select_matrix`).
        label: Its display name.
        max_size: Largest heatmap side in bins.

    Returns:
        The `Views`; `Views.layout` is the root to embed.
    """
    sentences = _sentence_source(data)
    heat = ColumnDataSource(heat_data(matrix, max_size), name="sw_heat")
    highlight = ColumnDataSource(highlight_data(data.n_sentences, None), name="sw_highlight")
    tags = data.tags_present()
    tag_heat = ColumnDataSource(
        {
            "from_tag": [a for a in tags for _ in tags],
            "to_tag": [b for _ in tags for b in tags],
            "value": tag_heat_values(data, matrix),
        },
        name="sw_tag_heat",
    )
    heat_mapper = LinearColorMapper(
        palette=Viridis256, low=0.0, high=color_high(matrix), nan_color=(0, 0, 0, 0)
    )
    finite = [v for v in tag_heat.data["value"] if np.isfinite(v)]
    tag_mapper = LinearColorMapper(
        palette=Viridis256, low=0.0, high=max(finite, default=1.0) or 1.0, nan_color="#eeeeee"
    )
    heat_figure = _heat_figure(data, heat, highlight, heat_mapper)
    heat_figure.title.text = f"sentence attention: {label}"
    bars_figure = _bars_figure(data, sentences)
    tag_figure = _tag_figure(data, tag_heat, tag_mapper)
    # disable_math: trace text is full of "$"; BokehJS would otherwise fetch MathJax from a CDN.
    text_div = Div(
        text=text_html(data, sentences.id, None, set()),
        name="sw_text",
        width=460,
        height=420,
        styles={"overflow-y": "auto", "font-size": "13px", "border": "1px solid #ddd", "padding": "4px"},
        disable_math=True,
    )
    text_div.js_on_change("text", CustomJS(code=_JS_SCROLL_TO_SELECTED))
    info_div = Div(
        text=info_html(data, matrix, None, label),
        name="sw_info",
        width=480,
        styles={"font-size": "12px"},
        disable_math=True,
    )
    summary_div = Div(text=_summary_html(data), name="sw_summary", width=340, disable_math=True)
    title_div = Div(text=_title_html(data), name="sw_title", width=900, disable_math=True)
    route_fig, route_edges = _route_view(data, sentences) if data.route is not None else (None, None)
    layout = column(
        title_div,
        row(text_div, heat_figure),
        bars_figure,
        row(summary_div, tag_figure, info_div),
        *([route_fig] if route_fig is not None else []),
        name="sw_layout",
    )
    return Views(
        sentences=sentences,
        heat=heat,
        highlight=highlight,
        tag_heat=tag_heat,
        heat_mapper=heat_mapper,
        tag_mapper=tag_mapper,
        text_div=text_div,
        info_div=info_div,
        summary_div=summary_div,
        title_div=title_div,
        heat_figure=heat_figure,
        bars_figure=bars_figure,
        tag_figure=tag_figure,
        layout=layout,
        route_figure=route_fig,
        route_edges=route_edges,
    )
