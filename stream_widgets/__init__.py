"""stream-widgets: sparse (Stream) attention interpretability for long chain-of-thought traces.

Importing the package loads no model, opens no socket and patches nothing: the estimator and the mask
type import with torch alone, and every other public name is imported from its module on first use.
"""

from importlib import import_module
from typing import Any

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask, oracle_mask
from stream_widgets.fidelity import fidelity
from stream_widgets.mask import StreamMask

# public name -> module that defines it, imported on first access (transformers, spaCy, Bokeh are heavy)
_LAZY = {
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
    "explore": "stream_widgets.views",
    "report": "stream_widgets.views",
    "ExploreData": "stream_widgets.views",
    "explore_data": "stream_widgets.views",
    "write_report": "stream_widgets.views",
    "make_cases": "stream_widgets.ruler",
    "RulerCase": "stream_widgets.ruler",
    "score_case": "stream_widgets.ruler_scoring",
    "RulerResult": "stream_widgets.ruler_scoring",
    "find_route": "stream_widgets.routes",
}

__all__ = [
    "StreamConfig",
    "StreamMask",
    "estimate_mask",
    "fidelity",
    "oracle_mask",
    *_LAZY,
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
