"""Model loading: local folders, errors, the context check, the cached default model."""

import json

import pytest
import torch

from stream_widgets.models import (
    DEFAULT_MODEL_ID,
    _write_cache,
    check_context_length,
    default_gguf_path,
    load_model,
    model_id,
)
from tests.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def saved_model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    tiny_model(request.param).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path, request.param


def test_load_local_folder(saved_model):
    path, kind = saved_model
    model, tokenizer = load_model(path)
    assert model.config.model_type == kind
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert tokenizer.is_fast
    assert model_id(model) == str(path)
    reference = tiny_model(kind)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_uncached_hub_id_does_not_download():
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        load_model("stream-widgets-test/no-such-model")


def test_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ValueError, match="unknown or unsupported architecture"):
        load_model(tmp_path)


def test_not_a_causal_lm(tmp_path):
    from transformers import T5Config

    T5Config(d_model=32, num_layers=1, num_heads=2, d_ff=64, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="cannot be loaded as a causal LM"):
        load_model(tmp_path)


def test_context_length_check():
    model = tiny_model(max_positions=64)
    check_context_length(model, 64)
    with pytest.raises(ValueError, match="context of 64 tokens.*shorten the text by 1 tokens"):
        check_context_length(model, 65)


def test_cache_write_is_atomic_and_leaves_no_temp(tmp_path):
    target = tmp_path / "copy"
    _write_cache(tiny_model(), tiny_tokenizer(), target)
    assert (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]
    _write_cache(tiny_model(), tiny_tokenizer(), target)  # a second writer finds the copy there
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]


def test_default_gguf_is_found():
    path = default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50 * 2**20


@pytest.mark.slow
def test_default_model(default_model):
    model, tokenizer = default_model
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert model_id(model) == DEFAULT_MODEL_ID
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert tokenizer.decode(model(ids).logits[0, -1].argmax()).strip() == "Paris"
