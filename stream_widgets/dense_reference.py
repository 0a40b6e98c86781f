"""The exact reference for sentence attention: every (query, key) probability, at any length.

`dense_sentence_sums` runs the model once with an attention function installed through
`attention.install_attention`, like the Stream tracer's: the model's own causal attention for the output
(`sparse_attention.dense_attention`), and, a chunk of queries at a time, their exact softmax rows over
all causal keys, folded into ``[H, S, S]`` sentence sums before the next chunk. It is what
`anchors.sentence_attention` would give if the Stream mask kept every pair, computed without any of the
tracer's mask code, so comparing the two measures what the mask loses (and checks the tracer's
bookkeeping).

Memory: one chunk of ``[H, chunk, T]`` logits and probabilities (`max_chunk_bytes`, default 256 MiB),
plus the ``[L, H, S, S]`` sums: bounded at any T. Time: O(L H T^2 D), the price of exactness (about
a second per layer for 14 heads at 32k tokens on an H200, a minute per 8k-token pass of SmolLM2 on two
CPU cores).

`truncate_to_tokens` cuts a trace at the last sentence that fits a token budget, so that its sentences
are the first sentences of the full trace (the bundled labels still line up).
"""

from __future__ import annotations

import torch

from stream_widgets.vertical import mean_sentence_attention

__all__ = ["DEFAULT_CHUNK_BYTES", "dense_sentence_attention", "dense_sentence_sums", "truncate_to_tokens"]

DEFAULT_CHUNK_BYTES = 256 * 2**20
"""Work budget of one chunk of queries (logits and probabilities, float32)."""


def dense_sentence_sums(
    model, tokenizer, text: str, *, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed exact attention between the sentences of `text`, per layer and head.

    Args:
        model: A transformers causal LM (e.g. from `stream_widgets.load_model`).
        tokenizer: Its fast tokenizer.
        text: Prompt + chain of thought, split by `split_sentences`.
        max_chunk_bytes: Work budget of one chunk of queries; changes the peak memory, never the result.
        progress: Show a progress bar over layers.

    Returns:
        ``(sums [L, H, S, S] float32, token_counts [S] int64)``: sums of the true causal attention
        probabilities from the tokens of sentence i to those of sentence j.

    Raises:
        ValueError: If the text has no sentences or is longer than the model's context.

    Cost: one forward pass plus O(L H T^2 D) for the exact rows; O(H x chunk x T) memory per layer.
    """
    from stream_widgets.attention import install_attention, repeat_kv
    from stream_widgets.models import check_context_length
    from stream_widgets.sparse_attention import dense_attention
    from stream_widgets.tokens import sentence_ids, tokenize

    tokens = tokenize(tokenizer, text)
    t = tokens.num_tokens
    spans = tokens.sentences()
    if not spans:
        raise ValueError("the text has no sentences (empty or blank reasoning)")
    check_context_length(model, t)
    s = len(spans)
    # sentence of every token, with S as the bin of tokens outside every sentence (prompt, specials)
    token_sentence = sentence_ids(spans, t)
    bins = torch.where(token_sentence >= 0, token_sentence, s)
    layers: dict[int, torch.Tensor] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=model.config.get_text_config().num_hidden_layers, desc="exact attention", unit="layer"
        )

    def attend(call):
        q, scale = call.query, call.scale
        out, _ = dense_attention(q, call.key, call.value, scale)
        h, device = q.shape[1], q.device
        keys = repeat_kv(call.key, h)[0]  # [H, T, D]
        device_bins = bins.to(device)
        sums = torch.zeros(h, s + 1, s + 1, device=device)
        rows = max(1, max_chunk_bytes // (2 * 4 * h * t))
        positions = torch.arange(t, device=device)
        for begin in range(0, t, rows):
            end = min(begin + rows, t)
            logits = torch.einsum("hqd,hkd->hqk", q[0, :, begin:end].float(), keys[:, :end].float()) * scale
            logits.masked_fill_(
                positions[:end][None, None, :] > positions[begin:end][None, :, None], float("-inf")
            )
            probs = torch.softmax(logits, dim=-1)  # exact: a row's causal keys all lie before `end`
            per_key = torch.zeros(h, end - begin, s + 1, device=device).index_add_(
                2, device_bins[:end], probs
            )
            sums.index_add_(1, device_bins[begin:end], per_key)
        layers[call.layer] = sums[:, :s, :s].cpu()
        if bar is not None:
            bar.update(1)
        return out

    try:
        with install_attention(model, attend) as installed, torch.inference_mode():
            model.get_decoder()(
                input_ids=tokens.input_ids.to(next(model.parameters()).device), use_cache=False
            )
    finally:
        if bar is not None:
            bar.close()
    installed.check_one_pass()
    counts = torch.tensor([sp.n_tokens for sp in spans], dtype=torch.int64)
    return torch.stack([layers[i] for i in range(installed.num_layers)]), counts


def dense_sentence_attention(model, tokenizer, text: str, **options):
    """Exact ``[L, H, S, S]`` mean token attention between sentences: the reference of
    `anchors.sentence_attention` (same definition, no pruning).

    Args:
        model, tokenizer, text, options: As in `dense_sentence_sums`.

    Returns:
        float32 numpy ``[L, H, S, S]``.
    """
    sums, counts = dense_sentence_sums(model, tokenizer, text, **options)
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
