"""Sparse tracing of a real model: one forward pass, Stream masks at every layer, O(T) records.

`trace` runs the model once with the Stream attention function installed (`attention.install_attention`,
transformers' attention registry; no modeling code is forked). At every layer the function receives the
post-RoPE queries ``[B, H, T, D]`` and keys ``[B, Hkv, T, D]``, estimates the Stream mask from them, and

* ``mode="observe"``: runs the model's ordinary causal attention (`dense_attention`: a fused kernel that
  also returns each query's log-sum-exp), so the model's output is unchanged, and records the model's
  true probabilities exp(scale q.k - lse) at the kept entries only (on CUDA their sums come straight
  from one Triton kernel, `kernels.kept_sums`, unless token-level weights are asked for);
* ``mode="sparse"``: computes attention over the kept entries only, renormalised, as a sparse-attention
  model would, and records those probabilities.

`stream_attention` is the same pass as a context manager, for callers that run the model themselves
(fidelity, RULER); its `Recorder` gives the pass's `Recording`.

Memory: the masks and records are O(T) per layer and head (plus O(S^2) sentence sums); the work buffers
of one chunk of query blocks are bounded (64 MiB on the CPU); nothing of size T x T is allocated.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from stream_widgets.attention import AttentionCall, Installed, install_attention
from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask
from stream_widgets.sparse_attention import dense_attention, masked_chunks, sparse_attention
from stream_widgets.tokens import sentence_ids, tokenize
from stream_widgets.traces import Trace

__all__ = [
    "MAX_SENTENCE_SUM_BYTES",
    "MODES",
    "MaskFn",
    "Recorder",
    "Recording",
    "input_device",
    "stream_attention",
    "trace",
]

MODES = ("observe", "sparse")
# Inputs at least this long get a progress bar over layers by default.
_PROGRESS_TOKENS = 2048
MAX_SENTENCE_SUM_BYTES = 4 * 2**30
"""Largest ``[L, H, S, S]`` float32 sentence sums a trace may hold (4 GiB: 30 x 9 heads at ~2,000
sentences); beyond it `trace` refuses before the pass, with the figure."""

MaskFn = Callable[[torch.Tensor, torch.Tensor, StreamConfig], StreamMask]
"""Builds a layer's mask from its queries and keys: `estimate_mask`, or `oracle_mask` for the exact reference."""


@dataclass(frozen=True)
class Recording:
    """What one Stream pass recorded (batch of one), layer by layer.

    Attributes:
        masks: One `StreamMask` ``[1, H, T, T]`` per layer (CPU).
        retained_mass: float32 ``[L, H, T]``: sum of each query's recorded probabilities.
        block_attention: float32 ``[L, H, Qb, K]``: probability summed over each query block and kept key
            block (K: the widest layer's mask width; 0 past a layer's own width).
        token_weights: Layer -> float32 ``[H', Qb, q_block, K_l * k_block]`` for the layers asked for.
        sentence_attention_sum: float32 ``[L, H, S, S]`` summed probability between sentences, or None.
    """

    masks: list[StreamMask]
    retained_mass: torch.Tensor
    block_attention: torch.Tensor
    token_weights: dict[int, torch.Tensor] = field(default_factory=dict)
    sentence_attention_sum: torch.Tensor | None = None


class Recorder:
    """The attention function of one Stream pass: estimates each layer's mask and keeps the O(T) records.

    Args:
        config: Estimator settings.
        mode: ``"observe"`` or ``"sparse"``.
        mask_fn: Mask builder.
        token_layers: Layers whose token-level weights to keep.
        token_heads: Query heads kept for those layers (all if None).
        sentence_ids: int64 ``[T]`` sentence of every token (-1 for none), or None for no sentence sums.
        num_sentences: S.
        progress: A progress bar over `progress` layers (0: none).
    """

    def __init__(
        self,
        config: StreamConfig,
        mode: str,
        mask_fn: MaskFn,
        token_layers: Sequence[int] = (),
        token_heads: Sequence[int] | None = None,
        sentence_ids: torch.Tensor | None = None,
        num_sentences: int = 0,
        progress: int = 0,
    ) -> None:
        self.config, self.mode, self.mask_fn = config, mode, mask_fn
        self.token_layers = set(token_layers)
        self.token_heads = None if token_heads is None else list(token_heads)
        self.sentence_ids = sentence_ids
        self.num_sentences = num_sentences
        self.installed: Installed | None = None
        self.masks: dict[int, StreamMask] = {}
        self.retained_mass: dict[int, torch.Tensor] = {}
        self.block_attention: dict[int, torch.Tensor] = {}
        self.token_weights: dict[int, torch.Tensor] = {}
        self.sentence_sums: dict[int, torch.Tensor] = {}
        self.progress = None
        if progress:
            from tqdm.auto import tqdm

            self.progress = tqdm(total=progress, desc=f"tracing ({mode})", unit="layer")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def __call__(self, call: AttentionCall) -> torch.Tensor:
        """Attention of one layer: ``[B, H, T, D]`` out, records kept."""
        # Each layer runs on the device of its queries and keys (layers may sit on different GPUs under
        # an accelerate device map); Triton launches on the current device, so make it that one.
        guard = torch.cuda.device(call.query.device) if call.query.is_cuda else contextlib.nullcontext()
        with guard:
            return self._attend(call)

    def _attend(self, call: AttentionCall) -> torch.Tensor:
        query, key, value, scale, layer = call.query, call.key, call.value, call.scale, call.layer
        try:
            mask = self.mask_fn(query, key, self.config)
        except ValueError as error:
            raise ValueError(f"layer {layer}: {error}") from error
        b, h, t, _ = query.shape
        heads = list(range(h)) if self.token_heads is None else self.token_heads
        tokens = None
        if layer in self.token_layers:
            tokens = torch.zeros(
                len(heads), mask.num_q_blocks, mask.q_block, mask.kv_indices.shape[-1] * mask.k_block
            )
        sums = None
        if self.sentence_ids is not None and self.num_sentences > 0:
            s = self.num_sentences
            sums = torch.zeros(b * h * s * s, device=query.device)  # [B, H, S, S], flat
            sid = self._padded_sentence_ids(mask, query.device)
        fused = self.mode == "observe" and tokens is None and _fused_sums_available(query)
        if not fused:
            # Filled chunk by chunk on the device and copied to the host once per layer: a copy per chunk
            # would stall the GPU hundreds of times per layer at long T.
            mass = torch.zeros(b, h, mask.num_q_blocks * mask.q_block, device=query.device)
            blocks = torch.zeros(b, h, mask.num_q_blocks, mask.kv_indices.shape[-1], device=query.device)

        if self.mode == "observe":
            out, lse = dense_attention(query, key, value, scale)
            if fused:
                # The sums straight from q, k and lse, no probabilities written (kernels/kept_sums.py).
                from stream_widgets.kernels.kept_sums import kept_sums

                sentences = {} if sums is None else dict(sentence_ids=sid, sums=sums, num_sentences=s)
                mass, blocks = kept_sums(query, key, lse, mask, scale, **sentences)
                pieces = ()
            else:
                lse_blocks = torch.nn.functional.pad(lse, (0, mask.num_q_blocks * mask.q_block - t))
                lse_blocks = lse_blocks.view(b, h, mask.num_q_blocks, mask.q_block)
                # exp(logit - lse) in place: the chunk's logits become the true probabilities.
                pieces = (
                    (c, c.logits.sub_(lse_blocks[:, :, c.rows, :, None]).exp_(), None)
                    for c in masked_chunks(query, key, mask, scale)
                )
        else:
            out = torch.empty(
                b, h, mask.num_q_blocks, mask.q_block, query.shape[-1], dtype=query.dtype, device=query.device
            )
            pieces = sparse_attention(query, key, value, mask, scale)

        qb, kb = mask.q_block, mask.k_block
        for chunk, probs, chunk_out in pieces:
            n = probs.shape[2]
            if chunk_out is not None:
                out[:, :, chunk.rows] = chunk_out.to(out.dtype)
            per_block = probs.view(b, h, n, qb, -1, kb).sum(dim=-1)  # [B, H, n, qb, K]
            mass[:, :, chunk.rows.start * qb : chunk.rows.stop * qb] = per_block.sum(-1).reshape(b, h, n * qb)
            blocks[:, :, chunk.rows] = per_block.sum(dim=3)
            if tokens is not None:
                tokens[:, chunk.rows] = probs[0, heads].cpu()
            if sums is not None:
                self._add_sentence_sums(sums, sid, chunk, probs, per_block)

        self.masks[layer] = mask.to("cpu")
        self.retained_mass[layer] = mass[..., :t].cpu()
        self.block_attention[layer] = blocks.cpu()
        if tokens is not None:
            self.token_weights[layer] = tokens
        if sums is not None:
            s = self.num_sentences
            self.sentence_sums[layer] = sums.view(b, h, s, s).cpu()
        if self.progress is not None:
            self.progress.update(1)
        if self.mode == "sparse":
            out = out.reshape(b, h, -1, query.shape[-1])[:, :, :t]
        return out

    def _add_sentence_sums(self, sums, sid, chunk, probs, per_block) -> None:
        """Add a chunk's kept probabilities into the flat ``[B, H, S, S]`` sentence-pair sums.

        Sentences are runs of tokens. Each query block's probabilities are first summed per run of its
        queries in one sentence (a query block runs through a few sentences, R), so the scattered adds,
        the slow part, are R per key block instead of q_block. Most kept key blocks lie inside one
        sentence: those add their block sums; only blocks a sentence boundary cuts add key by key.
        Pairs outside any sentence add 0 to an in-range bin (no compaction, no shared overflow bin).
        Reads R (and which blocks are cut) back to the host: on CUDA this path serves only the layers
        whose token weights are kept, or a machine without Triton (`kernels.kept_sums` does the rest).
        """
        b, h, n, qb, width = per_block.shape
        s = self.num_sentences
        device = sums.device
        q_sid = sid[chunk.query_pos]  # [n, qb]
        in_sentence = q_sid >= 0
        first_q = torch.where(in_sentence, q_sid, s).amin(dim=1, keepdim=True)  # [n, 1]: s if none
        run_of = torch.where(in_sentence, q_sid - first_q, -1)  # [n, qb]: -1 outside any sentence
        r = int(run_of.max()) + 1
        if r == 0:  # no query of the chunk is in a sentence
            return
        runs = (run_of[..., None] == torch.arange(r, device=device)).to(probs.dtype)  # [n, qb, R] one-hot
        # A run no query of the block falls in sums to 0; its sentence is clamped into range.
        run_sid = (first_q + torch.arange(r, device=device)).clamp(max=s - 1)  # [n, R]
        k_sid = sid[chunk.key_pos].view(b, h, n, width, -1)  # [B, H, n, K, k_block]
        first = k_sid.amin(dim=-1)
        whole = first == k_sid.amax(dim=-1)  # the block's keys are in one sentence (or all in none)
        per_run = torch.matmul(runs.mT, per_block)  # [B, H, n, R, K]
        head_base = (torch.arange(b * h, device=device) * (s * s)).view(b, h, 1, 1, 1)
        index = head_base + run_sid[None, None, :, :, None] * s + first.clamp(min=0)[:, :, :, None, :]
        keep = ((first >= 0) & whole)[:, :, :, None, :]
        sums.index_add_(0, index.reshape(-1), torch.where(keep, per_run, 0.0).reshape(-1))
        split = (~whole).nonzero(as_tuple=True)  # (b, h, n, K) of the blocks a boundary cuts: few
        if split[0].numel():
            token_probs = probs.view(b, h, n, qb, width, -1)[
                split[0], split[1], split[2], :, split[3]
            ]  # [M, qb, kb]
            token_runs = torch.bmm(runs[split[2]].mT, token_probs)  # [M, R, kb]
            keys = k_sid[split]  # [M, kb]
            index = (split[0] * h + split[1])[:, None, None] * (s * s) + (
                run_sid[split[2]][:, :, None] * s + keys.clamp(min=0)[:, None, :]
            )
            keep = (keys >= 0)[:, None, :]
            sums.index_add_(0, index.reshape(-1), torch.where(keep, token_runs, 0.0).reshape(-1))

    def _padded_sentence_ids(self, mask: StreamMask, device) -> torch.Tensor:
        """int64 sentence id of every position up to the padded block ends (-1: no sentence or padding)."""
        length = max(mask.num_q_blocks * mask.q_block, mask.num_k_blocks * mask.k_block)
        sid = torch.full((length,), -1, dtype=torch.int64, device=device)
        sid[: self.sentence_ids.shape[0]] = self.sentence_ids.to(device)
        return sid

    # ----------------------------------------------------------------- results
    def result(self) -> Recording:
        """The records as ``[L, H, ...]`` tensors (batch of one), after checking the pass saw every layer once."""
        assert self.installed is not None, "the recorder was not installed (use stream_attention)"
        self.installed.check_one_pass()
        layers = range(self.installed.num_layers)
        width = max(self.block_attention[i].shape[-1] for i in layers)
        blocks = [self.block_attention[i] for i in layers]
        blocks = [
            b if b.shape[-1] == width else torch.nn.functional.pad(b, (0, width - b.shape[-1]))
            for b in blocks
        ]
        return Recording(
            masks=[self.masks[i] for i in layers],
            retained_mass=torch.stack([self.retained_mass[i][0] for i in layers]),
            block_attention=torch.stack([b[0] for b in blocks]),
            token_weights={i: self.token_weights[i] for i in sorted(self.token_weights)},
            sentence_attention_sum=self._stacked_sentence_sums(layers),
        )

    def _stacked_sentence_sums(self, layers: range) -> torch.Tensor | None:
        if self.sentence_ids is None:
            return None
        if self.num_sentences == 0:  # blank reasoning: no sentence, nothing to sum
            return torch.zeros(len(layers), self.retained_mass[0].shape[1], 0, 0)
        return torch.stack([self.sentence_sums[i][0] for i in layers])


def _fused_sums_available(query: torch.Tensor) -> bool:
    """Whether observe mode can sum the kept probabilities with the Triton kernel (CUDA, Triton installed)."""
    if not query.is_cuda:
        return False
    from stream_widgets.estimator_cuda import triton_available

    return triton_available()


def input_device(model) -> torch.device:
    """Where the model's input ids go: the device its token embedding runs on.

    Under an accelerate device map the embedding's hook names its execution device (its weight may be
    offloaded, on the ``meta`` device); otherwise it is the embedding weight's device.
    """
    embedding = model.get_input_embeddings()
    hook = getattr(embedding, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    return embedding.weight.device


@contextlib.contextmanager
def stream_attention(
    model,
    config: StreamConfig | None = None,
    mode: str = "observe",
    *,
    mask_fn: MaskFn | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    sentence_ids: torch.Tensor | None = None,
    num_sentences: int = 0,
    progress: bool = False,
) -> Iterator[Recorder]:
    """Run the model with Stream attention inside the block (one forward pass); yields its `Recorder`.

    The model runs the Stream attention function inside the block and its own afterwards, also when the
    block raises. Call `Recorder.result()` after the pass.

    Args:
        model: A transformers causal LM whose attention goes through `AttentionInterface`.
        config: Estimator settings; `StreamConfig()` if None.
        mode: ``"observe"`` or ``"sparse"`` (see the module docstring).
        mask_fn: ``(q, k, config) -> StreamMask``; `estimate_mask` if None (`oracle_mask` for the exact
            reference).
        layers: Layers whose token-level weights to keep (none if None).
        heads: Query heads whose token-level weights to keep (all if None).
        sentence_ids: int64 ``[T]`` sentence of every token (-1 for none), to accumulate sentence sums.
        num_sentences: S, the number of sentences.
        progress: Show a progress bar over layers.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mask_fn is None:
        from stream_widgets.estimator import estimate_mask

        mask_fn = estimate_mask
    text_config = model.config.get_text_config()
    for name, chosen, bound in (
        ("layers", layers, text_config.num_hidden_layers),
        ("heads", heads, text_config.num_attention_heads),
    ):
        bad = [i for i in (chosen or ()) if not 0 <= int(i) < bound]
        if bad:
            raise ValueError(f"{name} {bad} out of range: the model has {bound} {name}")
    recorder = Recorder(
        config or StreamConfig(),
        mode,
        mask_fn,
        layers or (),
        heads,
        sentence_ids,
        num_sentences,
        text_config.num_hidden_layers if progress else 0,
    )
    try:
        with install_attention(model, recorder) as installed:
            recorder.installed = installed
            yield recorder
    finally:
        recorder.close()


def trace(
    model,
    tokenizer,
    text: str,
    config: StreamConfig | None = None,
    mode: str = "observe",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    sentences: bool = True,
    *,
    mask_fn: MaskFn | None = None,
    progress: bool | None = None,
) -> Trace:
    """Trace one forward pass of `model` over `text` with Stream masks at every layer and head.

    Args:
        model: A transformers causal LM (see `stream_widgets.load_model`).
        tokenizer: Its (fast) tokenizer.
        text: Prompt + chain of thought.
        config: Estimator settings; `StreamConfig()` if None.
        mode: ``"observe"``: the model's own attention, recording its true probabilities at the kept
            entries; ``"sparse"``: attention over the kept entries only (renormalised).
        layers: Layers whose token-level weights are kept (``[H', Qb, q_block, K * k_block]`` each);
            none if None.
        heads: Heads kept for those layers; all if None.
        sentences: Split the text into sentences and accumulate the ``[L, H, S, S]`` attention sums.
        mask_fn: Mask builder ``(q, k, config) -> StreamMask``; `estimate_mask` if None.
        progress: Progress bar over layers; by default on for inputs of >= 2,048 tokens.

    Returns:
        The `Trace`.

    Raises:
        ValueError: For an unknown mode, layers/heads out of range, a text longer than the model's
            context, or a model that cannot be traced.

    Cost: one forward pass plus, per layer, the mask estimate and O(retained) work; memory O(T) per layer.
    """
    from stream_widgets.models import check_context_length, model_id

    config = config or StreamConfig()
    tokens = tokenize(tokenizer, text)
    t = tokens.num_tokens
    if t == 0:
        raise ValueError(
            "the text is empty (no tokens): give trace() the prompt and chain of thought to trace"
        )
    check_context_length(model, t)
    spans = tokens.sentences() if sentences else []
    text_config = model.config.get_text_config()
    sum_bytes = 4 * text_config.num_hidden_layers * text_config.num_attention_heads * len(spans) ** 2
    if sum_bytes > MAX_SENTENCE_SUM_BYTES:
        raise ValueError(
            f"the text has {len(spans):,} sentences: their [L, H, S, S] attention sums would take "
            f"{sum_bytes / 2**30:.1f} GiB (limit {MAX_SENTENCE_SUM_BYTES / 2**30:.0f} GiB); trace a shorter "
            "text, or pass sentences=False to record the masks and retained mass only"
        )
    device = input_device(model)
    with (
        stream_attention(
            model,
            config,
            mode,
            mask_fn=mask_fn,
            layers=layers,
            heads=heads,
            sentence_ids=sentence_ids(spans, t) if sentences else None,
            num_sentences=len(spans),
            progress=t >= _PROGRESS_TOKENS if progress is None else progress,
        ) as recorder,
        torch.inference_mode(),
    ):
        model.get_decoder()(input_ids=tokens.input_ids.to(device), use_cache=False)
    recording = recorder.result()
    num_heads = recording.retained_mass.shape[1]
    if all(bool((m.sparsity() == 0).all()) for m in recording.masks) and t > config.q_block:
        warnings.warn(
            f"the text is {t:,} tokens: at this length the config keeps every key block (sink {config.sink}, "
            f"window {config.window}, top_k {config.top_k} x k_block {config.k_block}), so nothing is pruned; "
            "pass a smaller top_k or window to see what Stream would drop",
            UserWarning,
            stacklevel=2,
        )
    return Trace(
        text=text,
        model_id=model_id(model),
        config=config,
        mode=mode,
        input_ids=tokens.input_ids[0].cpu(),
        offsets=tokens.offsets,
        masks=recording.masks,
        retained_mass=recording.retained_mass,
        block_attention=recording.block_attention,
        token_weights=recording.token_weights,
        token_heads=()
        if not layers
        else tuple(range(num_heads))
        if heads is None
        else tuple(int(h) for h in heads),
        sentences=spans,
        sentence_attention_sum=recording.sentence_attention_sum,
    )
