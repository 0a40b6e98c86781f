"""The dense reference for sentence attention: every (query, key) probability, on short inputs.

`dense_sentence_attention` runs the model once with a plain, obviously correct attention function
(`sparse_attention.reference_attention`: the full causal softmax), installed with
`attention.install_attention` like the Stream tracer's, and folds each layer's ``[H, T, T]`` probabilities into
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

from stream_widgets.vertical import mean_sentence_attention

__all__ = ["dense_sentence_attention", "dense_sentence_sums", "truncate_to_tokens"]

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
    from stream_widgets.attention import install_attention
    from stream_widgets.sparse_attention import reference_attention
    from stream_widgets.tokens import sentence_ids, tokenize

    tokens = tokenize(tokenizer, text)
    t = tokens.num_tokens
    if t > _MAX_DENSE_TOKENS:
        raise ValueError(
            f"the text is {t:,} tokens; the dense reference allocates [H, T, T] per layer and is limited to "
            f"{_MAX_DENSE_TOKENS:,} tokens: trace long texts with stream_widgets.tracer.trace instead"
        )
    spans = tokens.sentences()
    if not spans:
        raise ValueError("the text has no sentences (empty or blank reasoning)")
    s = len(spans)
    # sentence of every token, with S as the bin of tokens outside every sentence (prompt, specials)
    token_sentence = sentence_ids(spans, t)
    bins = torch.where(token_sentence >= 0, token_sentence, s)
    layers: dict[int, torch.Tensor] = {}

    def attend(call):
        out, _, probs = reference_attention(
            call.query, call.key, call.value, call.scale
        )  # probs [1, H, T, T]
        h = probs.shape[1]
        device_bins = bins.to(probs.device)
        rows = torch.zeros(h, s + 1, t, device=probs.device).index_add_(1, device_bins, probs[0])
        sums = torch.zeros(h, s + 1, s + 1, device=probs.device).index_add_(2, device_bins, rows)
        layers[call.layer] = sums[:, :s, :s].cpu()
        return out.to(call.query.dtype)

    with install_attention(model, attend) as installed, torch.inference_mode():
        model.get_decoder()(input_ids=tokens.input_ids.to(next(model.parameters()).device), use_cache=False)
    installed.check_one_pass()
    num_layers = installed.num_layers
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
