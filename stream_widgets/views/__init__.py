"""What the user sees: the notebook explorer, the offline HTML report, and the step from a trace to them.

Modules, one idea each:

- `data`: `ExploreData` and `TokenView`, the plain numpy data every view takes (no Bokeh);
- `matrices`: numpy aggregations the views show (which matrix, pooling, colour scale, per-tag tables);
- `sources`: the columns Python feeds into the views' sources (numpy, no Bokeh);
- `renderer`: the one browser-side renderer (JavaScript) both views use;
- `sentence_figures`: the sentence-level Bokeh figures both views share (heatmaps, bars, scatter);
- `token_figures`: the token-level ones (the token view, the needle route linked to the sentences);
- `figures`: the Bokeh models both views share, laid out and wired to the renderer;
- `explorer`: the ipywidgets controller of the notebook explorer (`Explorer`, `build_explorer`);
- `report_packing`: the report's matrices and token rows packed into 8-bit arrays within a byte budget;
- `report_page`: the report's Bokeh document, its own pickers feeding the shared sources;
- `report_files`: the report writer (`write_report`: HTML, JSON, CSV);
- `corrections`: tag corrections as JSON (made in either view, re-applied, used for training);
- `routes`: the RULER needle route figure;
- `api`: the application step, `explore_data` (a `Trace` to `ExploreData`), and `explore` / `report`.

Importing this package imports no Bokeh, ipywidgets, spaCy, torch or `tagging`: every public name is
imported from its module on first use.
"""

from __future__ import annotations

from stream_widgets.lazy import lazy_names

# public name -> module that defines it (no module is named like a function it exports)
_LAZY = {
    "ExploreData": "stream_widgets.views.data",
    "TokenView": "stream_widgets.views.data",
    "synthetic_example": "stream_widgets.views.data",
    "explore_data": "stream_widgets.views.api",
    "explore": "stream_widgets.views.api",
    "report": "stream_widgets.views.api",
    "write_report": "stream_widgets.views.report_files",
    "build_explorer": "stream_widgets.views.explorer",
    "Explorer": "stream_widgets.views.explorer",
    "apply_corrections": "stream_widgets.views.corrections",
    "load_corrections": "stream_widgets.views.corrections",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
