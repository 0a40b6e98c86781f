"""The dense reference for sentence attention: every (query, key) probability, on short inputs.

`dense_sentence_attention` runs the model once with a plain, obviously correct attention function
(`sparse_attention.reference_attention`: the full causal softmax), registered in transformers'
`AttentionInterface` like the Stream tracer's, and folds each layer's ``[H, T, T]`` probabilities into
``[H, S, S]`` sentence sums before the next layer runs. It is what `anchors.sentence_attention` would
give if the Stream mask kept every pair, computed without any of the tracer's code, so comparing the
two measures what the mask loses (and checks the tracer's bookkeeping).

Memory: one layer's ``[H, T, T]`` float32 probabilities (plus logits) at a time: 9 heads x 2k tokens is
about 150 MiB each, 9 x 8k is 2.3 GiB each. For short traces only; Stream exists for the long ones.

`truncate_to_tokens` cuts a trace at the last sentence that fits a token budget, so that its sentences
are the first sentences of the full trace (the bundled labels still line up).
"""

from __future__ import annotations

import torch

from stream_widgets.anchors import mean_sentence_attention

__all__ = ["dense_sentence_attention", "dense_sentence_sums", "truncate_to_tokens"]

_IMPLEMENTATION = "stream_widgets_dense_reference"
_MAX_DENSE_TOKENS = 8192


def dense_sentence_sums(model, tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed dense attention between the sentences of `text`, per layer and head.

    Args:
        model: A transformers causal LM (e.g. from `stream_widgets.load_model`).
        tokenizer: Its fast tokenizer.
        text: Prompt + chain of thought, split by `split_sentences`.

    Returns:
        ``(sums [L, H, S, S] float32, token_counts [S] int64)``: sums of the true causal attention
        probabilities from the tokens of sentence i to those of sentence j.

    Raises:
        ValueError: If the text is longer than 8,192 tokens (use the Stream tracer) or has no sentences.

    Cost: one forward pass with O(T^2) attention per layer; O(H T^2) memory for one layer at a time.
    """
    from transformers import AttentionInterface

    from stream_widgets.sparse_attention import reference_attention
    from stream_widgets.tracer import sentence_ids, tokenize

    input_ids, offsets = tokenize(tokenizer, text)
    t = input_ids.shape[1]
    if t > _MAX_DENSE_TOKENS:
        raise ValueError(
            f"the text is {t:,} tokens; the dense reference allocates [H, T, T] per layer and is limited to "
            f"{_MAX_DENSE_TOKENS:,} tokens: trace long texts with stream_widgets.tracer.trace instead"
        )
    spans, token_sentence = sentence_ids(text, offsets)
    if not spans:
        raise ValueError("the text has no sentences (empty or blank reasoning)")
    s = len(spans)
    # sentence of every token, with S as the bin of tokens outside every sentence (prompt, specials)
    bins = torch.where(token_sentence >= 0, token_sentence, s)
    layers: dict[int, torch.Tensor] = {}

    def attend(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
        out, _, probs = reference_attention(query, key, value, scale)  # probs [1, H, T, T]
        h = probs.shape[1]
        device_bins = bins.to(probs.device)
        rows = torch.zeros(h, s + 1, t, device=probs.device).index_add_(1, device_bins, probs[0])
        sums = torch.zeros(h, s + 1, s + 1, device=probs.device).index_add_(2, device_bins, rows)
        layers[module.layer_idx] = sums[:, :s, :s].cpu()
        return out.to(query.dtype).transpose(1, 2).contiguous(), None

    AttentionInterface.register(_IMPLEMENTATION, attend)
    previous = model.config._attn_implementation
    model.set_attn_implementation(_IMPLEMENTATION)
    try:
        with torch.inference_mode():
            model.get_decoder()(input_ids=input_ids.to(next(model.parameters()).device), use_cache=False)
    finally:
        model.set_attn_implementation(previous)
    num_layers = model.config.get_text_config().num_hidden_layers
    missing = sorted(set(range(num_layers)) - set(layers))
    if missing:
        raise ValueError(
            f"layers {missing} did not call the attention interface: this model cannot be referenced"
        )
    counts = torch.tensor([sp.n_tokens for sp in spans], dtype=torch.int64)
    return torch.stack([layers[i] for i in range(num_layers)]), counts


def dense_sentence_attention(model, tokenizer, text: str):
    """Dense ``[L, H, S, S]`` mean token attention between sentences: the reference of
    `anchors.sentence_attention` (same definition, no pruning).

    Args:
        model, tokenizer, text: As in `dense_sentence_sums`.

    Returns:
        float64 numpy ``[L, H, S, S]``.
    """
    sums, counts = dense_sentence_sums(model, tokenizer, text)
    return mean_sentence_attention(sums, counts)


def truncate_to_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """Cut `text` at the end of the last sentence that ends within the first `max_tokens` tokens.

    The sentences of the result are the first sentences of `text` (same `split_sentences` output), so
    per-sentence labels of the full trace still apply. A text that fits is returned unchanged.

    Raises:
        ValueError: If `max_tokens` < 1 or not even the first sentence fits.
    """
    from stream_widgets.sentences import split_sentences

    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    limit = offsets[max_tokens][0]  # first character of the first token past the budget
    ends = [s.char_end for s in split_sentences(text) if s.char_end <= limit]
    if not ends:
        raise ValueError(f"not even the first sentence fits in {max_tokens} tokens; raise max_tokens")
    return text[: ends[-1]]
