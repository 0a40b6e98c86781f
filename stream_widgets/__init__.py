"""stream-widgets: sparse (Stream) attention interpretability for long chain-of-thought traces.

The root holds what a first session needs (the README tour) and the core types; everything else lives
in its submodule: `stream_widgets.ruler` (needle cases, scoring, routes), `stream_widgets.dense_reference`
(exact sentence attention), `stream_widgets.suppression`, `stream_widgets.receivers` (corpus receiver
heads), `stream_widgets.views` (the explorer and the report), `stream_widgets.tokens`, ...

Importing the package loads no model, opens no socket, patches nothing and does not import torch (so
`stream-widgets --help` is instant): every public name but `StreamConfig` is imported from its module
on first access.
"""

from stream_widgets.config import StreamConfig
from stream_widgets.lazy import lazy_names

# public name -> module that defines it, imported on first access (torch, transformers, spaCy, Bokeh)
_LAZY = {
    "StreamMask": "stream_widgets.mask",
    "estimate_mask": "stream_widgets.estimator",
    "oracle_mask": "stream_widgets.estimator",
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
    "explore": "stream_widgets.views",
    "report": "stream_widgets.views",
}

__all__ = ["StreamConfig", *_LAZY]

__version__ = "0.1.0"


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
