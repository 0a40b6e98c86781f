"""Greedy decoding with the model's own attention or with Stream-sparse attention, with a KV cache.

Used by RULER scoring, where answers are a few tokens after a long prompt:

* dense: the prompt pass runs in Stream ``observe`` mode (the model's own attention, so the output is
  the dense model's) and keeps its KV cache; every new token then runs the model's usual attention;
* sparse: the prompt pass runs in Stream ``sparse`` mode, so the cache holds the keys and values of the
  sparse model; every new token then attends, per head, to the sink blocks, the blocks of its local
  window and the `top_k` other key blocks with the highest max q.k -- the exact block top-k for one
  query (the hierarchical search pays off for T queries at once, not for one).

Re-running the full sparse pass for every new token would be the other choice; it costs a prompt pass
per token (minutes at 8k tokens on a CPU) and differs only in that Stream picks one key set per block of
`q_block` queries, where a decoding step picks one for its own query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from stream_widgets.attention import install_attention, repeat_kv
from stream_widgets.config import StreamConfig

__all__ = ["CACHE_ARG", "cache_of", "decode_attention", "greedy_tokens", "sparse_step_attention"]


def _cache_argument() -> str:
    """The name transformers gives the KV-cache argument (``cache`` since 5.x, ``past_key_values`` before)."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_ARG = _cache_argument()
"""The name of a transformers model's KV-cache keyword argument (for every cached decoding loop)."""


def cache_of(output):
    """The KV cache a transformers forward pass returned (``cache`` since 5.x, ``past_key_values`` before)."""
    return getattr(output, "cache", None) or output.past_key_values


def sparse_step_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, config: StreamConfig
) -> torch.Tensor:
    """Attention of the newest query over its Stream key blocks.

    Args:
        query: ``[B, H, 1, D]`` the new token's post-RoPE queries (it sits at position T - 1).
        key: ``[B, Hkv, T, D]`` all keys so far, the new one included.
        value: ``[B, Hkv, T, D]``.
        scale: Logit scale.
        config: Block sizes, `sink`, `window`, `top_k`.

    Returns:
        ``[B, H, 1, D]``: softmax over the kept keys only (renormalised), times their values.

    Cost O(T x D) per head.
    """
    b, h, q_len, _ = query.shape
    if q_len != 1:
        raise ValueError(f"sparse decoding takes one new token at a time, got {q_len}")
    t, kb = key.shape[2], config.k_block
    k, v = repeat_kv(key, h), repeat_kv(value, h)
    logits = torch.einsum("bhqd,bhkd->bhqk", query.float(), k.float())[:, :, 0] * scale  # [B, H, T]
    nb = -(-t // kb)
    scores = (
        torch.nn.functional.pad(logits, (0, nb * kb - t), value=float("-inf")).view(b, h, nb, kb).amax(-1)
    )
    blocks = torch.arange(nb, device=query.device)
    fixed = (blocks < config.sink_blocks) | (blocks >= max(0, t - 1 - config.window) // kb)
    scores = scores.masked_fill(fixed, float("-inf"))
    top = scores.topk(min(config.top_k, int((~fixed).sum())), dim=-1).indices
    keep = fixed.expand(b, h, nb).clone()
    keep.scatter_(-1, top, True)
    keep_keys = keep.repeat_interleave(kb, dim=-1)[..., :t]
    probs = torch.softmax(logits.masked_fill(~keep_keys, float("-inf")), dim=-1)
    return torch.einsum("bhk,bhkd->bhd", probs, v.float())[:, :, None].to(query.dtype)


@contextlib.contextmanager
def decode_attention(model, config: StreamConfig) -> Iterator[None]:
    """Inside the block, the model's cached decoding steps use `sparse_step_attention`."""

    def attend(call):
        return sparse_step_attention(call.query, call.key, call.value, call.scale, config)

    with install_attention(model, attend, decoding=True):
        yield


def greedy_tokens(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    prefill: Callable[[], contextlib.AbstractContextManager],
    step: Callable[[], contextlib.AbstractContextManager],
    stop_ids: set[int],
) -> list[int]:
    """Greedy continuation of a prompt with a KV cache.

    Args:
        model: A transformers causal LM.
        input_ids: int64 ``[1, T]`` the prompt.
        max_new_tokens: Most tokens to generate.
        prefill: Makes the context the prompt pass runs in (e.g. `stream_attention(...)`).
        step: Makes the context every decoding step runs in.
        stop_ids: Token ids that end the answer (kept in the output).

    Returns:
        The new token ids.
    """
    device = next(model.parameters()).device
    tokens: list[int] = []
    with torch.inference_mode():
        with prefill():
            out = model(input_ids=input_ids.to(device), use_cache=True, logits_to_keep=1)
        past, nxt = cache_of(out), int(out.logits[0, -1].argmax())
        while True:
            tokens.append(nxt)
            if nxt in stop_ids or len(tokens) >= max_new_tokens:
                return tokens
            with step():
                out = model(
                    input_ids=torch.tensor([[nxt]], device=device), use_cache=True, **{CACHE_ARG: past}
                )
            past, nxt = cache_of(out), int(out.logits[0, -1].argmax())
