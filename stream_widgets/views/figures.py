"""The Bokeh views shared by the notebook explorer and the standalone report: one set of models, one
set of browser-side callbacks.

`build_views` makes the linked parts: the trace text coloured by function tag (faded by the tagger's
confidence), the sentence x sentence heatmap with its colour bar, the anchor-score bars, a per-tag
summary (table and tag x tag attention), the info panel of the selected sentence, and, when the data has
them, the evidence table and scatter, the suppression matrix, the token view and the needle route.

Python only feeds data (the columns of `views.sources`): every part that is HTML (text, info panel,
summary, notes, titles) is rendered in the browser by the one renderer of `views.renderer`, on these
events:

- the document is ready (first render, notebook and report alike; `attach`);
- `sentences.selected.indices` changes (a tapped bar, cell, scatter point or route edge, a clicked
  sentence, or Python's `Explorer.select`);
- `sentences.data`, `links.data`, `state.data`, `token_state.data` change (a layer/head pick, a tag
  filter, a tag correction: from Python in the explorer, through `jupyter_bokeh`; from the report's own
  pickers in the report).

The explorer feeds the sources from Python (`Explorer`), the report from data packed into the page
(`report_files`). Bokeh is imported here; importing `stream_widgets` does not import this module.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    Div,
    HoverTool,
    LinearColorMapper,
    Range1d,
    SaveTool,
    Select,
    TapTool,
)
from bokeh.palettes import Magma256, Viridis256
from bokeh.plotting import figure
from bokeh.transform import transform

from stream_widgets.views import renderer
from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import matrix_label, select_scores, spearman
from stream_widgets.views.sources import (
    DIMMED_ALPHA,
    LINKS_PER_SENTENCE,
    MAX_HEATMAP_SIZE,
    MAX_TOKEN_ROWS,
    bars_title,
    browser_json,
    heat_data,
    links_data,
    sentence_columns,
    state_data,
    tag_heat_data,
    text_pieces,
    token_data,
)

__all__ = [
    "FULL_WIDTH",
    "HALF_WIDTH",
    "OVER_SCALE_COLOR",
    "SELECTED_COLOR",
    "Views",
    "attach",
    "build_views",
]

#: Outline colour of the selected sentence in every view.
SELECTED_COLOR = "#d62728"
#: Colour of heatmap cells above the top of the colour scale (said on the page, never silent).
OVER_SCALE_COLOR = "#ff00ff"
#: Colour of tag x tag cells with no sentence pair (explained on the page).
NO_PAIR_COLOR = "#dddddd"
#: Width of a half-width part; two sit side by side from about 900 px, one column below.
HALF_WIDTH = 430
#: Width of a full-width part (fits an 848 px notebook output area).
FULL_WIDTH = 820
#: Top anchors listed in the evidence table.
EVIDENCE_TABLE_ROWS = 8


@dataclass
class Views:
    """The Bokeh models of one explorer or report: the sources a controller feeds, the parts it lays out."""

    sentences: ColumnDataSource
    heat: ColumnDataSource
    links: ColumnDataSource
    state: ColumnDataSource
    tag_heat: ColumnDataSource
    heat_mapper: LinearColorMapper
    tag_mapper: LinearColorMapper
    text_div: Div
    info_div: Div
    summary_div: Div
    title_div: Div
    heat_figure: Any
    bars_figure: Any
    tag_figure: Any
    layout: Any
    args: dict = field(default_factory=dict)
    ready: CustomJS | None = None
    evidence_select: Select | None = None
    suppression_figure: Any = None
    tokens: ColumnDataSource | None = None
    token_state: ColumnDataSource | None = None
    token_figure: Any = None
    route_figure: Any = None
    route_edges: ColumnDataSource | None = None


# ---------------------------------------------------------------------------- figures


def _index_hover(sentences: ColumnDataSource, axis: str) -> CustomJSHover:
    # floor, not round: the cell under the cursor at y = 40.8 is row 40 (a rounding formatter showed 41)
    return CustomJSHover(
        args=dict(sentences=sentences),
        code="const i = Math.floor(value); const d = sentences.data;"
        "return (i >= 0 && i < d.tip.length) ? '#' + i + ' ' + d.tip[i] : '';",
    )


def _heat_figure(
    name: str,
    title: str,
    size: int,
    image_source: ColumnDataSource,
    highlight: ColumnDataSource,
    mapper: LinearColorMapper,
    sentences: ColumnDataSource,
    unit: str,
    backend: str,
):
    fig = figure(
        name=name,
        width=HALF_WIDTH,
        height=HALF_WIDTH,
        x_range=Range1d(0, size, bounds=(0, size)),
        y_range=Range1d(size, 0, bounds=(0, size)),
        tools="pan,wheel_zoom,box_zoom,reset",
        title=title,
        x_axis_label="attended sentence j",
        y_axis_label="attending sentence i",
        output_backend=backend,
    )
    image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper, source=image_source)
    fig.add_tools(
        HoverTool(
            renderers=[image],
            tooltips=[
                ("i (attending)", "$y{custom}"),
                ("j (attended)", "$x{custom}"),
                ("value", "@image{0.0000}"),
            ],
            formatters={"$y": _index_hover(sentences, "y"), "$x": _index_hover(sentences, "x")},
        ),
        SaveTool(filename=name),
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
    fig.add_layout(ColorBar(color_mapper=mapper, title=unit, width=10, title_text_font_size="10px"), "right")
    fig.toolbar.logo = None
    fig.grid.visible = False
    return fig


def _bars_figure(data: ExploreData, sentences: ColumnDataSource, unscored: ColumnDataSource, backend: str):
    fig = figure(
        name="sw_anchor_bars",
        width=FULL_WIDTH,
        height=230,
        x_range=Range1d(-1, data.n_sentences),
        tools="xpan,xwheel_zoom,reset",
        title=bars_title(data, None, None),
        x_axis_label="sentence (click a bar to select it; faded colour = low tag confidence; x = not scored)",
        output_backend=backend,
    )
    bars = fig.vbar(
        x="index",
        top="bar",
        width=0.85,
        source=sentences,
        fill_color="color",
        line_color=None,
        fill_alpha="alpha",
        name="sw_bars",
    )
    bars.selection_glyph = bars.glyph.clone(line_color=SELECTED_COLOR, line_width=2, fill_alpha="alpha")
    bars.nonselection_glyph = bars.glyph.clone(fill_alpha="alpha_dim")
    marks = fig.scatter(
        x="x", y="y", source=unscored, marker="x", size=7, color="#888888", name="sw_unscored"
    )
    fig.add_tools(
        TapTool(renderers=[bars]),
        HoverTool(
            renderers=[bars],
            tooltips=[
                ("#", "@index"),
                ("tag", "@tag (tagger probability @confidence{0.00})"),
                ("score", "@bar{0.0000}"),
                ("", "@short"),
            ],
        ),
        HoverTool(
            renderers=[marks],
            tooltips=[("#", "@x"), ("", "not scored: too few later sentences"), ("", "@tip")],
        ),
        SaveTool(filename="sw_anchor_bars"),
    )
    fig.toolbar.logo = None
    fig.xgrid.visible = False
    return fig


def _tag_figure(data: ExploreData, tag_heat: ColumnDataSource, mapper: LinearColorMapper, backend: str):
    tags = data.tags_present()
    fig = figure(
        name="sw_tag_heatmap",
        width=HALF_WIDTH,
        height=360,
        x_range=tags,
        y_range=list(reversed(tags)),
        tools="hover",
        tooltips=[("from", "@from_tag"), ("to", "@to_tag"), ("mean attention", "@text")],
        title="tag to tag attention (mean)",
        x_axis_label="attended (earlier) tag",
        y_axis_label="attending tag",
        output_backend=backend,
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
    fig.add_layout(
        ColorBar(
            color_mapper=mapper,
            title="mean token attention probability",
            width=10,
            title_text_font_size="10px",
        ),
        "right",
    )
    fig.add_tools(SaveTool(filename="sw_tag_heatmap"))
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


_JS_ROUTE_TAP = """
const k = edges.selected.indices;
if (!k.length) return;
const j = edges.data.sentence[k[0]];
if (j >= 0 && !(sentences.selected.indices.length === 1 && sentences.selected.indices[0] === j)) {
  sentences.selected.indices = [j];
}
"""


def _route_view(data: ExploreData, sentences: ColumnDataSource, backend: str):
    """The needle route figure of `data.route`, its edges linked to the sentences when token spans are known."""
    from stream_widgets.views.routes import route_figure

    fig = route_figure(data.route, width=FULL_WIDTH, height=360)
    fig.output_backend = backend
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


def _token_figure(data: ExploreData, tokens: ColumnDataSource, token_state: ColumnDataSource, backend: str):
    view = data.token_view
    t = len(view.tokens)
    mapper = LinearColorMapper(palette=Magma256[::-1], low=0.0, high=1.0, nan_color=(0, 0, 0, 0))
    fig = figure(
        name="sw_token_heatmap",
        width=HALF_WIDTH,
        height=300,
        x_range=Range1d(0, t, bounds=(0, t)),
        tools="xpan,xwheel_zoom,reset",
        title="token attention: select a sentence",
        x_axis_label=f"key token position (the text's {t} tokens in {view.n_bins} bins)",
        y_axis_label="query tokens of the sentence",
        output_backend=backend,
    )
    fig.y_range.flipped = True
    image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper, source=tokens)
    edges = [int(e) for e in view.bin_edges]
    bin_text = view.bin_text()
    key_hover = CustomJSHover(
        args=dict(edges=edges, text=bin_text),
        code="let b = 0; while (b + 1 < edges.length - 1 && edges[b + 1] <= value) b++;"
        "return 'tokens ' + edges[b] + '-' + (edges[b + 1] - 1) + ': ' + text[b];",
    )
    row_hover = CustomJSHover(
        args=dict(state=token_state),
        code="const r = Math.floor(value); const rows = state.data.rows[0];"
        "return (r >= 0 && r < rows.length) ? JSON.stringify(rows[r]) : '';",
    )
    fig.add_tools(
        HoverTool(
            renderers=[image],
            tooltips=[
                ("query token", "$y{custom}"),
                ("keys", "$x{custom}"),
                ("attention mass", "@image{0.0000}"),
            ],
            formatters={"$x": key_hover, "$y": row_hover},
        ),
        SaveTool(filename="sw_token_heatmap"),
    )
    fig.add_layout(
        ColorBar(
            color_mapper=mapper,
            title="attention probability summed over the bin",
            width=10,
            title_text_font_size="10px",
        ),
        "right",
    )
    fig.toolbar.logo = None
    fig.grid.visible = False
    return fig, mapper


def _heads_note(data: ExploreData) -> str:
    if data.meta.get("receiver_heads_source") == "all heads":
        return (
            "Receiver heads could not be picked from this trace (kurtosis needs 4 or more scored sentences); "
            f"the anchor score is the mean over all {len(data.receiver_heads)} heads instead."
        )
    return ""


def _title_html(data: ExploreData) -> str:
    meta = data.meta
    facts = [f"{data.n_sentences} sentences", f"{data.n_layers} layers x {data.n_heads} heads"]
    if "model" in meta:
        facts.insert(0, f"model {html.escape(str(meta['model']))}")
    if "tokens" in meta:
        facts.insert(1, f"{int(meta['tokens'])} tokens")
    if "sparsity" in meta:
        facts.append(f"sparsity {float(meta['sparsity']):.1%}")
    facts.append(f"anchor score: {html.escape(str(meta.get('score_variant', 'unspecified variant')))}")
    if meta.get("synthetic"):
        facts.append("<b>synthetic data</b>")
    title = html.escape(str(meta.get("title", "Thought anchors and function tags")))
    return f"<h3 style='margin:0'>{title}</h3><div style='color:#555'>{' | '.join(facts)}</div>"


_HELP = (
    "Click a sentence, an anchor bar, a heatmap cell (it selects its column j: the attended sentence), "
    "a scatter point or a route edge: it is selected in every view."
)


def _half(*children):
    return column(*children, width=HALF_WIDTH)


def _wrap(*children, name: str | None = None):
    # CSS flex wrap: side by side from about 2 * HALF_WIDTH + margins (~900 px), one column below.
    return row(*children, styles={"flex-wrap": "wrap", "gap": "12px"}, **({"name": name} if name else {}))


def build_views(
    data: ExploreData,
    matrix: np.ndarray,
    layer: int | None = None,
    head: int | None = None,
    max_size: int = MAX_HEATMAP_SIZE,
    *,
    controls: list | None = None,
    state_note: str = "",
    output_backend: str = "canvas",
) -> Views:
    """Build the linked Bokeh views, showing `matrix` (that of `layer`, `head`) and nothing selected.

    Args:
        data: The trace data.
        matrix: `[S, S]` matrix shown first (see `matrices.select_matrix`).
        layer, head: Which matrix it is (None: the receiver-head average / the mean of the heads).
        max_size: Largest heatmap side in bins.
        controls: Bokeh widgets to place above the views (the report's pickers).
        state_note: A sentence added to the heatmap's note (e.g. the report's pooling to fit its budget).
        output_backend: ``"canvas"`` (the figures' save tool writes PNG) or ``"svg"`` (it writes SVG).

    Returns:
        The `Views`; `Views.layout` is the root to embed.
    """
    if output_backend not in ("canvas", "svg"):
        raise ValueError(
            f"output_backend must be 'canvas' (PNG export) or 'svg' (SVG export), got {output_backend!r}"
        )
    backend = output_backend
    size = data.n_sentences
    sentences = ColumnDataSource(
        sentence_columns(data, select_scores(data, layer, head)), name="sw_sentences"
    )
    heat = ColumnDataSource(heat_data(matrix, max_size), name="sw_heat")
    links = ColumnDataSource(links_data(matrix), name="sw_links")
    state = ColumnDataSource(state_data(data, matrix, layer, head, max_size, state_note), name="sw_state")
    highlight = ColumnDataSource({"x": [], "y": [], "w": [], "h": []}, name="sw_highlight")
    unscored = ColumnDataSource({"x": [], "y": [], "tip": []}, name="sw_unscored_marks")
    tag_heat = ColumnDataSource(tag_heat_data(data, matrix), name="sw_tag_heat")
    heat_mapper = LinearColorMapper(
        palette=Viridis256,
        low=0.0,
        high=state.data["high"][0],
        nan_color=(0, 0, 0, 0),
        high_color=OVER_SCALE_COLOR,
    )
    tag_mapper = LinearColorMapper(
        palette=Viridis256, low=0.0, high=state.data["tag_high"][0], nan_color=NO_PAIR_COLOR
    )
    heat_figure = _heat_figure(
        "sw_heatmap",
        "sentence attention",
        size,
        heat,
        highlight,
        heat_mapper,
        sentences,
        "mean token attention probability",
        backend,
    )
    bars_figure = _bars_figure(data, sentences, unscored, backend)
    tag_figure = _tag_figure(data, tag_heat, tag_mapper, backend)

    def div(name: str, width: int = HALF_WIDTH, **kwargs) -> Div:
        # disable_math: trace text is full of "$"; BokehJS would otherwise fetch MathJax from a CDN.
        return Div(text="", name=name, width=width, disable_math=True, **kwargs)

    text_div = div(
        "sw_text",
        height=HALF_WIDTH,
        styles={"overflow-y": "auto", "font-size": "13px", "border": "1px solid #ddd", "padding": "4px"},
    )
    info_div = div("sw_info", styles={"font-size": "12px"})
    summary_div = div("sw_summary")
    heat_note = div("sw_heat_note")
    tag_note = div("sw_tag_note")
    tag_note.text = (
        "<div class='sw-note' style='font-size:11px;color:#444'>Cell (a, b): mean attention from sentences "
        "tagged a to earlier sentences tagged b, over the matrix shown. <span style='background:"
        f"{NO_PAIR_COLOR}'>&nbsp;grey&nbsp;</span> cells have no such pair of sentences (no sentence tagged a "
        "comes after one tagged b), so no mean exists. Tags as built; corrections made on the page show in "
        "the text, the bars and the summary, and here once the report is rebuilt.</div>"
    )
    title_div = Div(text=_title_html(data), name="sw_title", width=FULL_WIDTH, disable_math=True)
    help_div = Div(
        text=f"<div style='font-size:12px;color:#333'>{_HELP}</div>", name="sw_help", width=FULL_WIDTH
    )

    evidence_div = scatter = scatter_note = scatter_yaxis = evidence_select = None
    evidence_parts = []
    names = list(data.evidence)
    if names:
        evidence_div = div("sw_evidence")
        scatter = ColumnDataSource(
            {"x": [], "y": [], "index": [], "color": [], "short": []}, name="sw_scatter"
        )
        evidence_select = Select(
            title="evidence score",
            value=names[0],
            options=names,
            name="sw_evidence_select",
            width=HALF_WIDTH - 20,
        )
        scatter_fig = figure(
            name="sw_scatter_figure",
            width=HALF_WIDTH,
            height=320,
            tools="pan,wheel_zoom,reset,tap",
            title="anchor score against the evidence score (a point per sentence)",
            x_axis_label=f"anchor score ({data.meta.get('score_variant', 'unspecified')})",
            y_axis_label=names[0],
            output_backend=backend,
        )
        points = scatter_fig.scatter("x", "y", source=scatter, color="color", size=7, alpha=0.8)
        scatter_fig.add_tools(
            HoverTool(
                renderers=[points],
                tooltips=[("#", "@index"), ("", "@short"), ("anchor", "@x"), ("evidence", "@y")],
            ),
            SaveTool(filename="sw_scatter"),
        )
        scatter_fig.toolbar.logo = None
        scatter_yaxis = scatter_fig.yaxis[0]
        scatter_note = div("sw_scatter_note")
        evidence_parts = [_wrap(_half(evidence_div), _half(evidence_select, scatter_fig, scatter_note))]

    highlights = [highlight]
    suppression_figure = None
    extra_parts = []
    if data.suppression is not None:
        suppression = ColumnDataSource(
            heat_data(np.tril(np.nan_to_num(data.suppression, nan=0.0)), max_size), name="sw_suppression"
        )
        highlight_2 = ColumnDataSource({"x": [], "y": [], "w": [], "h": []}, name="sw_highlight_suppression")
        highlights.append(highlight_2)
        finite = data.suppression[np.isfinite(data.suppression)]
        mapper = LinearColorMapper(
            palette=Viridis256,
            low=0.0,
            high=float(finite.max()) if finite.size and finite.max() > 0 else 1.0,
            nan_color=(0, 0, 0, 0),
        )
        suppression_figure = _heat_figure(
            "sw_suppression_heatmap",
            "attention suppression: effect on sentence i of masking sentence j",
            size,
            suppression,
            highlight_2,
            mapper,
            sentences,
            "KL (nats)",
            backend,
        )
        note = div("sw_suppression_note")
        note.text = (
            "<div class='sw-note' style='font-size:11px;color:#444'>Cell (i, j): KL divergence of sentence i's "
            "token predictions when all attention to sentence j is masked, against the unmasked pass (Thought "
            "Anchors' attention suppression); linear colour from 0 to the maximum, nothing clipped. Click a cell "
            "to select its column j.</div>"
        )
        extra_parts.append(_half(suppression_figure, note))
    tokens = token_state = token_figure = None
    if data.token_view is not None:
        image, tstate = token_data(data, 0, None)
        tokens = ColumnDataSource(image, name="sw_tokens")
        token_state = ColumnDataSource(tstate, name="sw_token_state")
        token_figure, token_mapper = _token_figure(data, tokens, token_state, backend)
        token_note = div("sw_token_note")
        token_note.text = (
            "<div class='sw-note' style='font-size:11px;color:#444'>The recorded token-level weights of one head "
            "for the selected sentence only: its query tokens (rows, pooled when more than "
            f"{MAX_TOKEN_ROWS}) against the text's key tokens in bins (columns); never the whole T x T matrix."
            "</div>"
        )
        high = float(data.token_view.values.max(initial=0.0)) or 1.0
        token_mapper.high = high
        extra_parts.append(_half(token_figure, token_note))
    else:
        token_note = div("sw_token_note")
        token_note.text = (
            "<div class='sw-note' style='font-size:11px;color:#444'><b>Token view:</b> this trace recorded no "
            "token-level weights. Trace with <code>sw.trace(model, tokenizer, text, layers=[...], heads=[...])</code> "
            "to record some heads; the view then shows the selected sentence's token rows.</div>"
        )
        extra_parts.append(token_note)

    consts = {
        "selected_color": SELECTED_COLOR,
        "dimmed_alpha": DIMMED_ALPHA,
        "over_color": OVER_SCALE_COLOR,
        "links_per_sentence": LINKS_PER_SENTENCE,
        "evidence_rows": EVIDENCE_TABLE_ROWS,
        "min_later": int(data.meta.get("min_later", 4)),
        "proximity_ignore": int(data.meta.get("proximity_ignore", 4)),
        "variant": str(data.meta.get("score_variant", "unspecified")),
        "receiver_label": matrix_label(data, None, None),
        "evidence": names,
        "spearman": {name: list(spearman(data.anchor_scores, data.evidence[name])) for name in names},
        "vocabulary": list(data.tag_vocabulary),
        "tag_colors": dict(data.tag_colors),
        "fallback_color": data.tag_color("\0"),
        "help": _HELP,
        "heads_note": _heads_note(data),
    }
    gaps, bodies, tail = text_pieces(data)
    args = dict(
        sentences=sentences,
        links=links,
        state=state,
        highlights=highlights,
        unscored=unscored,
        heat_mapper=heat_mapper,
        tag_mapper=tag_mapper,
        text_div=text_div,
        info_div=info_div,
        summary_div=summary_div,
        heat_note=heat_note,
        heat_figure=heat_figure,
        bars_figure=bars_figure,
        evidence_div=evidence_div,
        scatter=scatter,
        scatter_note=scatter_note,
        scatter_yaxis=scatter_yaxis,
        evidence_select=evidence_select,
        token_state=token_state,
        token_figure=token_figure,
        gaps=gaps,
        bodies=bodies,
        tail=tail,
        consts_json=browser_json(consts),
    )

    def callback(entry: str) -> CustomJS:
        return renderer.callback(args, entry)

    sentences.selected.js_on_change("indices", callback("select"))
    sentences.js_on_change("data", callback("data"))
    links.js_on_change("data", callback("links"))
    state.js_on_change("data", callback("state"))
    heat_figure.js_on_event("tap", callback("tap"))
    if suppression_figure is not None:
        suppression_figure.js_on_event("tap", callback("tap"))
    if token_state is not None:
        token_state.js_on_change("data", callback("tokens"))
    if scatter is not None:
        evidence_select.js_on_change("value", callback("evidence"))
        scatter.selected.js_on_change("indices", callback("scatter_tap"))

    route_fig, route_edges = _route_view(data, sentences, backend) if data.route is not None else (None, None)
    layout = column(
        title_div,
        help_div,
        *([_wrap(*controls)] if controls else []),
        _wrap(text_div, _half(heat_figure, heat_note)),
        bars_figure,
        _wrap(_half(summary_div, tag_figure, tag_note), info_div),
        *evidence_parts,
        *([_wrap(*extra_parts)] if extra_parts else []),
        *([route_fig] if route_fig is not None else []),
        name="sw_layout",
    )
    return Views(
        sentences=sentences,
        heat=heat,
        links=links,
        state=state,
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
        args=args,
        ready=callback("ready"),
        evidence_select=evidence_select,
        suppression_figure=suppression_figure,
        tokens=tokens,
        token_state=token_state,
        token_figure=token_figure,
        route_figure=route_fig,
        route_edges=route_edges,
    )


def attach(views: Views, document=None):
    """Put `views.layout` into a Bokeh `Document` (a new one unless given) whose "document ready" event
    runs the first render: the same callback in the notebook (jupyter_bokeh) and in the report.

    Returns:
        The document.
    """
    from bokeh.document import Document

    if document is None:
        document = views.layout.document or Document()
    if views.layout.document is None:
        document.add_root(views.layout)
    document.js_on_event("document_ready", views.ready)
    return document
