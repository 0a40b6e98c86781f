"""The tracer: observe and sparse passes on tiny and real models against eager attention (Trace files:
test_traces.py)."""

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.tokens import tokenize
from stream_widgets.tracer import stream_attention, trace
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
KEEP_ALL = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)  # >= all blocks of TEXT


# ----------------------------------------------------------------- tiny random models
@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model(request.param), tiny_tokenizer()


def _eager_attentions(model, ids):
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            return model(ids, output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")


def test_tiny_observe_leaves_output_unchanged_and_records_true_probabilities(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, TEXT).input_ids
    with torch.inference_mode():
        dense = model(ids).logits
    with stream_attention(model, SMALL, "observe"), torch.inference_mode():
        observed = model(ids, use_cache=False).logits
    assert model.config._attn_implementation == "sdpa"  # restored
    torch.testing.assert_close(observed, dense, atol=1e-5, rtol=0)

    result = trace(model, tokenizer, TEXT, SMALL, layers=[0, 1], heads=[0, 3])
    eager = _eager_attentions(model, ids)
    for layer in (0, 1):
        for head in (0, 3):
            keep = result.masks[layer].to_dense()[0, head]
            true = eager.attentions[layer][0, head]
            torch.testing.assert_close(
                result.token_attention(layer, head), torch.where(keep, true, 0.0), atol=1e-6, rtol=0
            )
            torch.testing.assert_close(
                result.retained_mass[layer, head], (true * keep).sum(-1), atol=1e-5, rtol=0
            )
    assert result.sparsity().mean() > 0.2
    assert (result.retained_mass < 1.0 + 1e-5).all() and (result.retained_mass > 0).all()


def test_tiny_sentence_sums_and_block_attention_match_reference(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, TEXT).input_ids
    result = trace(model, tokenizer, TEXT, SMALL, layers=[0, 1])
    sid = torch.full((ids.shape[1],), -1)
    for s in result.sentences:
        sid[s.token_start : s.token_end] = s.index
    assert len(result.sentences) >= 4 and (sid >= 0).sum() > 10
    onehot = (
        torch.nn.functional.one_hot(sid.clamp_min(0), len(result.sentences)).float() * (sid >= 0)[:, None]
    )
    for layer in (0, 1):
        for head in range(4):
            weights = result.token_attention(layer, head)
            expected = onehot.T @ weights @ onehot
            torch.testing.assert_close(
                result.sentence_attention_sum[layer, head], expected, atol=1e-5, rtol=1e-5
            )
            # block attention sums back to the retained mass of each query block
            mass = result.retained_mass[layer, head]
            per_block = torch.nn.functional.pad(
                mass, (0, 8 * result.masks[layer].num_q_blocks - mass.shape[0])
            )
            torch.testing.assert_close(
                result.block_attention[layer, head].sum(-1),
                per_block.view(-1, 8).sum(-1),
                atol=1e-5,
                rtol=1e-5,
            )


def test_short_sentences_and_gaps_sum_like_the_dense_reference(tiny):
    """Several sentences per query block, key blocks cut by sentence boundaries, tokens in no sentence:
    the sums equal onehot^T (true probabilities x mask) onehot from eager attention."""
    model, tokenizer = tiny
    ids = tokenize(tokenizer, TEXT).input_ids
    t = ids.shape[1]
    generator = torch.Generator().manual_seed(3)
    sid = torch.cumsum(torch.rand(t, generator=generator) < 0.3, 0)
    sid = torch.where(torch.rand(t, generator=generator) < 0.15, -1, sid)
    num = int(sid.max()) + 1
    with stream_attention(model, SMALL, sentence_ids=sid, num_sentences=num) as recorder:
        with torch.inference_mode():
            model(ids, use_cache=False)
    result = recorder.result()
    eager = _eager_attentions(model, ids)
    onehot = torch.nn.functional.one_hot(sid.clamp_min(0), num).float() * (sid >= 0)[:, None]
    for layer in (0, 1):
        keep = result.masks[layer].to_dense()[0]
        expected = onehot.T @ torch.where(keep, eager.attentions[layer][0], 0.0) @ onehot  # [H, S, S]
        assert expected.abs().sum() > 0
        torch.testing.assert_close(result.sentence_attention_sum[layer], expected, atol=1e-5, rtol=1e-5)


def test_tiny_sparse_keep_all_equals_dense_and_pruning_changes_output(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, TEXT).input_ids
    with torch.inference_mode():
        dense = model(ids).logits
        with stream_attention(model, KEEP_ALL, "sparse") as recorder:
            full = model(ids, use_cache=False).logits
        assert all(m.sparsity().item() == 0.0 for m in recorder.result().masks)
        with stream_attention(model, SMALL, "sparse"):
            pruned = model(ids, use_cache=False).logits
    torch.testing.assert_close(full, dense, atol=1e-5, rtol=0)
    assert (pruned - dense).abs().max() > 1e-3


def test_implementation_restored_after_error(tiny):
    model, _ = tiny
    with pytest.raises(RuntimeError, match="boom"), stream_attention(model, SMALL):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_bad_arguments(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="mode must be one of"):
        trace(model, tokenizer, TEXT, SMALL, mode="dense")
    with pytest.raises(ValueError, match="layers \\[7\\] out of range"):
        trace(model, tokenizer, TEXT, SMALL, layers=[7])
    with pytest.raises(ValueError, match="context of 8 tokens"):
        short = tiny_model(max_positions=8)
        trace(short, tokenizer, TEXT, SMALL)


# ----------------------------------------------------------------- the real default model
REAL_TEXT = (
    "Problem: What is the sum of the first ten positive integers?\n<think>\n"
    "Okay, so I need to add the numbers from 1 to 10. One way is the formula n(n+1)/2. "
    "Here n is 10, so 10 times 11 is 110, and half of that is 55. "
    "Let me check by pairing: 1 and 10 make 11, 2 and 9 make 11, and there are five such pairs. "
    "Five pairs of 11 is 55 again. "
    "Wait, should I include zero? No, zero is not positive, and adding it changes nothing anyway. "
    "So both methods agree, and I am confident the sum is 55.\n</think>\nThe sum is 55."
)
REAL = StreamConfig(q_block=16, k_block=16, top_k=2, sink=16, window=32)


@pytest.mark.slow
def test_real_observe_is_exact(default_model):
    model, tokenizer = default_model
    ids = tokenize(tokenizer, REAL_TEXT).input_ids
    assert 120 <= ids.shape[1] <= 500
    with torch.inference_mode():
        dense = model(ids).logits
        with stream_attention(model, REAL, "observe"):
            observed = model(ids, use_cache=False).logits
    assert (observed - dense).abs().max().item() <= 1e-4
    layers, heads = [0, 14, 29], [0, 4, 8]
    result = trace(model, tokenizer, REAL_TEXT, REAL, layers=layers, heads=heads)
    assert 0.1 < result.sparsity().mean().item() < 0.95
    eager = _eager_attentions(model, ids)
    for layer in layers:
        for head in heads:
            keep = result.masks[layer].to_dense()[0, head]
            true = eager.attentions[layer][0, head]
            assert (
                result.token_attention(layer, head) - torch.where(keep, true, 0.0)
            ).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_real_sparse_keep_all_equals_dense(default_model):
    model, tokenizer = default_model
    ids = tokenize(tokenizer, REAL_TEXT).input_ids
    keep_all = StreamConfig(q_block=16, k_block=16, top_k=64, sink=16, window=32)
    with torch.inference_mode():
        dense = model(ids).logits
        with stream_attention(model, keep_all, "sparse"):
            sparse = model(ids, use_cache=False).logits
    assert (sparse - dense).abs().max().item() <= 1e-4


def test_empty_or_non_text_input_is_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="empty"):
        trace(model, tokenizer, "")
    with pytest.raises(TypeError, match="str"):
        trace(model, tokenizer, None)


def test_blank_reasoning_traces_with_no_sentences_and_anchors_say_why(tiny):
    from stream_widgets.anchors import thought_anchors

    model, tokenizer = tiny
    for text in ("<think></think>", "<think>   \n </think> The answer is ten."):
        result = trace(model, tokenizer, text, SMALL)
        assert result.sentences == [] and result.sentence_attention_sum.shape == (2, 4, 0, 0)
        with pytest.raises(ValueError, match="no sentences"):
            thought_anchors(result)


def test_a_text_the_config_does_not_prune_warns(tiny):
    model, tokenizer = tiny
    with pytest.warns(UserWarning, match="nothing is pruned"):
        trace(model, tokenizer, TEXT, StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8))


def test_nan_weights_are_refused_with_the_layer(tiny):
    import copy

    model, tokenizer = tiny
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.model.layers[1].self_attn.k_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 1: k holds NaN"):
        trace(broken, tokenizer, TEXT, SMALL)


def test_too_many_sentences_are_refused_before_the_pass(tiny, monkeypatch):
    from stream_widgets import tracer

    model, tokenizer = tiny
    monkeypatch.setattr(tracer, "MAX_SENTENCE_SUM_BYTES", 100)
    with pytest.raises(ValueError, match=r"attention sums would take .* GiB"):
        trace(model, tokenizer, TEXT, SMALL)
    assert trace(model, tokenizer, TEXT, SMALL, sentences=False).sentence_attention_sum is None
