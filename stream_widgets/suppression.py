"""Attention suppression (Thought Anchors' third method): what happens downstream when no one may attend
to a sentence.

For every sentence j of a trace, one forward pass runs with all attention TO sentence j's tokens removed,
at every layer and head and for every query (the model's causal mask otherwise unchanged; a query always
keeps its own key, so no row is left empty). Its next-token distributions are compared with the
unsuppressed pass at every token: KL(P || Q) of the two softmaxes at temperature 0.6. Following the
Thought Anchors code (``get_suppression_KL_matrix``), the per-token figure is ``log(KL + 1e-9)`` and

* ``matrix[i, j]`` = its mean over the tokens of sentence i, for i > j (NaN on and above the diagonal,
  which suppression cannot reach causally or which is the suppressed sentence itself);
* the suppression importance of sentence j = the mean of column j over the later sentences.

Both are in log-nats: -20.7 means "no effect" (KL = 0), values near 0 mean KL ~ 1 nat.

Passes are batched (`batch_size` suppressed sentences per forward pass) and built on the same attention
machinery as the tracer (`attention.install_attention`):

* ``config=None``: the model's own dense attention, with a boolean mask (memory B x T x T booleans per
  layer call, plus what the SDPA kernel needs);
* a `StreamConfig`: attention over the Stream masks of the unsuppressed sparse pass (estimated once, then
  reused by every suppressed pass), minus the suppressed keys; O(T) memory per query block, so it runs at
  long context on a GPU. Baseline and suppressed passes then both use the sparse model.

Cost: S + 1 forward passes (S / batch_size batches) plus the logits of the tokens after each suppressed
sentence (T x vocab multiply-adds per pass, in chunks of `_LOGIT_ROWS` positions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stream_widgets.attention import AttentionCall, install_attention, repeat_kv
from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask
from stream_widgets.sentences import Sentence
from stream_widgets.sparse_attention import masked_chunks
from stream_widgets.tokens import tokenize

__all__ = ["NO_EFFECT", "TEMPERATURE", "suppression_importance", "suppression_matrix"]

TEMPERATURE = 0.6
"""Softmax temperature of the compared next-token distributions (Thought Anchors' setting)."""
_EPSILON = 1e-9
NO_EFFECT = float(np.log(_EPSILON))
"""The per-token figure of a KL of 0: log(1e-9), about -20.7."""
_LOGIT_ROWS = 256


def _log_kl(base_logits: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log(KL(P || Q) + 1e-9) per row, P and Q the temperature softmaxes of ``[N, V]`` logits."""
    log_p = torch.log_softmax(base_logits.float() / temperature, dim=-1)
    log_q = torch.log_softmax(logits.float() / temperature, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)
    return torch.log(kl + _EPSILON)


class _Suppressor:
    """The attention function of a batch of suppressed passes: row b may not attend to keys [start_b, end_b)."""

    def __init__(self, masks: Sequence[StreamMask] | None) -> None:
        self.masks = masks
        self.ranges: torch.Tensor | None = None  # int64 [B, 2]

    def __call__(self, call: AttentionCall) -> torch.Tensor:
        q, k, v, scale = call.query, call.key, call.value, call.scale
        b, h, t, _ = q.shape
        start, end = (x.to(q.device)[:, None] for x in self.ranges.unbind(1))  # [B, 1]
        if self.masks is None:
            keys = torch.arange(t, device=q.device)
            hidden = (keys >= start) & (keys < end)  # [B, T] keys nobody may read
            allowed = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()[None] & ~hidden[:, None, :]
            allowed |= torch.eye(t, dtype=torch.bool, device=q.device)[None]  # a query keeps itself
            return torch.nn.functional.scaled_dot_product_attention(
                q, repeat_kv(k, h), repeat_kv(v, h), attn_mask=allowed[:, None], scale=scale
            )
        return self._sparse(q, k, v, scale, self.masks[call.layer], start, end)

    @staticmethod
    def _sparse(q, k, v, scale, mask: StreamMask, start, end) -> torch.Tensor:
        b, h, t, d = q.shape
        expanded = StreamMask(
            mask.kv_num_blocks.to(q.device).expand(b, -1, -1),
            mask.kv_indices.to(q.device).expand(b, -1, -1, -1),
            mask.q_block,
            mask.k_block,
            mask.seq_len,
        )
        out = torch.empty(b, h, mask.num_q_blocks, mask.q_block, d, dtype=q.dtype, device=q.device)
        for chunk in masked_chunks(q, k, expanded, scale, v=v):
            key_pos = chunk.key_pos  # [B, H, n, K * kb]
            hidden = (key_pos >= start[:, :, None, None]) & (key_pos < end[:, :, None, None])
            own = key_pos[:, :, :, None, :] == chunk.query_pos[None, None, :, :, None]
            logits = chunk.logits.masked_fill(hidden[:, :, :, None, :] & ~own, float("-inf"))
            top = logits.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)
            weights = torch.exp(logits - top)
            probs = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).tiny)
            out[:, :, chunk.rows] = torch.einsum("bhnqk,bhnkd->bhnqd", probs, chunk.values).to(out.dtype)
        return out.reshape(b, h, -1, d)[:, :, :t]


def _baseline(model, input_ids: torch.Tensor, config: StreamConfig | None):
    """Final hidden states ``[T, hidden]`` of the unsuppressed pass, and its Stream masks (sparse only)."""
    if config is None:
        with torch.inference_mode():
            return model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[0], None
    from stream_widgets.tracer import stream_attention

    with stream_attention(model, config, "sparse") as recorder, torch.inference_mode():
        hidden = model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[0]
    return hidden, recorder.result().masks


def suppression_matrix(
    model,
    tokenizer,
    text: str,
    config: StreamConfig | None = None,
    *,
    batch_size: int | None = None,
    temperature: float = TEMPERATURE,
    progress: bool = False,
) -> np.ndarray:
    """The causal sentence x sentence effect of suppressing attention to each sentence (module docstring).

    Args:
        model: A transformers causal LM whose attention goes through `AttentionInterface`.
        tokenizer: Its fast tokenizer.
        text: Prompt + chain of thought; its sentences are `split_sentences(text)`.
        config: None for the model's dense attention; a `StreamConfig` to run over Stream masks.
        batch_size: Suppressed sentences per forward pass; default 4 on the CPU, 16 on CUDA.
        temperature: Softmax temperature of the compared distributions (> 0).
        progress: Show a progress bar over batches.

    Returns:
        float64 ``[S, S]``: ``matrix[i, j]`` = mean over sentence i's tokens of log(KL + 1e-9) with
        sentence j suppressed, for i > j; NaN for i <= j.

    Raises:
        ValueError: For a text without sentences, longer than the model's context, or a bad argument.
    """
    from stream_widgets.models import check_context_length

    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    device = next(model.parameters()).device
    if batch_size is None:
        batch_size = 16 if device.type == "cuda" else 4
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    tokens = tokenize(tokenizer, text)
    sentences = tokens.sentences()
    if not sentences:
        raise ValueError("the text has no sentences (empty or blank reasoning): nothing to suppress")
    check_context_length(model, tokens.num_tokens)
    input_ids = tokens.input_ids.to(device)
    base_hidden, masks = _baseline(model, input_ids, config)
    head = model.get_output_embeddings()
    s = len(sentences)
    matrix = np.full((s, s), np.nan)
    suppressor = _Suppressor(masks)
    batches = range(0, s, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="suppression", unit="batch")
    with install_attention(model, suppressor), torch.inference_mode():
        for first in batches:
            batch = sentences[first : first + batch_size]
            suppressor.ranges = torch.tensor([[x.token_start, x.token_end] for x in batch])
            ids = input_ids.expand(len(batch), -1)
            hidden = model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state
            for row, suppressed in enumerate(batch):
                matrix[:, suppressed.index] = _column(
                    head, base_hidden, hidden[row], sentences, suppressed, temperature
                )
    return matrix


def _column(head, base_hidden, hidden, sentences: Sequence[Sentence], suppressed: Sentence, temperature):
    """Column j of the matrix: per later sentence, the mean log KL over its tokens."""
    column = np.full(len(sentences), np.nan)
    later = sentences[suppressed.index + 1 :]
    if not later:
        return column
    begin, end = later[0].token_start, later[-1].token_end
    per_token = torch.empty(end - begin, device=hidden.device)
    for row in range(begin, end, _LOGIT_ROWS):
        rows = slice(row, min(row + _LOGIT_ROWS, end))
        per_token[rows.start - begin : rows.stop - begin] = _log_kl(
            head(base_hidden[rows]), head(hidden[rows]), temperature
        )
    per_token = per_token.cpu().double().numpy()
    for sentence in later:
        if sentence.token_end > sentence.token_start:
            column[sentence.index] = per_token[
                sentence.token_start - begin : sentence.token_end - begin
            ].mean()
    return column


def suppression_importance(matrix) -> np.ndarray:
    """Suppression importance of every sentence: the mean of its column over the later sentences.

    Args:
        matrix: ``[S, S]`` from `suppression_matrix`.

    Returns:
        float64 ``[S]``; NaN for the last sentence (nothing comes after it).
    """
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"matrix should be [S, S], got shape {a.shape}")
    below = np.tril(np.ones(a.shape, dtype=bool), k=-1)
    values = np.where(below, a, np.nan)
    counts = (~np.isnan(values)).sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
