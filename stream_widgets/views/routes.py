"""The RULER route view: a needle's path through the layers, as a Bokeh figure.

Token positions run along x, layers up y. An edge at layer l from key position k to query position q is
drawn as a segment from (k, l) to (q, l + 1): the query reads the key in layer l and holds the result
from layer l + 1 on. Width and opacity grow with the attention weight; kept edges are blue, edges of
the dense route that the Stream mask drops are red and dashed. Shaded bands mark the asked-about needle
(green) and distractor needles (grey); a vertical line marks the output position.

Built from plain route data (`stream_widgets.ruler.routes.Route` or its `to_dict()`), never from a model; only
the route's edges travel to the browser.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Span
from bokeh.plotting import figure

__all__ = ["KEPT_COLOR", "PRUNED_COLOR", "route_data", "route_figure", "write_route_html"]

KEPT_COLOR = "#1f77b4"
PRUNED_COLOR = "#d62728"
_SPAN_COLORS = {"needle": "#2ca02c", "distractor": "#7f7f7f"}


def _as_dict(route: Any) -> Mapping:
    data = route.to_dict() if hasattr(route, "to_dict") else route
    missing = {"edges", "pruned", "sources", "output", "num_layers", "seq_len"} - set(data)
    if missing:
        raise ValueError(f"route data lacks {sorted(missing)}: pass a Route or Route.to_dict()")
    return data


def route_data(route: Any) -> dict[str, list]:
    """Column data of the route's segments (kept edges, then pruned ones).

    Args:
        route: A `Route` or its `to_dict()`.

    Returns:
        Columns ``x0, y0, x1, y1, width, alpha, color, dash, layer, head, query, key, weight, status,
        label`` (one row per edge).
    """
    data = _as_dict(route)
    tokens = {int(k): v for k, v in data.get("tokens", {}).items()}
    cols: dict[str, list] = {
        k: []
        for k in (
            "x0",
            "y0",
            "x1",
            "y1",
            "width",
            "alpha",
            "color",
            "dash",
            "layer",
            "head",
            "query",
            "key",
            "weight",
            "status",
            "label",
        )
    }
    for status, edges in (("kept", data["edges"]), ("pruned", data["pruned"])):
        for e in edges:
            w = float(e["weight"])
            cols["x0"].append(e["key"])
            cols["y0"].append(e["layer"])
            cols["x1"].append(e["query"])
            cols["y1"].append(e["layer"] + 1)
            cols["width"].append(1.0 + 6.0 * w)
            cols["alpha"].append(0.25 + 0.75 * w)
            cols["color"].append(KEPT_COLOR if status == "kept" else PRUNED_COLOR)
            cols["dash"].append("solid" if status == "kept" else "dashed")
            for name in ("layer", "head", "query", "key"):
                cols[name].append(int(e[name]))
            cols["weight"].append(w)
            cols["status"].append(status)
            cols["label"].append(f"{tokens.get(e['key'], '?')!r} -> {tokens.get(e['query'], '?')!r}")
    return cols


def route_figure(route: Any, *, title: str | None = None, width: int = 900, height: int = 420):
    """A Bokeh figure of a needle route.

    Args:
        route: A `stream_widgets.ruler.routes.Route` or its `to_dict()` (plain data).
        title: Figure title; a summary of the route if None.
        width: Pixels.
        height: Pixels.

    Returns:
        A `bokeh.plotting.figure`.
    """
    data = _as_dict(route)
    cols = route_data(data)
    kept = sum(1 for s in cols["status"] if s == "kept")
    if title is None:
        reach = (
            "reaches the output"
            if any(int(e["query"]) == int(data["output"]) for e in data["edges"])
            else ("does not reach the output with kept edges")
        )
        title = f"needle route: {kept} kept edges, {len(cols['status']) - kept} dense edges pruned; {reach}"
    fig = figure(
        name="sw_route",
        width=width,
        height=height,
        title=title,
        x_axis_label="token position",
        y_axis_label="layer",
        x_range=(-0.02 * data["seq_len"], 1.02 * data["seq_len"]),
        y_range=(-0.5, data["num_layers"] + 0.5),
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    for name, spans in data.get("spans", {}).items():
        for start, end in spans:
            fig.add_layout(
                BoxAnnotation(
                    left=start - 0.5,
                    right=end - 0.5,
                    fill_alpha=0.25,
                    fill_color=_SPAN_COLORS.get(name, "#bcbd22"),
                    line_alpha=0,
                )
            )
    for s in data["sources"]:
        fig.add_layout(
            Span(location=s, dimension="height", line_color=_SPAN_COLORS["needle"], line_alpha=0.5)
        )
    fig.add_layout(
        Span(
            location=data["output"], dimension="height", line_color="black", line_dash="dotted", line_width=2
        )
    )
    source = ColumnDataSource(cols, name="sw_route_edges")
    segments = fig.segment(
        "x0",
        "y0",
        "x1",
        "y1",
        source=source,
        line_width="width",
        line_alpha="alpha",
        line_color="color",
        line_dash="dash",
        name="sw_route_segments",
    )
    fig.scatter("x1", "y1", source=source, size=5, color="color", alpha="alpha")
    fig.add_tools(
        HoverTool(
            renderers=[segments],
            tooltips=[
                ("layer.head", "@layer.@head"),
                ("key -> query", "@key -> @query"),
                ("tokens", "@label"),
                ("weight", "@weight{0.000}"),
                ("", "@status"),
            ],
        )
    )
    fig.yaxis.ticker = list(range(0, data["num_layers"] + 1, max(1, data["num_layers"] // 10)))
    return fig


def write_route_html(route: Any, path: str | os.PathLike, **kwargs) -> Path:
    """Write the route view as a standalone HTML file (Bokeh's JavaScript inlined; opens offline).

    Args:
        route: A `Route` or its `to_dict()`.
        path: The ``.html`` file to write (its folder is created).
        **kwargs: Passed to `route_figure`.

    Returns:
        The path written.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = file_html(route_figure(route, **kwargs), INLINE, title="stream-widgets needle route")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
