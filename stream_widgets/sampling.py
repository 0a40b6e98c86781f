"""Seeded, batched sampling from prefixes of one sequence, sharing one KV cache (the rollouts of
`stream_widgets.importance` and the generation of the own-model corpus).

* `prefill` runs the whole sequence once and keeps every layer's keys and values; `cached` makes a fresh
  cache of any prefix of it for a batch of rows (a view, copied only when a new token is appended), so
  every prefix of a trace continues from one pass over the trace.
* `continue_rows` decodes a batch of rows, one token per step, dropping finished rows from the batch and
  the cache (`DynamicCache.batch_select_indices`). The rows may continue different prefixes: then they
  share a left-padded copy of the cache (the padding masked, each row at its own positions), so that
  short continuations of many prefixes fill one batch on a GPU.
* `nucleus_pick` draws the next token by top-p (nucleus) sampling, inverting the CDF of the sorted
  probabilities with one uniform number per row; each row's number comes from its own CPU generator
  (`row_generator(seed, stream, row)`), so a row's samples do not depend on the batch it runs in or on the
  device's random number generator: the same seed gives the same samples on the same device.
* `sample_continuations` puts them together for one prompt.

The model's own attention runs every step (no attention function is installed); the KV-cache keyword of
the transformers version in use is `ruler.decoding.CACHE_ARG`, as in RULER's greedy decoding.

Memory: the prefix cache (``2 x L x Hkv x T x D`` floats) once, plus one copy per row of a batch while it
decodes; where that explodes, lower `batch_size`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from stream_widgets.ruler.decoding import CACHE_ARG, cache_of

__all__ = [
    "CUDA_BATCH",
    "TEMPERATURE",
    "TOP_P",
    "batch_size_for",
    "cached",
    "check_sampling",
    "continue_rows",
    "end_token_ids",
    "nucleus_pick",
    "prefill",
    "row_generator",
    "sample_continuations",
]

TEMPERATURE = 0.6
"""Default sampling temperature (Thought Anchors' setting)."""
TOP_P = 0.95
"""Default nucleus (top-p) mass (Thought Anchors' setting)."""
CUDA_BATCH = 256
"""Most rows of one decoding batch on CUDA by default (`batch_size_for`)."""


def prefill(model, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values ``[1, Hkv, T, D]`` of every layer for `input_ids` ``[T]``: the cache every prefix
    of the sequence crops (`cached`). One forward pass of the decoder (no logits)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.get_decoder()(input_ids=input_ids[None].to(device), use_cache=True)
    cache = cache_of(out)
    return [(layer.keys, layer.values) for layer in cache.layers]


def cached(model, kv, length: int, rows: int):
    """A fresh `DynamicCache` holding the first `length` tokens of `kv`, for a batch of `rows`."""
    from transformers import DynamicCache

    data = [
        (k[:, :, :length].expand(rows, -1, -1, -1), v[:, :, :length].expand(rows, -1, -1, -1)) for k, v in kv
    ]
    return DynamicCache(ddp_cache_data=data, config=model.config)


def row_generator(seed: int, stream: int, row: int) -> torch.Generator:
    """The CPU generator of sample `row` of prefix `stream` (independent of device and batch)."""
    state = np.random.SeedSequence([seed, stream, row]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def nucleus_pick(logits: torch.Tensor, generators, temperature: float, top_p: float) -> torch.Tensor:
    """Next token per row of ``[B, V]`` logits: greedy at temperature 0, else a nucleus sample drawn by
    inverting the CDF of the sorted probabilities with one uniform number per row."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True, stable=True)
    cumulative = ordered.cumsum(dim=-1)
    ordered = ordered * ((cumulative - ordered) < top_p)  # the smallest head with mass >= top_p
    cumulative = ordered.cumsum(dim=-1)
    u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators]).to(probs.device)
    choice = (cumulative < (u * cumulative[:, -1])[:, None]).sum(dim=-1).clamp_max(probs.shape[-1] - 1)
    return order.gather(1, choice[:, None])[:, 0]


def _left_padded(model, kv, lengths: Sequence[int]):
    """A `DynamicCache` whose row r holds the first ``lengths[r]`` tokens of `kv`, right-aligned (left
    padding), and the ``[R, max(lengths)]`` attention mask that hides the padding."""
    from transformers import DynamicCache

    width = max(lengths)
    need = torch.as_tensor(lengths, dtype=torch.int64)
    offsets = torch.arange(width, dtype=torch.int64)[None, :] - (width - need)[:, None]  # [R, W]
    visible = offsets >= 0
    if not kv or width == 0:
        return None, visible.to(torch.int64)
    device = kv[0][0].device
    index = offsets.clamp(min=0).to(device)
    hide = ~visible.to(device)[:, None, :, None]

    def rows_of(x: torch.Tensor) -> torch.Tensor:  # [1, H, T, D] -> [R, H, W, D]
        out = x[0][:, index].transpose(0, 1)
        return out.masked_fill(hide, 0)

    data = [(rows_of(k), rows_of(v)) for k, v in kv]
    return DynamicCache(ddp_cache_data=data, config=model.config), visible.to(torch.int64)


def continue_rows(
    model,
    kv,
    lengths: Sequence[int],
    feed: torch.Tensor,
    generators: Sequence[torch.Generator | None],
    *,
    max_new_tokens: int,
    done: Callable[[list[int]], bool],
    temperature: float,
    top_p: float,
) -> list[list[int]]:
    """Continue several prefixes of one sequence in one batch: row r continues ``sequence[:lengths[r]]``
    (cached in `kv`) followed by its feed tokens, with ``generators[r]``.

    `feed` is ``[F]`` (the same tokens for every row) or ``[R, F]``. Rows of different lengths share a
    left-padded cache; each token keeps its own position (``position_ids``) and the padding is masked, so
    a row decodes as it would alone. Finished rows leave the batch (and its cache).
    """
    device = next(model.parameters()).device
    rows = len(generators)
    if len(lengths) != rows:
        raise ValueError(f"{len(lengths)} lengths for {rows} generators")
    if rows == 0:
        return []
    feed = torch.as_tensor(feed, dtype=torch.int64)
    step_ids = (feed[None].expand(rows, -1) if feed.dim() == 1 else feed).to(device)
    if len(set(lengths)) == 1:  # one prefix: a view of the cache, no padding, no mask
        cache = cached(model, kv, lengths[0], rows) if kv else None
        mask = None
    else:
        cache, mask = _left_padded(model, kv, lengths)
        mask = mask.to(device)
    position = torch.as_tensor(lengths, dtype=torch.int64, device=device)[:, None]
    tokens: list[list[int]] = [[] for _ in range(rows)]
    active = list(range(rows))
    with torch.inference_mode():
        while active:
            width = step_ids.shape[1]
            extra = {}
            if mask is not None:
                ones = torch.ones(len(active), width, dtype=mask.dtype, device=device)
                mask = torch.cat([mask, ones], dim=1)
                extra = {
                    "attention_mask": mask,
                    "position_ids": position + torch.arange(width, device=device)[None, :],
                }
            if cache is not None:
                extra[CACHE_ARG] = cache
            out = model(input_ids=step_ids, use_cache=True, logits_to_keep=1, **extra)
            if cache is None:
                cache = cache_of(out)
            position = position + width
            picked = nucleus_pick(
                out.logits[:, -1], [generators[i] for i in active], temperature, top_p
            ).tolist()
            keep = []
            for j, i in enumerate(active):
                tokens[i].append(int(picked[j]))
                if not done(tokens[i]) and len(tokens[i]) < max_new_tokens:
                    keep.append(j)
            if len(keep) < len(active):
                if not keep:
                    break
                chosen = torch.tensor(keep, device=device)
                cache.batch_select_indices(chosen)
                position = position[chosen]
                if mask is not None:
                    mask = mask[chosen]
            active = [active[j] for j in keep]
            step_ids = torch.tensor([[picked[j]] for j in keep], device=device)
    return tokens


def batch_size_for(model, batch_size: int | None, tokens: int | None = None) -> int:
    """`batch_size`, checked. None: 8 on the CPU; on CUDA, up to `CUDA_BATCH` rows, as many as half the
    free GPU memory holds KV caches of `tokens` positions for (64 when `tokens` is not given)."""
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        return batch_size
    device = next(model.parameters()).device
    if device.type != "cuda":
        return 8
    if tokens is None:
        return 64
    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    itemsize = next(model.parameters()).element_size()
    row_bytes = 2 * config.num_hidden_layers * heads * head_dim * itemsize * tokens
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(CUDA_BATCH, free // 2 // max(row_bytes, 1))))


def check_sampling(temperature, top_p, max_new_tokens) -> None:
    """Raise `ValueError` for a sampling setting out of range."""
    if not (isinstance(temperature, int | float) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")


def end_token_ids(tokenizer) -> frozenset[int]:
    """The tokens that end a model's answer: its eos token and the usual chat end markers it knows."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        token = tokenizer.convert_tokens_to_ids(special)
        if isinstance(token, int) and token != tokenizer.unk_token_id and token >= 0:
            ids.add(token)
    return frozenset(ids)


def sample_continuations(
    model,
    input_ids: torch.Tensor,
    num_samples: int,
    *,
    seed: int = 0,
    max_new_tokens: int = 512,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    stop_ids: Sequence[int] = (),
    batch_size: int | None = None,
    stream: int = 0,
) -> list[list[int]]:
    """Sample `num_samples` continuations of one prompt, in batches sharing the prompt's KV cache.

    Args:
        model: A transformers causal LM.
        input_ids: int64 ``[T]`` (or ``[1, T]``) the prompt, T >= 1.
        num_samples: Continuations to draw.
        seed: Sample r draws from a generator seeded by ``(seed, stream, r)``: the same seed gives the
            same samples on the same device, whatever `batch_size`.
        max_new_tokens: Most tokens per continuation.
        temperature: 0 for greedy decoding; else the softmax temperature.
        top_p: Nucleus mass (1 = plain sampling).
        stop_ids: Tokens that end a continuation (kept in it).
        batch_size: Continuations per batch (default 8 on the CPU, 64 on CUDA).
        stream: A second seed component (the prefix index, for resampling).

    Returns:
        One list of new token ids per sample.

    Cost: one prompt pass, then ``num_samples x max_new_tokens`` token steps at most, in batches.
    """
    check_sampling(temperature, top_p, max_new_tokens)
    ids = torch.as_tensor(input_ids).reshape(-1).to(torch.int64)
    if ids.numel() < 1:
        raise ValueError("input_ids is empty: give at least one prompt token")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    batch = batch_size_for(model, batch_size)
    stops = frozenset(int(i) for i in stop_ids)
    kv = prefill(model, ids[:-1]) if ids.numel() > 1 else None
    out: list[list[int]] = []
    for first in range(0, num_samples, batch):
        generators = [row_generator(seed, stream, r) for r in range(first, min(first + batch, num_samples))]
        out += continue_rows(
            model,
            kv or [],
            [ids.numel() - 1] * len(generators),
            ids[-1:],
            generators,
            max_new_tokens=max_new_tokens,
            done=lambda row: row[-1] in stops,
            temperature=temperature,
            top_p=top_p,
        )
    return out
