"""A random AttentionCapture (no model): queries, keys and Stream masks of a few layers."""

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask
from stream_widgets.ruler.routes import AttentionCapture

SMALL = StreamConfig(q_block=16, k_block=8, top_k=4, sink=8, window=16)


def random_capture(t=70, heads=4, kv=2, d=8, layers=3, seed=0) -> AttentionCapture:
    g = torch.Generator().manual_seed(seed)
    cap = AttentionCapture(scale=d**-0.5)
    for _ in range(layers):
        q, k = torch.randn(heads, t, d, generator=g) * 2, torch.randn(kv, t, d, generator=g) * 2
        cap.queries.append(q)
        cap.keys.append(k)
        cap.masks.append(estimate_mask(q[None], k[None], SMALL))
    return cap
