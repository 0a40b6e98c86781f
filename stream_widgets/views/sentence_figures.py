"""The sentence-level figures the explorer and the report share, and the colours and widths of every part.

Each function makes one Bokeh figure over the sources of `views.sources` (it feeds no data of its own):

- `heat_figure`: a sentence x sentence heatmap (the sentence attention, and the suppression matrix) with
  its colour bar, the selected sentence outlined, a hover naming both sentences;
- `bars_figure`: the anchor-score bars, one per sentence, coloured by function tag (faded by the tagger's
  confidence), unscored sentences marked with an x;
- `tag_figure`: the tag x tag attention heatmap of the per-tag summary;
- `scatter_figure`: the anchor score against an evidence score, a point per sentence.

`figures.build_views` lays them out and wires them to the renderer. Bokeh is imported here.
"""

from __future__ import annotations

from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSHover,
    HoverTool,
    LinearColorMapper,
    Range1d,
    SaveTool,
    TapTool,
)
from bokeh.plotting import figure
from bokeh.transform import transform

from stream_widgets.views.data import ExploreData
from stream_widgets.views.sources import bars_title

__all__ = [
    "FULL_WIDTH",
    "HALF_WIDTH",
    "NO_PAIR_COLOR",
    "OVER_SCALE_COLOR",
    "SELECTED_COLOR",
    "bars_figure",
    "heat_figure",
    "scatter_figure",
    "tag_figure",
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


def _index_hover(sentences: ColumnDataSource, axis: str) -> CustomJSHover:
    # floor, not round: the cell under the cursor at y = 40.8 is row 40 (a rounding formatter showed 41)
    return CustomJSHover(
        args=dict(sentences=sentences),
        code="const i = Math.floor(value); const d = sentences.data;"
        "return (i >= 0 && i < d.tip.length) ? '#' + i + ' ' + d.tip[i] : '';",
    )


def heat_figure(
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
    """A sentence x sentence heatmap of `image_source` (`sources.heat_data`), `highlight` outlining the
    selected sentence's row and column, hover naming both sentences; `unit` titles its colour bar."""
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


def bars_figure(data: ExploreData, sentences: ColumnDataSource, unscored: ColumnDataSource, backend: str):
    """The anchor-score bars of `sentences` (tap one to select it), an x at each of `unscored`'s marks."""
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


def tag_figure(data: ExploreData, tag_heat: ColumnDataSource, mapper: LinearColorMapper, backend: str):
    """The tag x tag attention heatmap of `tag_heat` (`sources.tag_heat_data`) over the tags present."""
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


def scatter_figure(data: ExploreData, scatter: ColumnDataSource, y_label: str, backend: str):
    """The anchor score (x) against the evidence score `y_label` (y) of `scatter`'s points."""
    fig = figure(
        name="sw_scatter_figure",
        width=HALF_WIDTH,
        height=320,
        tools="pan,wheel_zoom,reset,tap",
        title="anchor score against the evidence score (a point per sentence)",
        x_axis_label=f"anchor score ({data.meta.get('score_variant', 'unspecified')})",
        y_axis_label=y_label,
        output_backend=backend,
    )
    points = fig.scatter("x", "y", source=scatter, color="color", size=7, alpha=0.8)
    fig.add_tools(
        HoverTool(
            renderers=[points],
            tooltips=[("#", "@index"), ("", "@short"), ("anchor", "@x"), ("evidence", "@y")],
        ),
        SaveTool(filename="sw_scatter"),
    )
    fig.toolbar.logo = None
    return fig
