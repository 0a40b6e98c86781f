"""stream-widgets: sparse (Stream) attention interpretability for long chain-of-thought traces.

The root holds what a first session needs (the README tour) and the core types; everything else lives
in its submodule: `stream_widgets.ruler` (needle cases, scoring, routes), `stream_widgets.dense_reference`
(exact sentence attention), `stream_widgets.views` (the widgets and the report's internals),
`stream_widgets.anchors` (every step of the anchor pipeline), `stream_widgets.tokens`, ...

Importing the package imports torch and three small modules (`config`, `mask`, `estimator`); every
other name below is imported from its module on first access, so transformers, spaCy, Bokeh and
ipywidgets load only when used. Importing loads no model, opens no socket and patches nothing.
"""

from importlib import import_module
from typing import Any

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask, oracle_mask
from stream_widgets.explore import explore, report  # interim: bound eagerly until views/
from stream_widgets.mask import StreamMask

# public name -> module that defines it, imported on first access
_LAZY = {
    "load_model": "stream_widgets.models",
    "trace": "stream_widgets.tracer",
    "Trace": "stream_widgets.traces",
    "fidelity": "stream_widgets.faithfulness",
    "FidelityReport": "stream_widgets.faithfulness",
    "Sentence": "stream_widgets.sentences",
    "split_sentences": "stream_widgets.sentences",
    "Anchor": "stream_widgets.anchors",
    "receiver_heads": "stream_widgets.anchors",
    "thought_anchors": "stream_widgets.anchors",
}

__all__ = ["StreamConfig", "StreamMask", "estimate_mask", "explore", "oracle_mask", "report", *_LAZY]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
