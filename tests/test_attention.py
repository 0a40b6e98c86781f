"""install_attention: one function per pass, the model restored, every call checked; repeat_kv and scale."""

import pytest
import torch

from stream_widgets.attention import (
    AttentionCall,
    attention_scale,
    check_traceable,
    install_attention,
    repeat_kv,
)
from stream_widgets.sparse_attention import reference_attention
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(), tiny_tokenizer()


def _ids(tokenizer):
    return tokenizer(TEXT, return_tensors="pt").input_ids


def _reference(call: AttentionCall) -> torch.Tensor:
    return reference_attention(call.query, call.key, call.value, call.scale)[0]


def test_repeat_kv_serves_consecutive_query_heads():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    out = repeat_kv(x, 6)
    assert out.shape == (2, 6, 4, 5)
    for h in range(6):
        assert torch.equal(out[:, h], x[:, h // 2])
    assert repeat_kv(x, 3) is x


def test_attention_scale():
    assert attention_scale(None, 64) == 0.125
    assert attention_scale(0.3, 64) == 0.3


def test_installed_function_sees_every_layer_and_reproduces_the_model(tiny):
    model, tokenizer = tiny
    ids = _ids(tokenizer)
    with torch.inference_mode():
        expected = model(ids).logits
    seen = []

    def attend(call):
        seen.append((call.layer, tuple(call.query.shape), tuple(call.key.shape), call.scale))
        return _reference(call)

    with install_attention(model, attend) as installed, torch.inference_mode():
        got = model(ids, use_cache=False).logits
    installed.check_one_pass()
    assert [layer for layer, *_ in seen] == [0, 1] == installed.calls
    t = ids.shape[1]
    assert seen[0][1:] == ((1, 4, t, 16), (1, 2, t, 16), 0.25)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.config._attn_implementation == "sdpa"


def test_model_restored_after_an_error_and_the_function_refuses_later_calls(tiny):
    model, tokenizer = tiny
    with pytest.raises(RuntimeError, match="boom"), install_attention(model, _reference):
        name = model.config._attn_implementation
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation(name)  # a user switching back by hand gets a clear error
    try:
        with pytest.raises(RuntimeError, match="after its pass ended"), torch.inference_mode():
            model(_ids(tokenizer), use_cache=False)
    finally:
        model.set_attn_implementation("sdpa")


def test_installations_do_not_nest(tiny):
    model, _ = tiny
    with install_attention(model, _reference):
        with pytest.raises(RuntimeError, match="cannot nest"), install_attention(model, _reference):
            pass
    assert model.config._attn_implementation == "sdpa"


def test_one_pass_check_counts_passes(tiny):
    model, tokenizer = tiny
    with install_attention(model, _reference) as installed, torch.inference_mode():
        model(_ids(tokenizer), use_cache=False)
        model(_ids(tokenizer), use_cache=False)
    with pytest.raises(ValueError, match="exactly one forward pass"):
        installed.check_one_pass()
    with install_attention(model, _reference) as nothing:
        pass
    with pytest.raises(ValueError, match=r"layers \[0, 1\] never called"):
        nothing.check_one_pass()


def test_prompt_passes_refuse_a_cache_and_padding(tiny):
    model, tokenizer = tiny
    ids = _ids(tokenizer)
    with torch.inference_mode():
        past = model(ids[:, :10], use_cache=True).past_key_values
        with pytest.raises(ValueError, match="without a KV cache"), install_attention(model, _reference):
            model(ids[:, 10:12], past_key_values=past, use_cache=True)
        mask = torch.ones_like(ids)
        mask[0, 0] = 0  # a padded sequence
        with pytest.raises(ValueError, match="explicit attention mask"), install_attention(model, _reference):
            model(ids, attention_mask=mask, use_cache=False)


def test_decoding_steps_are_allowed_when_asked_for(tiny):
    model, tokenizer = tiny
    ids = _ids(tokenizer)
    with torch.inference_mode():
        out = model(ids[:, :10], use_cache=True)
        expected = model(ids[:, :11]).logits[0, -1]
        shapes = []

        def attend(call):
            shapes.append((call.query.shape[2], call.key.shape[2]))
            q, k, v = call.query, repeat_kv(call.key, 4), repeat_kv(call.value, 4)
            probs = torch.softmax(q @ k.transpose(-1, -2) * call.scale, dim=-1)  # one new query: no mask
            return probs @ v

        with install_attention(model, attend, decoding=True):
            step = model(ids[:, 10:11], past_key_values=out.past_key_values, use_cache=True)
    assert shapes == [(1, 11), (1, 11)]
    torch.testing.assert_close(step.logits[0, -1], expected, atol=1e-4, rtol=1e-4)


def test_training_mode_with_dropout_is_refused():
    model, tokenizer = tiny_model(), tiny_tokenizer()
    model.config.attention_dropout = 0.1
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.1
    model.train()
    with pytest.raises(ValueError, match="model.eval"), install_attention(model, _reference):
        model(_ids(tokenizer), use_cache=False)


def test_sliding_window_shorter_than_the_text_is_refused():
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=0,
        layer_types=["sliding_attention", "sliding_attention"],
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    with pytest.raises(ValueError, match="sliding-window"), install_attention(model, _reference):
        with torch.inference_mode():
            model(_ids(tiny_tokenizer()), use_cache=False)


def test_soft_capped_and_non_causal_models_cannot_be_traced():
    model = tiny_model()
    model.config.attn_logit_softcapping = 50.0
    with pytest.raises(ValueError, match="soft-caps"):
        check_traceable(model)
    model.config.attn_logit_softcapping = None
    model.config.is_causal = False
    with pytest.raises(ValueError, match="not a causal"):
        check_traceable(model)
