"""The Bokeh views shared by the notebook explorer and the standalone report: one set of models, one
set of browser-side callbacks.

`build_views` makes the linked parts: the trace text coloured by function tag (faded by the tagger's
confidence), the sentence x sentence heatmap with its colour bar, the anchor-score bars, a per-tag
summary (table and tag x tag attention), the info panel of the selected sentence, and, when the data has
them, the evidence table and scatter, the suppression matrix, the token view and the needle route. The
figures themselves come from `views.sentence_figures` (the heatmaps, the bars, the scatter; the colours
and widths of every part) and `views.token_figures` (the token view, the needle route); this module
lays them out and wires them to the renderer.

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
(`report_page`). Bokeh is imported here; importing `stream_widgets` does not import this module.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, CustomJS, Div, LinearColorMapper, Select
from bokeh.palettes import Viridis256

from stream_widgets.views import renderer, sentence_figures, token_figures
from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import matrix_label, select_scores, spearman
from stream_widgets.views.sentence_figures import (
    FULL_WIDTH,
    HALF_WIDTH,
    NO_PAIR_COLOR,
    OVER_SCALE_COLOR,
    SELECTED_COLOR,
)
from stream_widgets.views.sources import (
    DIMMED_ALPHA,
    LINKS_PER_SENTENCE,
    MAX_HEATMAP_SIZE,
    MAX_TOKEN_ROWS,
    browser_json,
    heat_data,
    links_data,
    sentence_columns,
    state_data,
    tag_heat_data,
    text_pieces,
    token_data,
)
from stream_widgets.views.token_figures import route_edge_sentences as route_edge_sentences

__all__ = [
    "FULL_WIDTH",
    "HALF_WIDTH",
    "OVER_SCALE_COLOR",
    "SELECTED_COLOR",
    "Views",
    "attach",
    "build_views",
]

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
    heat_figure = sentence_figures.heat_figure(
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
    bars_figure = sentence_figures.bars_figure(data, sentences, unscored, backend)
    tag_figure = sentence_figures.tag_figure(data, tag_heat, tag_mapper, backend)

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
        scatter_fig = sentence_figures.scatter_figure(data, scatter, names[0], backend)
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
        suppression_figure = sentence_figures.heat_figure(
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
        token_figure, token_mapper = token_figures.token_figure(data, tokens, token_state, backend)
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

    route_fig, route_edges = (
        token_figures.route_view(data, sentences, backend) if data.route is not None else (None, None)
    )
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
