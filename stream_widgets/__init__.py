"""stream-widgets: sparse (Stream) attention interpretability for long chain-of-thought traces.

Importing the package loads no model, opens no socket and patches nothing; heavy optional parts
(transformers, spaCy, Bokeh) are imported where they are used.
"""

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask, oracle_mask
from stream_widgets.mask import StreamMask

__all__ = [
    "StreamConfig",
    "StreamMask",
    "estimate_mask",
    "oracle_mask",
]

__version__ = "0.1.0"
