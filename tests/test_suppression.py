"""Attention suppression against a slow one-pass-per-sentence reference on tiny models; the real model."""

import numpy as np
import pytest
import torch

from stream_widgets.attention import install_attention, repeat_kv
from stream_widgets.config import StreamConfig
from stream_widgets.suppression import NO_EFFECT, suppression_importance, suppression_matrix
from stream_widgets.tokens import tokenize
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

KEEP_ALL = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)
SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model(request.param), tiny_tokenizer()


def _reference(model, tokenizer, text, temperature=0.6):
    """One plain pass per sentence: logits to the sentence's keys set to -inf for every query but itself."""
    tokens = tokenize(tokenizer, text)
    sentences = tokens.sentences()
    with torch.inference_mode():
        base = model(tokens.input_ids).logits[0]
    s, t = len(sentences), tokens.num_tokens
    matrix = np.full((s, s), np.nan)
    for j, suppressed in enumerate(sentences):

        def attend(call, a=suppressed.token_start, e=suppressed.token_end):
            q, h = call.query, call.query.shape[1]
            logits = q @ repeat_kv(call.key, h).transpose(-1, -2) * call.scale
            blocked = ~torch.ones(t, t, dtype=torch.bool).tril()
            blocked[:, a:e] = True
            blocked.fill_diagonal_(False)
            weights = torch.softmax(logits.masked_fill(blocked, float("-inf")), dim=-1)
            return weights @ repeat_kv(call.value, h)

        with install_attention(model, attend), torch.inference_mode():
            logits = model(tokens.input_ids, use_cache=False).logits[0]
        log_p = torch.log_softmax(base / temperature, -1)
        log_q = torch.log_softmax(logits / temperature, -1)
        per_token = torch.log((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0) + 1e-9)
        for i in range(j + 1, s):
            matrix[i, j] = per_token[sentences[i].token_start : sentences[i].token_end].mean().item()
    return matrix


def _kl(matrix):
    return np.exp(matrix) - 1e-9


def test_dense_suppression_equals_the_reference(tiny):
    model, tokenizer = tiny
    want = _reference(model, tokenizer, TEXT)
    for batch_size in (1, 3):
        got = suppression_matrix(model, tokenizer, TEXT, batch_size=batch_size)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got[np.triu_indices(len(got))]).all()  # causal: nothing on or above the diagonal
        ok = ~np.isnan(want)
        np.testing.assert_allclose(_kl(got[ok]), _kl(want[ok]), rtol=2e-3, atol=1e-6)
    assert model.config._attn_implementation == "sdpa"


def test_sparse_suppression_over_a_full_mask_equals_dense(tiny):
    model, tokenizer = tiny
    dense = suppression_matrix(model, tokenizer, TEXT)
    sparse = suppression_matrix(model, tokenizer, TEXT, KEEP_ALL, batch_size=2)
    ok = ~np.isnan(dense)
    np.testing.assert_allclose(_kl(sparse[ok]), _kl(dense[ok]), rtol=2e-3, atol=1e-6)
    pruned = suppression_matrix(model, tokenizer, TEXT, SMALL)
    assert np.isfinite(pruned[ok]).all() and not np.allclose(pruned[ok], dense[ok])


def test_importance_is_the_mean_over_later_sentences():
    matrix = np.full((4, 4), np.nan)
    matrix[1, 0], matrix[2, 0], matrix[3, 0] = -1.0, -2.0, -6.0
    matrix[2, 1], matrix[3, 1] = -3.0, -5.0
    matrix[3, 2] = NO_EFFECT
    matrix[0, 3] = 99.0  # above the diagonal: never read
    np.testing.assert_allclose(suppression_importance(matrix)[:3], [-3.0, -4.0, NO_EFFECT])
    assert np.isnan(suppression_importance(matrix)[3])
    with pytest.raises(ValueError, match="S, S"):
        suppression_importance(np.zeros((2, 3)))


def test_bad_arguments(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="no sentences"):
        suppression_matrix(model, tokenizer, "<think> </think>")
    with pytest.raises(ValueError, match="batch_size"):
        suppression_matrix(model, tokenizer, TEXT, batch_size=0)
    with pytest.raises(ValueError, match="temperature"):
        suppression_matrix(model, tokenizer, TEXT, temperature=0)


@pytest.mark.slow
def test_real_model_suppression_is_causal_and_finite(default_model):
    from tests.test_tracer import REAL_TEXT

    model, tokenizer = default_model
    matrix = suppression_matrix(model, tokenizer, REAL_TEXT)
    s = matrix.shape[0]
    below = np.tril_indices(s, k=-1)
    assert s >= 6 and np.isfinite(matrix[below]).all()
    assert (matrix[below] >= NO_EFFECT - 1e-6).all() and (matrix[below] < 5).all()
    # the next sentence feels a suppression more than sentences far away, on average
    near = np.nanmean([matrix[i + 1, i] for i in range(s - 1)])
    far = np.nanmean([matrix[i, j] for i in range(s) for j in range(i - 3)])
    assert near > far
