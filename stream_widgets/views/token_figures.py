"""The token-level figures the explorer and the report share: the token view and the needle route.

- `token_figure`: the recorded token-level weights of one head for the selected sentence only, its query
  tokens (rows) against the text's key tokens in bins (columns); never the whole T x T matrix. The rows
  come from `sources.token_data` (explorer) or the report's packed rows.
- `route_view`: the RULER needle route figure of `views.routes`, each edge linked to the sentence that
  holds the token it reads (`route_edge_sentences`), so a tap on an edge selects that sentence.

`figures.build_views` places them beside the sentence views. Bokeh is imported here.
"""

from __future__ import annotations

from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    HoverTool,
    LinearColorMapper,
    Range1d,
    SaveTool,
    TapTool,
)
from bokeh.palettes import Magma256
from bokeh.plotting import figure

from stream_widgets.views.data import ExploreData
from stream_widgets.views.sentence_figures import FULL_WIDTH, HALF_WIDTH

__all__ = ["route_edge_sentences", "route_view", "token_figure"]


def token_figure(data: ExploreData, tokens: ColumnDataSource, token_state: ColumnDataSource, backend: str):
    """The token heatmap of `tokens` (`sources.token_data`), its rows named on hover from `token_state`.

    Returns:
        The figure and its colour mapper (from 0; the caller sets its top).
    """
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


def route_view(data: ExploreData, sentences: ColumnDataSource, backend: str):
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
