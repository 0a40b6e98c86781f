"""stream-widgets: sparse (Stream) attention interpretability for long chain-of-thought traces.

Importing the package loads no model, opens no socket, patches nothing and does not import torch (so
`stream-widgets --help` is instant): every public name but `StreamConfig` is imported from its module
on first use.
"""

import sys
import types
from importlib import import_module
from typing import Any

from stream_widgets.config import StreamConfig

# public name -> module that defines it, imported on first access (torch, transformers, spaCy, Bokeh)
_LAZY = {
    "StreamMask": "stream_widgets.mask",
    "estimate_mask": "stream_widgets.estimator",
    "oracle_mask": "stream_widgets.estimator",
    "explore": "stream_widgets.explore",
    "report": "stream_widgets.explore",
    "fidelity": "stream_widgets.fidelity",
    "load_model": "stream_widgets.models",
    "trace": "stream_widgets.tracer",
    "Trace": "stream_widgets.traces",
    "FidelityReport": "stream_widgets.fidelity",
    "Sentence": "stream_widgets.sentences",
    "split_sentences": "stream_widgets.sentences",
    "Anchor": "stream_widgets.anchors",
    "anchor_scores": "stream_widgets.anchors",
    "receiver_heads": "stream_widgets.anchors",
    "sentence_attention": "stream_widgets.anchors",
    "thought_anchors": "stream_widgets.anchors",
    "vertical_scores": "stream_widgets.anchors",
    "dense_sentence_attention": "stream_widgets.dense_reference",
    "ExploreData": "stream_widgets.widgets.data",
    "explore_data": "stream_widgets.explore",
    "write_report": "stream_widgets.html_report",
    "make_cases": "stream_widgets.ruler",
    "RulerCase": "stream_widgets.ruler",
    "score_case": "stream_widgets.ruler_scoring",
    "RulerResult": "stream_widgets.ruler_scoring",
    "find_route": "stream_widgets.routes",
}

__all__ = ["StreamConfig", *_LAZY]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """The package module: importing the submodules `explore` and `fidelity` keeps `sw.explore` and
    `sw.fidelity` the functions (the import system would otherwise bind the submodules there)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("explore", "fidelity") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
