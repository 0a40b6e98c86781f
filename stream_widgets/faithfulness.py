"""Is the Stream mask faithful to the model? Dense vs Stream-sparse next-token distributions.

`fidelity` runs the model twice over one text: once in ``observe`` mode (the model's own dense
attention, so its output is the dense model's; the pass also records the retained attention mass) and
once in ``sparse`` mode (attention over the mask only). It compares the two next-token distributions at
every chain-of-thought position and at the final position (the next token after the whole text: the
Stream paper's criterion).

Memory: the final hidden states of both passes, ``[T, hidden]``, and one chunk of logits at a time
(``[chunk, vocab]``), never ``[T, vocab]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.tokens import tokenize
from stream_widgets.tracer import MaskFn, stream_attention

__all__ = ["FidelityReport", "fidelity"]

_LOGIT_ROWS = 256  # positions per chunk of logits (x vocab x 4 bytes, twice)


@dataclass(frozen=True)
class FidelityReport:
    """Dense vs sparse next-token agreement on one text.

    Attributes:
        config: The estimator settings.
        num_tokens: T, tokens in the text.
        num_positions: CoT positions compared (tokens inside ``<think>...</think>``, or the whole text
            without tags; the final position is reported separately and not counted here).
        top1_agreement: Share of those positions where dense and sparse argmax agree.
        mean_kl: Mean KL(dense || sparse) over those positions, in nats.
        p95_kl: 95th percentile of the same.
        final_top1_agrees: Whether the argmax at the last position (the next token after the text) agrees.
        final_kl: KL(dense || sparse) at the last position.
        sparsity: Mean share of causal pairs the sparse pass's masks drop (over layers and heads).
        retained_mass: Mean retained attention mass of the observe pass (over layers, heads, positions).
    """

    config: StreamConfig
    num_tokens: int
    num_positions: int
    top1_agreement: float
    mean_kl: float
    p95_kl: float
    final_top1_agrees: bool
    final_kl: float
    sparsity: float
    retained_mass: float

    def to_dict(self) -> dict:
        """JSON-ready dict (config nested)."""
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    def __str__(self) -> str:
        return (
            f"sparsity {self.sparsity:.1%}  top-1 {self.top1_agreement:.3f}  mean KL {self.mean_kl:.4f}  "
            f"p95 KL {self.p95_kl:.4f}  final top-1 {'kept' if self.final_top1_agrees else 'changed'} "
            f"(KL {self.final_kl:.4f})  retained mass {self.retained_mass:.3f}  "
            f"[{self.num_positions} positions of {self.num_tokens} tokens]"
        )


def _cot_positions(text: str, offsets: torch.Tensor) -> torch.Tensor:
    """bool ``[T]``: tokens that start inside the chain of thought (``think_region``), final one excluded."""
    from stream_widgets.sentences import think_region

    start, end = think_region(text)
    inside = (offsets[:, 0] >= start) & (offsets[:, 0] < end) & (offsets[:, 1] > offsets[:, 0])
    inside[-1] = False
    return inside


def _final_hidden(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[0]


def fidelity(
    model,
    tokenizer,
    text: str,
    config: StreamConfig | None = None,
    *,
    mask_fn: MaskFn | None = None,
    progress: bool = False,
) -> FidelityReport:
    """Compare the model's dense and Stream-sparse next-token distributions over a text's CoT.

    Args:
        model: A transformers causal LM whose logits are ``lm_head(final hidden state)`` (Llama, Qwen2,
            Mistral, ...; models that scale or soft-cap final logits are refused).
        tokenizer: Its fast tokenizer.
        text: Prompt + chain of thought (``<think>`` tags, if present, delimit the CoT).
        config: Estimator settings; `StreamConfig()` if None.
        mask_fn: Mask builder; `estimate_mask` if None (`oracle_mask` for the exact block oracle).
        progress: Progress bars over layers.

    Returns:
        The `FidelityReport`.

    Cost: two forward passes (observe and sparse) plus T x vocab logits computed in chunks.
    """
    from stream_widgets.models import check_context_length

    for field in ("final_logit_softcapping", "logit_scale"):
        if getattr(model.config, field, None):
            raise ValueError(f"fidelity() compares lm_head outputs and does not model {field}")
    config = config or StreamConfig()
    tokens = tokenize(tokenizer, text)
    input_ids, offsets = tokens.input_ids, tokens.offsets
    if input_ids.shape[1] < 2:
        raise ValueError("fidelity() needs a text of at least 2 tokens (next-token predictions to compare)")
    check_context_length(model, input_ids.shape[1])
    input_ids = input_ids.to(next(model.parameters()).device)

    with stream_attention(model, config, "observe", mask_fn=mask_fn, progress=progress) as observed:
        dense = _final_hidden(model, input_ids)
    with stream_attention(model, config, "sparse", mask_fn=mask_fn, progress=progress) as sparse_run:
        sparse = _final_hidden(model, input_ids)
    retained = observed.result().retained_mass
    masks = sparse_run.result().masks

    positions = torch.nonzero(_cot_positions(text, offsets)).flatten().tolist() + [input_ids.shape[1] - 1]
    head = model.get_output_embeddings()
    kls, agrees = [], []
    with torch.inference_mode():
        for begin in range(0, len(positions), _LOGIT_ROWS):
            rows = torch.tensor(positions[begin : begin + _LOGIT_ROWS], device=dense.device)
            log_p = torch.log_softmax(head(dense[rows]).float(), dim=-1)
            log_q = torch.log_softmax(head(sparse[rows]).float(), dim=-1)
            kls.append((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0).cpu())
            agrees.append((log_p.argmax(-1) == log_q.argmax(-1)).cpu())
    kl, agree = torch.cat(kls), torch.cat(agrees)
    cot_kl, cot_agree = kl[:-1], agree[:-1]
    if cot_kl.numel() == 0:
        raise ValueError("the text has no chain-of-thought positions to compare (it is one token long?)")
    return FidelityReport(
        config=config,
        num_tokens=int(input_ids.shape[1]),
        num_positions=int(cot_kl.numel()),
        top1_agreement=cot_agree.float().mean().item(),
        mean_kl=cot_kl.mean().item(),
        p95_kl=torch.quantile(cot_kl.double(), 0.95).item(),
        final_top1_agrees=bool(agree[-1]),
        final_kl=kl[-1].item(),
        sparsity=torch.stack([m.sparsity() for m in masks]).mean().item(),
        retained_mass=retained.mean().item(),
    )
