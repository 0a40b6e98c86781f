"""Plugging an attention function into a transformers model for one pass: the one place that does it.

Every part of stream-widgets that computes attention its own way -- the Stream tracer, the dense
reference, needle-route capture, sparse decoding, attention suppression -- goes through
`install_attention`: it registers the function in transformers' `AttentionInterface` under a name of
its own, switches the model to it, and switches the model back on exit (also when the block raises).
No modeling code is forked.

The installed function receives an `AttentionCall` per layer -- post-RoPE queries ``[B, H, T, D]``,
keys and values ``[B, Hkv, Tk, D]``, the layer index and the attention scale -- and returns the output
``[B, H, T, D]``. Before calling it, the installer checks what it can model: plain causal softmax
attention, no logit soft-capping or learned sinks, no sliding window shorter than the sequence, no
attention dropout, and (for a prompt pass) queries and keys of the same length with no padding mask.

Also here, written once for every caller: `repeat_kv` (GQA/MQA head expansion), `attention_scale`
(the model's scale, or ``D ** -0.5``) and `check_traceable` (can this model be hooked at all).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "AttentionCall",
    "AttentionFunction",
    "Installed",
    "attention_scale",
    "check_traceable",
    "install_attention",
    "repeat_kv",
]

_PREFIX = "stream_widgets"
_names = itertools.count()


def repeat_kv(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, Hkv, T, D]`` -> ``[B, H, T, D]``: each KV head serves H / Hkv consecutive query heads."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def attention_scale(scaling: float | None, head_dim: int) -> float:
    """The logit scale of an attention call: the model's `scaling`, or ``head_dim ** -0.5`` when None."""
    return float(scaling) if scaling is not None else head_dim**-0.5


def check_traceable(model) -> None:
    """Raise `ValueError` if the model's attention cannot be swapped for one of ours.

    The model must dispatch its attention through transformers' `AttentionInterface` and compute plain
    causal softmax attention (no logit soft-capping, no learned sink logits). Sliding-window layers are
    checked against the sequence length at call time.
    """
    name = type(model).__name__
    if not hasattr(model, "set_attn_implementation") or not model._can_set_attn_implementation():
        raise ValueError(
            f"{name} cannot be traced: its attention does not go through transformers' AttentionInterface, "
            "so the Stream attention function cannot be plugged in"
        )
    config = model.config
    for knob in ("attn_logit_softcapping", "attention_logit_softcapping"):
        if getattr(config, knob, None):
            raise ValueError(
                f"{name} cannot be traced: it soft-caps attention logits ({knob}={getattr(config, knob)})"
            )
    if getattr(config, "is_causal", True) is False:
        raise ValueError(f"{name} cannot be traced: it is not a causal (decoder) model")


@dataclass(frozen=True)
class AttentionCall:
    """One layer's attention call, as the installed function receives it.

    Attributes:
        module: The attention module (has `layer_idx`).
        layer: Its layer index.
        query: ``[B, H, T, D]`` post-RoPE queries.
        key: ``[B, Hkv, Tk, D]`` post-RoPE keys (Tk = T for a prompt pass, more when decoding with a cache).
        value: ``[B, Hkv, Tk, D]`` values.
        scale: Logit scale.
        attention_mask: The model's mask (None for one unpadded causal prompt).
    """

    module: Any
    layer: int
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    scale: float
    attention_mask: torch.Tensor | None


AttentionFunction = Callable[[AttentionCall], torch.Tensor]
"""What `install_attention` installs: an `AttentionCall` in, the output ``[B, H, T, D]`` out."""


@dataclass
class Installed:
    """What an installation saw: the layer index of every call, in call order.

    Attributes:
        model: The model.
        calls: Layer index of each attention call made inside the block.
    """

    model: Any
    calls: list[int] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return self.model.config.get_text_config().num_hidden_layers

    def check_one_pass(self) -> None:
        """Raise `ValueError` unless exactly one forward pass went through the function (each layer once)."""
        missing = sorted(set(range(self.num_layers)) - set(self.calls))
        if missing:
            raise ValueError(
                f"layers {missing} never called the installed attention function: this model's attention "
                "does not go (entirely) through transformers' AttentionInterface, so it cannot be traced"
            )
        if len(self.calls) != self.num_layers:
            raise ValueError(
                f"{len(self.calls)} attention calls for {self.num_layers} layers: run exactly one forward "
                "pass inside the block"
            )


def _check_call(module, query, key, attention_mask, dropout, kwargs, decoding: bool) -> None:
    name = type(module).__name__
    # What the model computes differently from plain causal softmax comes first: its own mask says the
    # same thing less clearly (a sliding window arrives as an explicit mask).
    window = kwargs.get("sliding_window")
    if window and key.shape[2] > window:
        raise ValueError(
            f"{name} uses sliding-window attention ({window} tokens) and the sequence is {key.shape[2]} "
            "tokens; stream-widgets models full causal attention only"
        )
    if kwargs.get("softcap") or kwargs.get("s_aux") is not None:
        raise ValueError(f"{name} soft-caps attention logits or uses learned sinks; this cannot be modelled")
    if dropout and module.training:
        raise ValueError(f"{name} is in training mode with attention dropout; call model.eval() first")
    if not decoding:
        if query.shape[2] != key.shape[2]:
            raise ValueError(
                f"{name}: {query.shape[2]} queries against {key.shape[2]} keys; a prompt pass runs without a "
                "KV cache from earlier calls (no past_key_values)"
            )
        if attention_mask is not None:
            raise ValueError(
                f"{name}: got an explicit attention mask (padding?); stream-widgets supports one unpadded "
                "causal sequence: pass the text alone, without an attention_mask that hides tokens"
            )
    elif attention_mask is not None:
        visible = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        if not bool(visible[..., -1:, : key.shape[2]].all()):
            raise ValueError("decoding supports one unpadded sequence (the attention mask hides keys)")


def _ended(module, *args, **kwargs):
    raise RuntimeError(
        "a stream-widgets attention function was called after its pass ended; switch the model back with "
        "model.set_attn_implementation('sdpa')"
    )


@contextlib.contextmanager
def install_attention(model, fn: AttentionFunction, *, decoding: bool = False) -> Iterator[Installed]:
    """Inside the block, every attention layer of `model` runs `fn`.

    Args:
        model: A transformers causal LM whose attention goes through `AttentionInterface`.
        fn: Called once per layer and forward pass with the `AttentionCall`; returns ``[B, H, T, D]``.
        decoding: Allow cached decoding steps (fewer queries than keys, an attention mask that hides no
            key); otherwise every call must be a full prompt pass without a mask.

    Yields:
        The `Installed` record of the calls made (e.g. `Installed.check_one_pass()` after the pass).

    Raises:
        ValueError: If the model cannot be hooked (`check_traceable`) or a call is of a kind this cannot
            model (see the module docstring).
        RuntimeError: If a stream-widgets function is already installed in this model (no nesting).
    """
    check_traceable(model)
    previous = model.config._attn_implementation
    if str(previous).startswith(_PREFIX):
        raise RuntimeError(
            "a stream-widgets attention pass is already running in this model; they cannot nest"
        )
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    installed = Installed(model)

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise ValueError(f"{type(module).__name__} has no layer_idx: its layers cannot be told apart")
        _check_call(module, query, key, attention_mask, dropout, kwargs, decoding)
        installed.calls.append(int(layer))
        call = AttentionCall(
            module, int(layer), query, key, value, attention_scale(scaling, query.shape[-1]), attention_mask
        )
        return fn(call).transpose(1, 2).contiguous(), None

    name = f"{_PREFIX}_{next(_names)}"
    AttentionInterface.register(name, attention)
    # transformers hands a custom implementation no mask unless one is registered for its name: then a
    # padded input would pass unchecked. SDPA's mask builder gives None for one plain causal sequence.
    AttentionMaskInterface.register(name, sdpa_mask)
    model.set_attn_implementation(name)
    try:
        yield installed
    finally:
        model.set_attn_implementation(previous)
        AttentionInterface.register(name, _ended)  # drops the closure and what it holds
