"""Consistent `Trace` objects built without a model (masks from `estimate_mask` on random Q/K), large
enough that saving one takes tens of milliseconds: material for file-format and kill tests."""

from __future__ import annotations

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import estimate_mask
from stream_widgets.traces import Trace

CONFIG = StreamConfig(q_block=64, k_block=16, top_k=16, sink=16, window=64)


def synthetic_trace(seed: int, t: int = 2048, layers: int = 2, heads: int = 4) -> Trace:
    """A trace of ``"x" * t`` with random masks and weights; token-level weights for layer 0 (~8 MiB)."""
    g = torch.Generator().manual_seed(seed)
    masks = [
        estimate_mask(
            torch.randn(1, heads, t, 16, generator=g), torch.randn(1, 2, t, 16, generator=g), CONFIG
        )
        for _ in range(layers)
    ]
    width = max(m.kv_indices.shape[-1] for m in masks)
    qb = masks[0].num_q_blocks
    return Trace(
        text="x" * t,
        model_id=f"synthetic-{seed}",
        config=CONFIG,
        mode="observe",
        input_ids=torch.randint(0, 1000, (t,), generator=g),
        offsets=torch.stack([torch.arange(t), torch.arange(1, t + 1)], dim=1),
        masks=masks,
        retained_mass=torch.rand(layers, heads, t, generator=g),
        block_attention=torch.rand(layers, heads, qb, width, generator=g),
        token_weights={
            0: torch.rand(
                heads, qb, CONFIG.q_block, masks[0].kv_indices.shape[-1] * CONFIG.k_block, generator=g
            )
        },
        token_heads=tuple(range(heads)),
    )
