"""Sentence x sentence attention and vertical scores: the first two steps of the thought-anchor pipeline.

After Bogdan et al., "Thought Anchors" (arXiv 2506.19143), on the sentence-level sums a Stream trace
records, never on token x token weights:

1. `sentence_attention`: ``[L, H, S, S]`` mean token attention from sentence i to sentence j (pruned
   entries count as 0), from the trace's summed attention divided by token counts: O(L H S^2).
2. `vertical_scores`: per (layer, head), how much later sentences look back at sentence j: the mean of
   column j over the rows i >= j + `proximity_ignore`. Three variants (`VARIANTS`):

   * ``"raw"``: the cells as they are (the Thought Anchors definition).
   * ``"depth"``: every row replaced by its within-row ranks divided by the row's number of cells
     (the Thought Anchors ``control_depth`` option), so rows of different scales weigh the same.
   * ``"distance"``: every cell divided by that head's mean attention at the same sentence distance
     ``i - j`` (beyond the original), so a head's recency profile no longer favours late sentences.

   `min_later` sets how many rows (later sentences) a sentence needs to get a score at all; those with
   fewer get NaN and never rank as anchors. Thought Anchors' own rule is ``min_later=1``.

Memory: the sentence means are float32 like the trace's sums (``4 L H S^2`` bytes: 1.1 GB for 30 x 9
heads at 1,000 sentences); `vertical_scores` works through the heads in chunks of at most
`_CHUNK_CELLS` cells, so its temporaries stay bounded whatever L x H.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from stream_widgets.traces import Trace

__all__ = [
    "DEFAULT_MIN_LATER",
    "DEFAULT_VARIANT",
    "PROXIMITY_IGNORE",
    "VARIANTS",
    "Variant",
    "as_matrices",
    "check_count",
    "mean_sentence_attention",
    "sentence_attention",
    "vertical_scores",
]

Variant = Literal["raw", "depth", "distance"]
VARIANTS: tuple[str, ...] = ("raw", "depth", "distance")
"""Vertical-score variants; see the module docstring."""
DEFAULT_VARIANT: Variant = "raw"
"""The variant used when none is given: Thought Anchors' own, chosen by `benchmarks/anchors.py` (docs/anchors.md)."""
DEFAULT_MIN_LATER = 1
"""Later sentences (rows) a sentence needs to get a vertical score, by default (Thought Anchors' rule)."""
PROXIMITY_IGNORE = 4
"""Rows i < j + 4 are left out of column j's mean, as in the Thought Anchors receiver-head code."""
_CHUNK_CELLS = 2**24  # cells of the [..., S, S] input handled at once by vertical_scores (64-128 MiB)


def mean_sentence_attention(sums, token_counts) -> np.ndarray:
    """Turn summed sentence attention into means: ``sums[..., i, j] / (n_i * n_j)``.

    Args:
        sums: ``[..., S, S]`` summed token attention from the tokens of sentence i to those of sentence j
            (numpy array or tensor).
        token_counts: ``[S]`` tokens per sentence.

    Returns:
        ``[..., S, S]`` in the dtype of `sums` (at least float32); cells of a sentence without tokens
        are 0. O(numel) time.

    Raises:
        ValueError: If the shapes disagree or a count is negative.
    """
    sums = _as_numpy(sums)
    dtype = np.result_type(sums.dtype, np.float32)
    counts = np.asarray(_as_numpy(token_counts), dtype=dtype)
    if sums.ndim < 2 or sums.shape[-1] != sums.shape[-2]:
        raise ValueError(f"sentence sums should be [..., S, S], got shape {sums.shape}")
    if counts.shape != (sums.shape[-1],):
        raise ValueError(f"token_counts should be [S] = [{sums.shape[-1]}], got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("token_counts must be >= 0")
    pairs = counts[:, None] * counts[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, sums / np.where(pairs > 0, pairs, 1.0), 0.0)


def sentence_attention(trace: Trace) -> np.ndarray:
    """Mean token attention between sentences, per layer and head, from a Stream trace.

    Cell ``(l, h, i, j)`` is the mean, over all ``n_i * n_j`` (query in sentence i, key in sentence j)
    pairs, of the attention probability recorded at layer l, head h; pairs the mask pruned count as 0,
    and so do non-causal pairs (so ``j > i`` cells are 0, and the diagonal holds about half the mass a
    full block would). In ``observe`` mode these are the model's true probabilities.

    Args:
        trace: A `Trace` traced with ``sentences=True``.

    Returns:
        float32 ``[L, H, S, S]``. O(L H S^2) time and memory; nothing T x T.

    Raises:
        ValueError: If the trace has no sentence sums or no sentences.
    """
    if not trace.sentences:
        raise ValueError(
            "the trace has no sentences (empty or blank reasoning): there is nothing to score; trace a text "
            "with reasoning sentences"
        )
    if trace.sentence_attention_sum is None:
        raise ValueError(
            "this trace has no sentence attention sums: trace it with sentences=True "
            "(stream_widgets.tracer.trace(..., sentences=True))"
        )
    return mean_sentence_attention(trace.sentence_attention_sum, trace.sentence_token_counts())


# --------------------------------------------------------------------------- vertical scores
def vertical_scores(
    matrix,
    proximity_ignore: int = PROXIMITY_IGNORE,
    control_depth: bool = False,
    *,
    variant: Variant | None = None,
    min_later: int = DEFAULT_MIN_LATER,
) -> np.ndarray:
    """Vertical score of every sentence: how much the sentences well after it attend to it.

    Score of sentence j = mean of column j of the (transformed) matrix over the rows
    ``i >= j + proximity_ignore``. The transform is the `variant` (module docstring): ``"raw"`` (none),
    ``"depth"`` (within-row ranks / row length; ties share their mean rank) or ``"distance"`` (each cell
    divided by the head's mean attention at the same distance ``i - j``, over the whole causal matrix).

    Args:
        matrix: ``[..., S, S]`` sentence attention (e.g. ``[S, S]`` or ``[L, H, S, S]``); only the cells
            with ``i >= j + proximity_ignore`` are read.
        proximity_ignore: Rows closer than this below the diagonal are left out (>= 1; default 4).
        control_depth: The Thought Anchors name of ``variant="depth"``; True with another explicit
            variant is an error.
        variant: ``"raw"``, ``"depth"`` or ``"distance"``; `DEFAULT_VARIANT` if None (and not
            `control_depth`).
        min_later: A sentence needs at least this many rows ``i >= j + proximity_ignore`` (>= 1), else its
            score is NaN; so the last ``proximity_ignore + min_later - 1`` sentences get NaN.

    Returns:
        float64 ``[..., S]``, NaN where a sentence has too few later rows. O(numel) time (``"depth"``:
        O(numel log S) for the sort).

    Raises:
        ValueError: For a non-square matrix, a bad variant or a bound out of range.
    """
    variant = _resolve_variant(variant, control_depth)
    a = _as_numpy(matrix)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"matrix should be [..., S, S], got shape {a.shape}")
    check_count("proximity_ignore", proximity_ignore, 1)
    check_count("min_later", min_later, 1)
    s = a.shape[-1]
    rows, cols = np.indices((s, s))
    valid = rows - cols >= proximity_ignore  # [S, S]
    later = valid.sum(axis=0)  # [S] rows below the band, per column
    flat = a.reshape(-1, s, s)
    step = max(1, _CHUNK_CELLS // max(s * s, 1))
    sums = np.empty((flat.shape[0], s))
    for first in range(0, flat.shape[0], step):
        block = np.asarray(flat[first : first + step], dtype=np.float64)
        if variant == "distance":
            block = block / _distance_profile(block)[..., np.abs(rows - cols)]
        elif variant == "depth":
            block = _row_ranks(block, valid)
        sums[first : first + step] = np.where(valid, block, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = sums / later
    return np.where(later >= min_later, scores, np.nan).reshape(*a.shape[:-2], s)


def _resolve_variant(variant: str | None, control_depth: bool) -> str:
    if control_depth:
        if variant not in (None, "depth"):
            raise ValueError(f"control_depth=True means variant='depth'; got variant={variant!r} as well")
        return "depth"
    variant = DEFAULT_VARIANT if variant is None else variant
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def _distance_profile(a: np.ndarray) -> np.ndarray:
    """``[..., S]``: mean of the cells at each distance ``d = i - j >= 0`` (1.0 where that mean is 0).

    Dividing by it makes a head's typical attention at every distance 1, so a cell reads "times the usual
    attention at that distance". A distance whose mean is 0 has only 0 cells; they stay 0.
    """
    s = a.shape[-1]
    profile = np.stack(
        [np.diagonal(a, offset=-d, axis1=-2, axis2=-1).mean(axis=-1) for d in range(s)], axis=-1
    )
    return np.where(profile > 0, profile, 1.0)


def _row_ranks(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Within-row ranks (1..n, ties averaged) of the valid cells, divided by the row's n valid cells."""
    from scipy.stats import rankdata

    masked = np.where(valid, a, np.nan)
    ranks = rankdata(masked, axis=-1, nan_policy="omit")  # NaN stays NaN
    n = valid.sum(axis=-1)  # [S]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, ranks / np.where(n > 0, n, 1)[:, None], 0.0)


# --------------------------------------------------------------------------- inputs
def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_matrices(inputs, single: bool = False) -> list[np.ndarray]:
    """A `Trace`, an ``[L, H, S, S]`` array or a sequence of them, as a list of ``[L, H, S, S]`` arrays.

    Traces are turned into their `sentence_attention`; arrays keep their dtype (at least float32).

    Raises:
        ValueError: For a sequence where one input is expected (`single`), a wrong shape, no input, or
            inputs that disagree on L x H.
    """
    if hasattr(inputs, "sentence_attention_sum") or hasattr(inputs, "shape"):
        inputs = [inputs]
    elif single:
        raise ValueError("expected one Trace or one [L, H, S, S] array, got a sequence")
    elif isinstance(inputs, str | bytes):
        raise TypeError(
            f"expected Traces or arrays, got the string {inputs!r}; load a saved trace with Trace.load"
        )
    out = []
    for item in inputs:
        matrix = sentence_attention(item) if hasattr(item, "sentence_attention_sum") else _as_numpy(item)
        if matrix.ndim != 4 or matrix.shape[-1] != matrix.shape[-2]:
            raise ValueError(f"sentence attention should be [L, H, S, S], got shape {matrix.shape}")
        out.append(matrix.astype(np.result_type(matrix.dtype, np.float32), copy=False))
    if not out:
        raise ValueError("no traces given")
    if len({m.shape[:2] for m in out}) > 1:
        raise ValueError(f"traces disagree on layers x heads: {sorted({m.shape[:2] for m in out})}")
    return out


def check_count(name: str, value, low: int) -> None:
    """Raise `ValueError` unless `value` is an int (not a bool) >= `low`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
