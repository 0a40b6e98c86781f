"""The corpus report page: one standalone HTML file of a corpus analysis (`corpus.analysis`).

`corpus_html(analysis)` returns the page, with Bokeh's JavaScript inlined so that it opens offline from
disk, with no server and no network request (no CDN, no MathJax: every text part has math off). It
shows, from the plain numbers of the `CorpusAnalysis` (no trace, no model):

- the corpus in one paragraph: traces, model, settings, the receiver heads and their split-half
  reliability, what was left out and why;
- per-tag anchor-score distributions (`sw_corpus_tags`: within-trace percentile, comparable across
  traces; `sw_corpus_tags_raw`: the anchor score itself), box plots (quartiles, Tukey whiskers) over
  every scored sentence, with the sentences as points (hover: trace, sentence, text), and a table;
- the anchors' position in their traces (`sw_corpus_positions`): the share of the top anchors per
  relative-position bin beside the share of all scored sentences (what a pick at random would give);
- the Spearman correlations with every label column, per trace and pooled, with the position
  baseline beside them (`sw_corpus_correlations`);
- the pooled per-head kurtosis (`sw_corpus_heads`), the receiver heads outlined;
- one row per trace (`sw_corpus_traces`) with its top anchor.

Everything renders in the browser from Bokeh models; there are no custom callbacks.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stream_widgets.corpus.report_data import CorpusAnalysis

__all__ = ["corpus_html"]

_HOVER_CHARS = 160  # characters of a sentence shown on hover
_WIDTH = 820


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


def _div(text: str, name: str | None = None, width: int = _WIDTH):
    from bokeh.models import Div

    # disable_math: sentences and ids hold "$"; BokehJS would otherwise fetch MathJax from a CDN.
    return Div(text=text, name=name, width=width, disable_math=True)


def _intro(analysis: CorpusAnalysis) -> str:
    heads, settings = analysis.heads, analysis.settings
    reliability = heads.reliability
    config = settings.get("config") or {}
    tokens = sum(t.tokens for t in analysis.traces)
    sources = sorted({t.tag_source for t in analysis.traces})
    tag_origin = " and ".join(
        "the inputs' labels" if s == "labels" else "the shipped tagger" for s in sources
    )
    rel = (
        f"split-half reliability of per-head kurtosis <b>r = {reliability.mean_r:.3f}</b> (mean Pearson r "
        f"over {len(reliability.r)} random splits of the {reliability.groups} groups into halves)"
        if math.isfinite(reliability.mean_r)
        else f"no split-half reliability: the traces form {reliability.groups} group(s), a split needs 2"
    )
    parts = [
        f"<h2 style='margin:4px 0'>Corpus report: {len(analysis.traces)} traces of "
        f"{html.escape(heads.model_id)}</h2>",
        f"<p>{tokens:,} tokens, {len(analysis.sentences):,} sentences; Stream config "
        + html.escape(", ".join(f"{k}={v}" for k, v in config.items()))
        + f"; mode {html.escape(str(settings.get('mode')))}"
        + (f"; cut to {settings['max_tokens']} tokens" if settings.get("max_tokens") else "")
        + ".</p>",
        f"<p>Anchor score: the <code>{html.escape(str(settings['variant']))}</code> vertical score "
        f"(min_later={settings['min_later']}, proximity_ignore={settings['proximity_ignore']}) averaged over the "
        f"{len(analysis.receiver_heads)} corpus receiver heads (highest mean kurtosis over the traces); {rel}. "
        f"Tags from {tag_origin}.</p>",
    ]
    if analysis.left_out:
        items = "".join(
            f"<li><code>{html.escape(e['id'])}</code>: {html.escape(str(e['reason']))[:300]}</li>"
            for e in analysis.left_out[:50]
        )
        more = f"<li>... and {len(analysis.left_out) - 50} more</li>" if len(analysis.left_out) > 50 else ""
        parts.append(
            f"<details><summary>{len(analysis.left_out)} traces left out</summary><ul>{items}{more}</ul></details>"
        )
    return "".join(parts)


def _tag_color(tag: str) -> str:
    from stream_widgets.views.data import DEFAULT_TAG_COLORS, FALLBACK_TAG_COLOR

    return DEFAULT_TAG_COLORS.get(tag, FALLBACK_TAG_COLOR)


def _tag_figure(analysis: CorpusAnalysis, key: str, name: str, title: str, y_label: str):
    """Box plot per tag of `key` ("percentile" or "anchor_score") over the scored sentences, with points."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import dodge, jitter

    tags = [row["tag"] for row in analysis.tags if row["scored"]]
    stats = "percentile" if key == "percentile" else "score"
    fig = figure(
        x_range=tags,
        width=_WIDTH,
        height=340,
        title=title,
        name=name,
        toolbar_location="right",
        tools="pan,box_zoom,wheel_zoom,reset,save",
    )
    boxes = {"tag": [], "q1": [], "median": [], "q3": [], "low": [], "high": [], "color": [], "n": []}
    for row in analysis.tags:
        if not row["scored"]:
            continue
        q = row[stats]
        boxes["tag"].append(row["tag"])
        for part in ("q1", "median", "q3", "low", "high"):
            boxes[part].append(q[part])
        boxes["color"].append(_tag_color(row["tag"]))
        boxes["n"].append(row["scored"])
    box_source = ColumnDataSource(boxes, name=f"{name}_boxes")
    fig.segment("tag", "low", "tag", "high", source=box_source, color="#444444")
    bars = fig.vbar(
        x="tag",
        width=0.6,
        top="q3",
        bottom="q1",
        source=box_source,
        fill_color="color",
        fill_alpha=0.35,
        line_color="#444444",
    )
    fig.segment(
        x0=dodge("tag", -0.3, range=fig.x_range),
        y0="median",
        x1=dodge("tag", 0.3, range=fig.x_range),
        y1="median",
        source=box_source,
        color="#000000",
        line_width=2,
    )
    scored = [r for r in analysis.sentences if math.isfinite(r["anchor_score"])]
    points = ColumnDataSource(
        {
            "tag": [r["tag"] for r in scored],
            "y": [r[key] for r in scored],
            "color": [_tag_color(r["tag"]) for r in scored],
            "trace": [r["trace"] for r in scored],
            "index": [r["index"] for r in scored],
            "score": [r["anchor_score"] for r in scored],
            "percentile": [r["percentile"] for r in scored],
            "top": ["yes" if r["top_anchor"] else "no" for r in scored],
            "text": [r["sentence"][:_HOVER_CHARS] for r in scored],
        },
        name=f"{name}_points",
    )
    dots = fig.scatter(
        x=jitter("tag", width=0.5, range=fig.x_range), y="y", source=points, size=4, color="color", alpha=0.45
    )
    fig.add_tools(
        HoverTool(
            renderers=[dots],
            tooltips=[
                ("trace", "@trace"),
                ("sentence", "#@index"),
                ("anchor score", "@score{0.0000}"),
                ("percentile", "@percentile{0.00}"),
                ("top anchor", "@top"),
                ("text", "@text"),
            ],
        ),
        HoverTool(
            renderers=[bars],
            tooltips=[("tag", "@tag"), ("scored sentences", "@n"), ("median", "@median{0.000}")],
        ),
    )
    fig.xaxis.major_label_orientation = 0.6
    fig.yaxis.axis_label = y_label
    fig.xgrid.grid_line_color = None
    return fig


def _tag_table(analysis: CorpusAnalysis):
    from bokeh.models import ColumnDataSource, DataTable, TableColumn

    rows = analysis.tags
    source = ColumnDataSource(
        {
            "tag": [r["tag"] for r in rows],
            "sentences": [r["sentences"] for r in rows],
            "scored": [r["scored"] for r in rows],
            "sentence_share": [_share(r["sentence_share"]) for r in rows],
            "anchor_share": [_share(r["top_anchor_share"]) for r in rows],
            "median_percentile": [_number(r["percentile"]["median"], 2) for r in rows],
            "mean_score": [_number(r["score"]["mean"], 5) for r in rows],
        },
        name="sw_corpus_tag_rows",
    )
    columns = [
        TableColumn(field="tag", title="tag", width=190),
        TableColumn(field="sentences", title="sentences", width=70),
        TableColumn(field="scored", title="scored", width=60),
        TableColumn(field="sentence_share", title="share of sentences", width=120),
        TableColumn(field="anchor_share", title="share of top anchors", width=130),
        TableColumn(field="median_percentile", title="median percentile", width=120),
        TableColumn(field="mean_score", title="mean anchor score", width=130),
    ]
    return DataTable(
        source=source,
        columns=columns,
        width=_WIDTH,
        height=min(60 + 26 * len(rows), 320),
        index_position=None,
        name="sw_corpus_tag_table",
    )


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _position_figure(analysis: CorpusAnalysis):
    from bokeh.models import ColumnDataSource, HoverTool, Legend
    from bokeh.plotting import figure
    from bokeh.transform import dodge

    positions = analysis.positions
    edges = np.asarray(positions["edges"])
    anchors = np.asarray(positions["anchors"], dtype=np.float64)
    sentences = np.asarray(positions["sentences"], dtype=np.float64)
    width = float(edges[1] - edges[0])
    centres = (edges[:-1] + edges[1:]) / 2
    source = ColumnDataSource(
        {
            "left": edges[:-1].tolist(),
            "right": edges[1:].tolist(),
            "centre": centres.tolist(),
            "anchors": (anchors / max(anchors.sum(), 1)).tolist(),
            "sentences": (sentences / max(sentences.sum(), 1)).tolist(),
            "anchor_count": anchors.astype(int).tolist(),
            "sentence_count": sentences.astype(int).tolist(),
        },
        name="sw_corpus_position_bins",
    )
    top = analysis.settings.get("top_anchors")
    fig = figure(
        width=_WIDTH,
        height=300,
        title=f"Relative position in the trace (0: first sentence, 1: last) of each trace's top {top} anchors",
        name="sw_corpus_positions",
        x_range=(0, 1),
        tools="pan,box_zoom,reset,save",
    )
    a = fig.vbar(
        x=dodge("centre", -width * 0.22), width=width * 0.42, top="anchors", source=source, color="#d62728"
    )
    s = fig.vbar(
        x=dodge("centre", width * 0.22), width=width * 0.42, top="sentences", source=source, color="#7f7f7f"
    )
    legend = Legend(
        items=[(f"top {top} anchors", [a]), ("all scored sentences", [s])],
        location="top_center",
        orientation="horizontal",
    )
    fig.add_layout(legend)
    fig.add_tools(
        HoverTool(
            renderers=[a, s],
            tooltips=[
                ("position", "@left{0.0} to @right{0.0}"),
                ("anchors", "@anchor_count (@anchors{0.0%})"),
                ("scored sentences", "@sentence_count (@sentences{0.0%})"),
            ],
        )
    )
    fig.yaxis.axis_label = "share"
    fig.xaxis.axis_label = "relative position"
    return fig


def _correlation_table(analysis: CorpusAnalysis):
    from bokeh.models import ColumnDataSource, DataTable, TableColumn

    rows = analysis.correlations
    data = {"column": [r["column"] for r in rows]}
    for score in ("anchor_score", "position_baseline"):
        data[f"{score}_mean"] = [
            f"{_number(r[score]['mean_per_trace'], 3)} ({r[score]['traces']} traces)" for r in rows
        ]
        data[f"{score}_pooled"] = [
            f"{_number(r[score]['pooled'], 3)} ({r[score]['pooled_sentences']} sentences)" for r in rows
        ]
    source = ColumnDataSource(data, name="sw_corpus_correlation_rows")
    columns = [
        TableColumn(field="column", title="label column", width=220),
        TableColumn(field="anchor_score_mean", title="anchor score: per trace", width=150),
        TableColumn(field="anchor_score_pooled", title="anchor score: pooled", width=150),
        TableColumn(field="position_baseline_mean", title="baseline: per trace", width=150),
        TableColumn(field="position_baseline_pooled", title="position baseline: pooled", width=150),
    ]
    return DataTable(
        source=source,
        columns=columns,
        width=_WIDTH,
        height=max(60, min(60 + 26 * len(rows), 320)),
        index_position=None,
        name="sw_corpus_correlations",
    )


def _heads_figure(analysis: CorpusAnalysis):
    from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    kurtosis = np.asarray(analysis.heads.kurtosis, dtype=np.float64)
    layers, heads = kurtosis.shape
    chosen = {h: r + 1 for r, h in enumerate(analysis.receiver_heads)}
    cells = [(layer, head) for layer in range(layers) for head in range(heads)]
    source = ColumnDataSource(
        {
            "layer": [c[0] for c in cells],
            "head": [c[1] for c in cells],
            "kurtosis": [float(kurtosis[c]) if np.isfinite(kurtosis[c]) else float("nan") for c in cells],
            "rank": [str(chosen[c]) if c in chosen else "-" for c in cells],
            "line": ["#d62728" if c in chosen else None for c in cells],
        },
        name="sw_corpus_head_cells",
    )
    finite = kurtosis[np.isfinite(kurtosis)]
    mapper = LinearColorMapper(
        palette=Viridis256,
        low=float(finite.min()) if finite.size else 0.0,
        high=float(finite.max()) if finite.size else 1.0,
        nan_color="#dddddd",
    )
    fig = figure(
        width=min(_WIDTH, max(360, 120 + 26 * heads)),
        height=min(700, 80 + 18 * layers),
        title="Pooled kurtosis per head",
        name="sw_corpus_heads",
        x_range=(-0.5, heads - 0.5),
        y_range=(layers - 0.5, -0.5),
        tools="save",
    )
    cells_glyph = fig.rect(
        "head",
        "layer",
        0.95,
        0.9,
        source=source,
        fill_color={"field": "kurtosis", "transform": mapper},
        line_color="line",
        line_width=2,
    )
    fig.add_tools(
        HoverTool(
            renderers=[cells_glyph],
            tooltips=[
                ("layer", "@layer"),
                ("head", "@head"),
                ("kurtosis", "@kurtosis{0.00}"),
                ("rank", "@rank"),
            ],
        )
    )
    fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    fig.xaxis.axis_label = "head"
    fig.yaxis.axis_label = "layer"
    return fig


def _trace_table(analysis: CorpusAnalysis):
    from bokeh.models import ColumnDataSource, DataTable, TableColumn

    traces = analysis.traces
    source = ColumnDataSource(
        {
            "id": [t.id for t in traces],
            "group": [t.group for t in traces],
            "tokens": [t.tokens for t in traces],
            "sentences": [t.sentences for t in traces],
            "scored": [t.scored for t in traces],
            "tags": [t.tag_source for t in traces],
            "anchor": [
                f"#{t.top_anchors[0]['index']} {t.top_anchors[0]['tag']}: {t.top_anchors[0]['text'][:90]}"
                if t.top_anchors
                else "-"
                for t in traces
            ],
        },
        name="sw_corpus_trace_rows",
    )
    columns = [
        TableColumn(field="id", title="trace", width=250),
        TableColumn(field="group", title="group", width=90),
        TableColumn(field="tokens", title="tokens", width=50),
        TableColumn(field="sentences", title="sentences", width=60),
        TableColumn(field="scored", title="scored", width=50),
        TableColumn(field="tags", title="tags", width=50),
        TableColumn(field="anchor", title="top anchor", width=400),
    ]
    return DataTable(
        source=source,
        columns=columns,
        width=_WIDTH,
        height=min(60 + 26 * len(traces), 420),
        index_position=None,
        name="sw_corpus_traces",
    )


def corpus_html(analysis: CorpusAnalysis) -> str:
    """The corpus report as one standalone HTML page (Bokeh inlined; see the module docstring)."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import TabPanel, Tabs
    from bokeh.resources import INLINE

    tags = Tabs(
        tabs=[
            TabPanel(
                child=_tag_figure(
                    analysis,
                    "percentile",
                    "sw_corpus_tags",
                    "Anchor score by function tag: within-trace percentile (0.5 = the trace's median sentence)",
                    "within-trace percentile",
                ),
                title="percentile",
            ),
            TabPanel(
                child=_tag_figure(
                    analysis,
                    "anchor_score",
                    "sw_corpus_tags_raw",
                    "Anchor score by function tag",
                    "anchor score",
                ),
                title="anchor score",
            ),
        ],
        name="sw_corpus_tag_tabs",
    )
    correlations = (
        [
            _div(
                "<h3>Correlations with the input labels</h3><p>Spearman rank correlation of the anchor score "
                "with every label column, per trace (mean over the traces where it is defined) and pooled "
                "(every trace's values replaced by within-trace percentile ranks first), on the sentences "
                "with an anchor score; the position baseline (earlier sentences first) beside it: a score "
                "that does no better than the baseline says nothing beyond position.</p>"
            ),
            _correlation_table(analysis),
        ]
        if analysis.correlations
        else [_div("<h3>Correlations with the input labels</h3><p>The inputs carry no label columns.</p>")]
    )
    layout = column(
        _div(_intro(analysis), "sw_corpus_title"),
        _div("<h3>Anchor scores by function tag</h3>"),
        tags,
        _tag_table(analysis),
        _div("<h3>Where the anchors are</h3>"),
        _position_figure(analysis),
        *correlations,
        _div(
            "<h3>Receiver heads</h3><p>Every head's Fisher kurtosis of its vertical scores, averaged over the "
            "traces; the receiver heads, the highest, are outlined in red (hover: rank).</p>"
        ),
        _heads_figure(analysis),
        _div("<h3>Traces</h3>"),
        _trace_table(analysis),
        name="sw_corpus_report",
    )
    document = Document()
    document.add_root(layout)
    return file_html(document, resources=INLINE, title=f"corpus report: {analysis.heads.model_id}")
