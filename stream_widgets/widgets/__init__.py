"""Linked notebook views of one trace (Bokeh inside ipywidgets) and the data they show.

`ExploreData` and `synthetic_example` are plain numpy and import nothing heavy; `build_explorer` and
`Explorer` import Bokeh, jupyter_bokeh and ipywidgets on first use.
"""

from __future__ import annotations

from typing import Any

from stream_widgets.widgets.data import FUNCTION_TAGS, TAG_COLORS, ExploreData, synthetic_example

__all__ = [
    "FUNCTION_TAGS",
    "TAG_COLORS",
    "ExploreData",
    "Explorer",
    "build_explorer",
    "load_bokehjs",
    "synthetic_example",
]


def __getattr__(name: str) -> Any:
    # Bokeh and ipywidgets load only when the explorer is asked for.
    if name in ("Explorer", "build_explorer", "load_bokehjs"):
        from stream_widgets.widgets import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module 'stream_widgets.widgets' has no attribute {name!r}")
