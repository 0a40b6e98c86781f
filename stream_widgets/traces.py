"""`Trace`: what one Stream tracing pass records, and its versioned file format.

A trace is O(T) and small: per layer the Stream mask, per (layer, head, query) the retained attention
mass, per (layer, head, query block, kept key block) the summed attention, optional token-level
weights for chosen layers and heads, and the sentence x sentence attention sums.

File format (one ``.safetensors`` file): the tensors, plus in the safetensors header metadata a
``format`` tag, an integer ``version`` and a JSON ``meta`` entry (text, model id, config, mode,
sentences, ...). Writes go to a temp file in the same folder and are renamed into place, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.mask import StreamMask
from stream_widgets.sentences import Sentence

__all__ = ["FORMAT", "VERSION", "Trace"]

FORMAT = "stream-widgets/trace"
VERSION = 1


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
        """Write the trace to one ``.safetensors`` file, atomically (temp file + rename).

        Returns:
            The path written.
        """
        from safetensors.torch import save_file

        path = Path(path)
        widths = [m.kv_indices.shape[-1] for m in self.masks]
        width = max(widths, default=0)
        tensors = {
            "input_ids": self.input_ids,
            "offsets": self.offsets,
            "retained_mass": self.retained_mass,
            "block_attention": self.block_attention,
            "mask.kv_num_blocks": torch.stack([m.kv_num_blocks for m in self.masks]),
            "mask.kv_indices": torch.stack(
                [
                    torch.nn.functional.pad(m.kv_indices, (0, width - m.kv_indices.shape[-1]))
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
            "q_block": self.masks[0].q_block if self.masks else self.config.q_block,
            "k_block": self.masks[0].k_block if self.masks else self.config.k_block,
            "token_heads": list(self.token_heads),
            "sentences": [
                [s.index, s.text, s.char_start, s.char_end, s.token_start, s.token_end]
                for s in self.sentences
            ],
        }
        header = {"format": FORMAT, "version": str(VERSION), "meta": json.dumps(meta)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=header)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        """Read a trace written by `save`.

        Raises:
            FileNotFoundError: If there is no such file.
            ValueError: If the file is truncated, not a safetensors file, not a stream-widgets trace, or
                written by a newer version of the format.
        """
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no trace file at {path}")
        try:
            with safe_open(str(path), framework="pt") as reader:
                header = reader.metadata() or {}
                tensors = {name: reader.get_tensor(name) for name in reader.keys()}
        except SafetensorError as error:
            raise ValueError(
                f"{path} is not a readable trace file (truncated, or not safetensors): {error}"
            ) from error
        if header.get("format") != FORMAT:
            raise ValueError(
                f"{path} is a safetensors file but not a stream-widgets trace (no {FORMAT!r} tag)"
            )
        version = int(header.get("version", "0"))
        if version > VERSION:
            raise ValueError(
                f"{path} was written by a newer stream-widgets (trace format version {version}; this one "
                f"reads up to {VERSION}): upgrade stream-widgets to read it"
            )
        if version < 1:
            raise ValueError(f"{path} has an invalid trace format version {version}")
        meta = json.loads(header["meta"])
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
