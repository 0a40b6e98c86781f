"""Receiver heads: the heads whose vertical scores are most heavy-tailed, and how reliably a corpus finds them.

Thought Anchors picks receiver heads by the Fisher kurtosis of each head's vertical-score vector (one
value per sentence), averaged over many problems, and checks them with a split-half reliability: the
Pearson correlation, over heads, of the mean kurtosis in two disjoint halves of the problems.

* `trace_kurtosis` -- ``[L, H]`` kurtosis of one trace; `head_kurtosis` -- its mean over traces.
* `receiver_heads` -- the `top` heads of the pooled kurtosis; `top_heads` ranks any ``[L, H]`` array.
* `split_half_reliability` -- the reliability over random problem-grouped halves.
* `CorpusHeads` -- receiver heads found across a corpus, saved as JSON. Two ship with the package, found
  across the bundled reasoning traces (`benchmarks/receiver_heads.py`): for the default SmolLM2-135M and
  for the opt-in Qwen2.5-Coder-0.5B; `corpus_heads(model_id, variant)` returns them (None for other
  models).

Cost: one `vertical_scores` per trace (O(L H S^2)); the reliability is O(splits x traces x L x H).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_widgets.vertical import (
    DEFAULT_MIN_LATER,
    PROXIMITY_IGNORE,
    VARIANTS,
    Variant,
    as_matrices,
    check_count,
    vertical_scores,
)

__all__ = [
    "CORPUS_DIR",
    "CorpusHeads",
    "SplitHalf",
    "corpus_heads",
    "head_kurtosis",
    "save_corpus_heads",
    "score_kurtosis",
    "receiver_heads",
    "split_half_reliability",
    "top_heads",
    "trace_kurtosis",
]

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "receiver_heads"
"""Where the shipped corpus receiver heads live (one JSON file per model)."""
_MIN_SCORED = 4  # kurtosis of fewer values says nothing


def trace_kurtosis(
    matrix,
    *,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
) -> np.ndarray:
    """Fisher kurtosis of every head's vertical-score vector in one trace.

    Args:
        matrix: A `Trace` or an ``[L, H, S, S]`` sentence-attention array.
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        float64 ``[L, H]``: ``scipy.stats.kurtosis(scores, fisher=True)`` over the sentences with a score;
        all NaN when fewer than 4 sentences have one, NaN for a head whose vector is constant.
    """
    (a,) = as_matrices(matrix, single=True)
    return score_kurtosis(vertical_scores(a, proximity_ignore, variant=variant, min_later=min_later))


def score_kurtosis(scores: np.ndarray) -> np.ndarray:
    """Fisher kurtosis over the last axis of ``[..., S]`` vertical scores, over the sentences with a score.

    Sentences without a score (NaN in the first vector) are left out; all NaN when fewer than 4 remain,
    NaN for a constant vector.
    """
    from scipy.stats import kurtosis

    scores = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(scores.reshape(-1, scores.shape[-1])[0])
    if scored.sum() < _MIN_SCORED:
        return np.full(scores.shape[:-1], np.nan)
    values = scores[..., scored]
    with np.errstate(invalid="ignore", divide="ignore"):
        k = kurtosis(values, axis=-1, fisher=True)
    # a constant vector has no kurtosis (scipy returns -3 for a zero variance)
    return np.where(values.std(axis=-1) > 0, k, np.nan)


def _nanmean(stacked: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(stacked)).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)


def head_kurtosis(
    inputs,
    *,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
) -> np.ndarray:
    """Fisher kurtosis of every head's vertical-score vector, averaged over traces.

    Args:
        inputs: One `Trace` or ``[L, H, S, S]`` sentence-attention array, or a sequence of them (same L
            and H; S may differ). Traces are read one at a time.
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        float64 ``[L, H]``: `trace_kurtosis` averaged over the traces where it is defined; NaN where it
        never is.

    Raises:
        ValueError: If no trace has 4 or more scored sentences.
    """
    items = [inputs] if hasattr(inputs, "sentence_attention_sum") or hasattr(inputs, "shape") else inputs
    kwargs = {"variant": variant, "proximity_ignore": proximity_ignore, "min_later": min_later}
    per_trace = [trace_kurtosis(item, **kwargs) for item in items]
    per_trace = [k for k in per_trace if not np.isnan(k).all()]
    if not per_trace:
        raise ValueError(
            "no trace has 4 or more scored sentences: receiver heads need longer traces "
            f"(more than proximity_ignore + min_later + 2 = {proximity_ignore + min_later + 2} sentences)"
        )
    if len({k.shape for k in per_trace}) > 1:
        raise ValueError(f"traces disagree on layers x heads: {sorted({k.shape for k in per_trace})}")
    return _nanmean(np.stack(per_trace))


def top_heads(kurtosis: np.ndarray, top: int) -> list[tuple[int, int]]:
    """The `top` ``(layer, head)`` pairs of an ``[L, H]`` kurtosis array, highest first.

    Ties go to the lower layer, then the lower head; heads without a kurtosis (NaN) come last.
    """
    kurt = np.asarray(kurtosis, dtype=np.float64)
    check_count("top", top, 1)
    if top > kurt.size:
        raise ValueError(
            f"top={top} but there are only {kurt.size} heads ({kurt.shape[0]} layers x {kurt.shape[1]})"
        )
    key = np.where(np.isnan(kurt), -np.inf, kurt).ravel()
    order = np.lexsort((np.arange(key.size), -key))[:top]  # stable: ties by flat index
    return [(int(i // kurt.shape[1]), int(i % kurt.shape[1])) for i in order]


def receiver_heads(
    inputs,
    top: int = 20,
    *,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
) -> list[tuple[int, int]]:
    """The `top` heads with the highest mean Fisher kurtosis of their vertical scores.

    Args:
        inputs: One `Trace` or ``[L, H, S, S]`` array, or a sequence of them: the kurtosis is averaged
            over all of them (pooled over the traces analysed, as Thought Anchors does).
        top: How many heads (1 .. L*H; default 20).
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        ``(layer, head)`` pairs, highest kurtosis first (see `top_heads`).
    """
    check_count("top", top, 1)
    kurt = head_kurtosis(inputs, variant=variant, proximity_ignore=proximity_ignore, min_later=min_later)
    return top_heads(kurt, top)


@dataclass(frozen=True)
class SplitHalf:
    """Split-half reliability of per-head kurtosis.

    Attributes:
        mean_r: Mean Pearson r over the splits (NaN when no split had two finite halves).
        r: The r of every split.
        groups: Distinct groups (problems) the splits drew from.
    """

    mean_r: float
    r: tuple[float, ...]
    groups: int


def split_half_reliability(
    per_trace: np.ndarray, groups: Sequence[str], *, splits: int = 200, seed: int = 0
) -> SplitHalf:
    """How reliably a corpus ranks its receiver heads: Pearson r of mean kurtosis between two halves.

    Each split shuffles the distinct `groups` (e.g. problem ids: traces of one problem stay together),
    gives half of them to each side, averages the traces' kurtosis per head on each side and correlates
    the two ``[L * H]`` vectors over the heads finite on both.

    Args:
        per_trace: ``[N, L, H]`` `trace_kurtosis` of N traces.
        groups: ``[N]`` group of every trace.
        splits: Random splits (>= 1).
        seed: Seed of the splits.

    Returns:
        The `SplitHalf`.

    Raises:
        ValueError: With fewer than 2 groups or mismatched lengths.
    """
    stacked = np.asarray(per_trace, dtype=np.float64)
    if stacked.ndim != 3 or stacked.shape[0] != len(groups):
        raise ValueError(
            f"per_trace should be [N, L, H] with N = {len(groups)} groups given, got {stacked.shape}"
        )
    check_count("splits", splits, 1)
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"a split-half reliability needs traces of at least 2 groups, got {names}")
    rng = np.random.default_rng(seed)
    labels = np.array([names.index(g) for g in groups])
    rs = []
    for _ in range(splits):
        order = rng.permutation(len(names))
        first = np.isin(labels, order[: len(names) // 2])
        a, b = _nanmean(stacked[first]).ravel(), _nanmean(stacked[~first]).ravel()
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= 3 and a[ok].std() > 0 and b[ok].std() > 0:
            rs.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    return SplitHalf(float(np.mean(rs)) if rs else float("nan"), tuple(rs), len(names))


@dataclass(frozen=True)
class CorpusHeads:
    """Receiver heads found across a corpus of traces of one model, with their reliability.

    Attributes:
        model_id: The model the traces were read by.
        variant: The vertical-score variant of the kurtosis.
        kurtosis: float64 ``[L, H]``: mean kurtosis over the traces.
        reliability: `SplitHalf` reliability of per-head kurtosis over the corpus's problems.
        traces: Names of the traces.
        proximity_ignore, min_later: The vertical-score settings.
        notes: What the corpus was (text, lengths, Stream config), free-form.
    """

    model_id: str
    variant: str
    kurtosis: np.ndarray
    reliability: SplitHalf
    traces: tuple[str, ...]
    proximity_ignore: int = PROXIMITY_IGNORE
    min_later: int = DEFAULT_MIN_LATER
    notes: dict = field(default_factory=dict)

    def heads(self, top: int = 20) -> list[tuple[int, int]]:
        """The `top` receiver heads of the corpus."""
        return top_heads(self.kurtosis, min(top, self.kurtosis.size))

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "proximity_ignore": self.proximity_ignore,
            "min_later": self.min_later,
            "kurtosis": [[None if np.isnan(x) else float(x) for x in row] for row in self.kurtosis],
            "reliability": {
                "mean_r": self.reliability.mean_r,
                "groups": self.reliability.groups,
                "r": list(self.reliability.r),
            },
            "traces": list(self.traces),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CorpusHeads:
        kurt = np.array(
            [[np.nan if x is None else x for x in row] for row in data["kurtosis"]], dtype=np.float64
        )
        rel = data["reliability"]
        return cls(
            model_id=data["model_id"],
            variant=data["variant"],
            kurtosis=kurt,
            reliability=SplitHalf(float(rel["mean_r"]), tuple(rel["r"]), int(rel["groups"])),
            traces=tuple(data["traces"]),
            proximity_ignore=int(data["proximity_ignore"]),
            min_later=int(data["min_later"]),
            notes=dict(data.get("notes", {})),
        )


def _file_name(model_id: str) -> str:
    return model_id.replace("/", "__") + ".json"


def save_corpus_heads(entries: Sequence[CorpusHeads], directory: str | os.PathLike = CORPUS_DIR) -> Path:
    """Write the corpus heads of one model (one entry per variant) to ``<directory>/<model>.json``."""
    models = {e.model_id for e in entries}
    if len(models) != 1:
        raise ValueError(f"save the corpus heads of one model at a time, got {sorted(models)}")
    path = Path(directory) / _file_name(models.pop())
    path.parent.mkdir(parents=True, exist_ok=True)
    from stream_widgets.storage import write_file

    return write_file(path, json.dumps({"variants": [e.to_dict() for e in entries]}, indent=1) + "\n")


def corpus_heads(
    model_id: str,
    variant: str,
    *,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
    directory: str | os.PathLike = CORPUS_DIR,
) -> CorpusHeads | None:
    """The corpus receiver heads of a model for one variant and settings, or None if none are stored.

    Raises:
        ValueError: For an unknown variant or an unreadable file.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    path = Path(directory) / _file_name(str(model_id))
    if not path.is_file():
        return None
    try:
        entries = [CorpusHeads.from_dict(e) for e in json.loads(path.read_text(encoding="utf-8"))["variants"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is not a readable corpus-heads file ({error}); reinstall stream-widgets"
        ) from error
    for entry in entries:
        if (entry.variant, entry.proximity_ignore, entry.min_later) == (variant, proximity_ignore, min_later):
            return entry
    return None
