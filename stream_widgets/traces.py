"""`Trace`: what one Stream tracing pass records, and its versioned file format.

A trace is O(T) and small: per layer the Stream mask, per (layer, head, query) the retained attention
mass, per (layer, head, query block, kept key block) the summed attention, optional token-level
weights for chosen layers and heads, and the sentence x sentence attention sums.

File format (one ``.safetensors`` file): the tensors, plus in the safetensors header metadata a
``format`` tag, an integer ``version``, a JSON ``meta`` entry (text, model id, config, mode, sentences,
...) and a ``checksum`` (SHA-256 of the metadata and of every tensor's name, dtype, shape and bytes).
`Trace.save` replaces the file in one step (`stream_widgets.storage.write_file`), so a reader never
sees half a file and a killed save leaves the old one; `Trace.load` checks the checksum and the
structure (schema, shapes, index ranges) and names the file and the problem when it refuses one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask
from stream_widgets.sentences import Sentence

__all__ = ["FORMAT", "VERSION", "Trace"]

FORMAT = "stream-widgets/trace"
VERSION = 2
"""Version 2 adds the checksum; version 1 files (no checksum) still load, checked for structure."""


@dataclass(eq=False)
class Trace:
    """One traced forward pass over a text (batch of one).

    Attributes:
        text: The traced text.
        model_id: Hub id or path of the model.
        config: The estimator settings the masks were made with.
        mode: ``"observe"`` (true probabilities of the dense model) or ``"sparse"`` (attention
            renormalised over the mask).
        input_ids: int64 ``[T]`` token ids.
        offsets: int64 ``[T, 2]`` character span of every token in `text` (``(0, 0)`` for special tokens).
        masks: One `StreamMask` ``[1, H, T, T]`` per layer.
        retained_mass: float32 ``[L, H, T]``: sum of each query's recorded probabilities (1.0 in sparse
            mode; in observe mode the share of its true attention the mask keeps).
        block_attention: float32 ``[L, H, Qb, K]``: probability summed over the queries of each query
            block and the keys of each kept key block; column j goes with ``masks[l].kv_indices[0, h, :, j]``
            (0 for padding; K is the widest layer's mask width).
        token_weights: layer -> float32 ``[len(token_heads), Qb, q_block, K_l * k_block]``: every query's
            probability on every key of its kept blocks (column ``j * k_block + r`` is key
            ``kv_indices[j] * k_block + r``; 0 where not kept). Only for the layers asked for.
        token_heads: The query heads stored in `token_weights`.
        sentences: The text's sentences with token spans (empty if not split).
        sentence_attention_sum: float32 ``[L, H, S, S]``: summed probability from the tokens of sentence i
            to the tokens of sentence j (kept entries only), or None. Divide by token counts for means.
    """

    text: str
    model_id: str
    config: StreamConfig
    mode: str
    input_ids: torch.Tensor
    offsets: torch.Tensor
    masks: list[StreamMask]
    retained_mass: torch.Tensor
    block_attention: torch.Tensor
    token_weights: dict[int, torch.Tensor] = field(default_factory=dict)
    token_heads: tuple[int, ...] = ()
    sentences: list[Sentence] = field(default_factory=list)
    sentence_attention_sum: torch.Tensor | None = None

    # ----------------------------------------------------------------- shape facts
    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_layers(self) -> int:
        return len(self.masks)

    @property
    def num_heads(self) -> int:
        return int(self.retained_mass.shape[1])

    def sparsity(self) -> torch.Tensor:
        """float64 ``[L, H]``: share of causal (query, key) pairs each layer's mask drops, per head."""
        return torch.stack([m.sparsity(per_head=True)[0] for m in self.masks])

    def sentence_token_counts(self) -> torch.Tensor:
        """int64 ``[S]``: tokens per sentence, to turn `sentence_attention_sum` into means."""
        return torch.tensor([s.n_tokens or 0 for s in self.sentences], dtype=torch.int64)

    def token_attention(self, layer: int, head: int) -> torch.Tensor:
        """float32 ``[T, T]``: the recorded token-level weights of one head, dense (0 where pruned).

        Allocates T x T: for inspection of short traces. Raises `KeyError` for a layer or head that was
        not recorded (pass ``layers=`` / ``heads=`` to `trace`).
        """
        if layer not in self.token_weights:
            raise KeyError(
                f"layer {layer} has no token-level weights; recorded: {sorted(self.token_weights)}"
            )
        if head not in self.token_heads:
            raise KeyError(f"head {head} has no token-level weights; recorded: {list(self.token_heads)}")
        mask, t = self.masks[layer], self.seq_len
        weights = self.token_weights[layer][self.token_heads.index(head)]  # [Qb, qb, K * kb]
        qb, kb = mask.q_block, mask.k_block
        index = mask.kv_indices[0, head].to(torch.int64)  # [Qb, K]
        key_pos = (index[..., None] * kb + torch.arange(kb)).reshape(index.shape[0], -1)  # [Qb, K * kb]
        keep = mask.valid()[0, head].repeat_interleave(kb, dim=-1) & (key_pos < t)
        dense = torch.zeros(mask.num_q_blocks * qb, t + 1)
        column = torch.where(keep, key_pos, t)[:, None, :].expand(-1, qb, -1).reshape(dense.shape[0], -1)
        dense.scatter_add_(1, column, weights.reshape(dense.shape[0], -1))
        return dense[:t, :t]

    # ----------------------------------------------------------------- comparison
    def equal(self, other: Trace) -> bool:
        """True when both traces hold exactly the same data (tensors compared bitwise)."""

        def same(a, b):
            if a is None or b is None:
                return a is None and b is None
            return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)

        return (
            (self.text, self.model_id, self.config, self.mode)
            == (other.text, other.model_id, other.config, other.mode)
            and same(self.input_ids, other.input_ids)
            and same(self.offsets, other.offsets)
            and len(self.masks) == len(other.masks)
            and all(
                a.equal(b) and a.kv_indices.shape == b.kv_indices.shape
                for a, b in zip(self.masks, other.masks, strict=True)
            )
            and same(self.retained_mass, other.retained_mass)
            and same(self.block_attention, other.block_attention)
            and self.token_heads == other.token_heads
            and self.token_weights.keys() == other.token_weights.keys()
            and all(same(self.token_weights[k], other.token_weights[k]) for k in self.token_weights)
            and self.sentences == other.sentences
            and same(self.sentence_attention_sum, other.sentence_attention_sum)
        )

    def __repr__(self) -> str:
        sparsity = self.sparsity().mean().item() if self.masks else float("nan")
        mass = self.retained_mass.mean().item() if self.retained_mass.numel() else float("nan")
        return (
            f"Trace(model_id={self.model_id!r}, mode={self.mode!r}, T={self.seq_len}, L={self.num_layers}, "
            f"H={self.num_heads}, sentences={len(self.sentences)}, sparsity={sparsity:.2%}, "
            f"retained_mass={mass:.3f}, token_layers={sorted(self.token_weights)})"
        )

    # ----------------------------------------------------------------- file format
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace to one ``.safetensors`` file, atomically and with a checksum.

        The trace is checked first (the same checks as `load`), so a file that `load` would refuse is
        never written. The file is replaced in one step (`stream_widgets.storage.write_file`): a kill
        at any point leaves the old file or the new one, and the temp files of earlier killed saves are
        removed. A symlink at `path` stays a symlink (its target is written); an existing file keeps its
        permission bits.

        Returns:
            The path written (the symlink's target if `path` is a symlink).

        Raises:
            ValueError: If the trace is inconsistent (e.g. no masks, shapes that disagree) or `path` is
                empty.
            IsADirectoryError: If `path` is a folder.
        """
        from safetensors.torch import save_file

        from stream_widgets.storage import remove_leftovers, write_file

        if not str(path):
            raise ValueError("the trace file name is empty: pass a path such as trace.safetensors")
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a folder: pass a file name such as {path / 'trace.safetensors'}"
            )
        if not self.masks:
            raise ValueError("cannot save a trace with no masks (no layers): trace a model with trace()")
        tensors, meta = self._file_contents()
        _check_contents("cannot save the trace", meta, tensors)
        meta_json = json.dumps(meta)
        header = {
            "format": FORMAT,
            "version": str(VERSION),
            "meta": meta_json,
            "checksum": _checksum(FORMAT, str(VERSION), meta_json, tensors),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # temp files of saves by versions <= 0.1.0 (no process id in the name)
        remove_leftovers(Path(os.path.realpath(path)), legacy=_legacy_temp(path.name))
        return write_file(path, lambda tmp: save_file(tensors, tmp, metadata=header))

    def _file_contents(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The tensors (contiguous, on the CPU) and the JSON metadata that `save` writes."""
        widths = [m.kv_indices.shape[-1] for m in self.masks]
        width = max(widths, default=0)
        tensors = {
            "input_ids": self.input_ids,
            "offsets": self.offsets,
            "retained_mass": self.retained_mass,
            "block_attention": self.block_attention,
            "mask.kv_num_blocks": torch.stack([m.kv_num_blocks.cpu() for m in self.masks]),
            "mask.kv_indices": torch.stack(
                [
                    torch.nn.functional.pad(m.kv_indices.cpu(), (0, width - m.kv_indices.shape[-1]))
                    for m in self.masks
                ]
            ),
        }
        if self.sentence_attention_sum is not None:
            tensors["sentence_attention_sum"] = self.sentence_attention_sum
        for layer, weights in self.token_weights.items():
            tensors[f"token_weights.{layer}"] = weights
        meta = {
            "text": self.text,
            "model_id": self.model_id,
            "config": self.config.to_dict(),
            "mode": self.mode,
            "mask_widths": widths,
            "q_block": self.masks[0].q_block,
            "k_block": self.masks[0].k_block,
            "token_heads": list(self.token_heads),
            "sentences": [
                [s.index, s.text, s.char_start, s.char_end, s.token_start, s.token_end]
                for s in self.sentences
            ],
        }
        tensors = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
        return tensors, meta

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a trace written by `save`, checking it.

        A version 2 file carries a SHA-256 checksum of its metadata and tensors, checked here, so a
        file changed after it was written (a flipped bit, a bad copy) is refused rather than read.
        Every file, including version 1 files (no checksum), is checked for structure: the metadata
        schema and types, the tensors' names, dtypes and shapes against each other, the mask's block
        counts and key-block indices against the text's length (in range, ascending, causal), and the
        sentence and token spans against the text.

        Raises:
            FileNotFoundError: If there is no such file.
            IsADirectoryError: If `path` is a folder.
            PermissionError: If the file cannot be read.
            ValueError: If the file is truncated, not a safetensors file, not a stream-widgets trace,
                written by a newer version of the format, or damaged; the message names the file and
                the problem.
        """
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a trace file (.safetensors)")
        if not path.is_file():
            raise FileNotFoundError(f"no trace file at {path}")
        try:
            with open(path, "rb"):
                pass
        except PermissionError as error:
            raise PermissionError(f"cannot read the trace file {path}: permission denied") from error
        try:
            with safe_open(str(path), framework="pt") as reader:
                header = reader.metadata() or {}
                tensors = {name: reader.get_tensor(name) for name in reader.keys()}
        except Exception as error:  # safetensors raises SafetensorError, and others on damaged headers
            raise ValueError(
                f"{path} is not a readable trace file (truncated, damaged, or not safetensors): {error}"
            ) from error
        if header.get("format") != FORMAT:
            raise ValueError(
                f"{path} is a safetensors file but not a stream-widgets trace (no {FORMAT!r} tag)"
            )
        try:
            version = int(header.get("version", ""))
        except ValueError:
            raise ValueError(
                f"{path} has an invalid trace format version {header.get('version')!r}"
            ) from None
        if version > VERSION:
            raise ValueError(
                f"{path} was written by a newer stream-widgets (trace format version {version}; this one "
                f"reads up to {VERSION}): upgrade stream-widgets to read it"
            )
        if version < 1:
            raise ValueError(f"{path} has an invalid trace format version {version}")
        # Exactly the entries its version writes: a damaged version number cannot skip the checksum.
        entries = {"format", "version", "meta"} | ({"checksum"} if version >= 2 else set())
        if set(header) != entries:
            missing, extra = sorted(entries - set(header)), sorted(set(header) - entries)
            raise ValueError(
                f"{path} is damaged: a version {version} trace header has the entries {sorted(entries)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        if version >= 2:
            expected = _checksum(header["format"], header["version"], header["meta"], tensors)
            if header["checksum"] != expected:
                raise ValueError(
                    f"{path} is damaged: its contents do not match the checksum in its header (the file "
                    "was changed after it was written: a disk error, a bad copy or an edit); trace the "
                    "text again"
                )
        try:
            meta = json.loads(header["meta"])
        except ValueError as error:
            raise ValueError(f"{path} is damaged: its metadata is not valid JSON ({error})") from None
        _check_contents(f"{path} is not a valid trace file", meta, tensors)
        t = int(tensors["input_ids"].shape[0])
        masks = [
            StreamMask(
                tensors["mask.kv_num_blocks"][layer].clone(),
                tensors["mask.kv_indices"][layer, ..., :width].clone(),
                meta["q_block"],
                meta["k_block"],
                t,
            )
            for layer, width in enumerate(meta["mask_widths"])
        ]
        token_weights = {
            int(name.split(".", 1)[1]): value
            for name, value in tensors.items()
            if name.startswith("token_weights.")
        }
        return cls(
            text=meta["text"],
            model_id=meta["model_id"],
            config=StreamConfig.from_dict(meta["config"]),
            mode=meta["mode"],
            input_ids=tensors["input_ids"],
            offsets=tensors["offsets"],
            masks=masks,
            retained_mass=tensors["retained_mass"],
            block_attention=tensors["block_attention"],
            token_weights=dict(sorted(token_weights.items())),
            token_heads=tuple(meta["token_heads"]),
            sentences=[Sentence(*fields) for fields in meta["sentences"]],
            sentence_attention_sum=tensors.get("sentence_attention_sum"),
        )


def _legacy_temp(name: str) -> re.Pattern[str]:
    """Temp names of `Trace.save` before format version 2: ``.<name>.<8 random chars>.tmp``."""
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")


def _checksum(format_tag: str, version: str, meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` over the header entries and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for part in (format_tag, version, meta_json):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()


# ----------------------------------------------------------------- structure checks
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)
_META_TYPES = {
    "text": str,
    "model_id": str,
    "config": dict,
    "mode": str,
    "mask_widths": list,
    "q_block": int,
    "k_block": int,
    "token_heads": list,
    "sentences": list,
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_contents(where: str, meta, tensors: dict[str, torch.Tensor]) -> None:
    """Raise `ValueError` ``"<where>: <problem>"`` unless `meta` and `tensors` make a consistent trace.

    Cost O(size of the masks + T + S): every kept key-block index is checked, nothing T x T.
    """

    def fail(problem: str) -> None:
        raise ValueError(f"{where}: {problem}")

    # --- metadata schema
    if not isinstance(meta, dict):
        fail(f"the metadata should be a JSON object, got a {type(meta).__name__}")
    for key, kind in _META_TYPES.items():
        if key not in meta:
            fail(f"the metadata has no {key!r} entry")
        value = meta[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            fail(f"metadata {key!r} should be a {kind.__name__}, got {type(value).__name__} {value!r:.80}")
    try:
        StreamConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as error:
        fail(f"metadata 'config' is not a valid StreamConfig ({error})")
    if meta["mode"] not in ("observe", "sparse"):
        fail(f"metadata 'mode' should be 'observe' or 'sparse', got {meta['mode']!r:.80}")
    q_block, k_block = meta["q_block"], meta["k_block"]
    if q_block < 1 or k_block < 1:
        fail(f"q_block and k_block must be >= 1, got {q_block} and {k_block}")
    widths = meta["mask_widths"]
    if not widths or not all(_is_int(w) and w >= 0 for w in widths):
        fail(f"metadata 'mask_widths' should be a non-empty list of ints >= 0, got {widths!r:.80}")
    text = meta["text"]

    # --- tensor names, dtypes and shapes
    required = ("input_ids", "offsets", "retained_mass", "block_attention")
    for name in (*required, "mask.kv_num_blocks", "mask.kv_indices"):
        if name not in tensors:
            fail(f"the tensor {name!r} is missing")
    layers = len(widths)
    for name in tensors:
        if name in (*required, "mask.kv_num_blocks", "mask.kv_indices", "sentence_attention_sum"):
            continue
        layer = name.removeprefix("token_weights.")
        if name.startswith("token_weights.") and layer.isdigit() and int(layer) < layers:
            continue
        fail(f"unexpected tensor {name!r}")

    def expect(name: str, shape: tuple[int, ...], integer: bool) -> torch.Tensor:
        tensor = tensors[name]
        if integer and tensor.dtype not in _INT_DTYPES:
            fail(f"{name} should hold integers, got {tensor.dtype}")
        if not integer and not tensor.dtype.is_floating_point:
            fail(f"{name} should hold floats, got {tensor.dtype}")
        if tuple(tensor.shape) != shape:
            fail(f"{name} has shape {list(tensor.shape)}, expected {list(shape)}")
        return tensor

    ids = tensors["input_ids"]
    if ids.dim() != 1 or ids.shape[0] < 1:
        fail(f"input_ids should be [T] with T >= 1, got shape {list(ids.shape)}")
    t = int(ids.shape[0])
    expect("input_ids", (t,), True)
    if (ids < 0).any():
        fail("input_ids holds negative token ids")
    mass = tensors["retained_mass"]
    if mass.dim() != 3:
        fail(f"retained_mass should be [L, H, T], got shape {list(mass.shape)}")
    heads = int(mass.shape[1])
    if heads < 1:
        fail("retained_mass has no heads")
    expect("retained_mass", (layers, heads, t), False)
    num_q_blocks, num_k_blocks, width = -(-t // q_block), -(-t // k_block), max(widths)
    expect("block_attention", (layers, heads, num_q_blocks, width), False)
    counts = expect("mask.kv_num_blocks", (layers, 1, heads, num_q_blocks), True).to(torch.int64)
    indices = expect("mask.kv_indices", (layers, 1, heads, num_q_blocks, width), True).to(torch.int64)
    offsets = expect("offsets", (t, 2), True)
    if ((offsets < 0) | (offsets > len(text)) | (offsets[:, 0] > offsets[:, 1])[:, None]).any():
        fail(f"offsets holds character spans outside the text ({len(text)} characters)")

    # --- the masks: counts within each layer's width, kept blocks in range, ascending and causal
    layer_widths = torch.tensor(widths, dtype=torch.int64)[:, None, None, None]
    bad = (counts < 0) | (counts > layer_widths)
    if bad.any():
        layer = int(bad.nonzero()[0, 0])
        fail(
            f"mask.kv_num_blocks of layer {layer} holds {int(counts[bad][0])} kept blocks, outside "
            f"[0, {widths[layer]}] (the layer's mask width)"
        )
    kept = torch.arange(width)[None, None, None, None, :] < counts[..., None]
    if kept.any():
        top = indices[kept].max()
        low = indices[kept].min()
        if low < 0 or top >= num_k_blocks:
            layer = int(((indices < 0) | (indices >= num_k_blocks)).logical_and(kept).nonzero()[0, 0])
            fail(
                f"mask.kv_indices of layer {layer} holds key block {int(top if top >= num_k_blocks else low)}, "
                f"but the text has {num_k_blocks} key blocks ({t} tokens, k_block {k_block})"
            )
        last_query = torch.clamp((torch.arange(num_q_blocks) + 1) * q_block, max=t) - 1
        future = kept & (indices * k_block > last_query[None, None, None, :, None])
        if future.any():
            layer, _, head, row, _ = (int(i) for i in future.nonzero()[0])
            fail(
                f"mask.kv_indices of layer {layer}, head {head} keeps a key block after the queries of "
                f"query block {row} (not causal)"
            )
        pairs = kept[..., 1:] & (indices[..., 1:] <= indices[..., :-1])
        if pairs.any():
            layer = int(pairs.nonzero()[0, 0])
            fail(f"mask.kv_indices of layer {layer} is not strictly ascending within a query block")

    # --- token-level weights
    token_heads = meta["token_heads"]
    if not all(_is_int(h) and 0 <= h < heads for h in token_heads) or len(set(token_heads)) != len(
        token_heads
    ):
        fail(f"metadata 'token_heads' should be distinct heads in [0, {heads}), got {token_heads!r:.80}")
    for name in tensors:
        if name.startswith("token_weights."):
            layer = int(name.split(".", 1)[1])
            expect(name, (len(token_heads), num_q_blocks, q_block, widths[layer] * k_block), False)

    # --- sentences
    sentences = meta["sentences"]
    for position, fields in enumerate(sentences):
        if not isinstance(fields, list) or len(fields) != 6:
            fail(f"sentence {position} should be a list of 6 fields, got {fields!r:.80}")
        index, sentence_text, char_start, char_end, token_start, token_end = fields
        if index != position or not _is_int(index):
            fail(f"sentence {position} has index {index!r}")
        if not (isinstance(sentence_text, str) and _is_int(char_start) and _is_int(char_end)):
            fail(
                f"sentence {position} should hold [index, text, char_start, char_end, ...], got {fields!r:.80}"
            )
        if not 0 <= char_start <= char_end <= len(text) or text[char_start:char_end] != sentence_text:
            fail(f"sentence {position}'s character span [{char_start}, {char_end}) does not hold its text")
        if (token_start is None) != (token_end is None):
            fail(f"sentence {position} has only one end of its token span")
        if token_start is not None and not (
            _is_int(token_start) and _is_int(token_end) and 0 <= token_start <= token_end <= t
        ):
            fail(f"sentence {position}'s token span [{token_start}, {token_end}) is outside the {t} tokens")
    if "sentence_attention_sum" in tensors:
        s = len(sentences)
        expect("sentence_attention_sum", (layers, heads, s, s), False)
