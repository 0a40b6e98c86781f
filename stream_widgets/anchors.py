"""Thought anchors: sentence x sentence attention, vertical scores, receiver heads and anchor scores.

The pipeline of SPEC section 3 (after Bogdan et al., "Thought Anchors", arXiv 2506.19143), on the
sentence-level sums a Stream trace records, never on token x token weights:

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
   fewer get NaN and never rank as anchors.
3. `receiver_heads`: the (layer, head) pairs whose vertical-score vectors are most heavy-tailed, by
   Fisher kurtosis over sentences, averaged over the traces given (default 20 heads).
4. `anchor_scores`: the mean vertical score over the receiver heads; `thought_anchors`: the top
   sentences by that score, with their text and spans.

Default variant: ``"distance"`` with ``min_later=4``, chosen from `benchmarks/anchors.py` (figures in
`docs/benchmarks.md`, "Thought anchors"): on 6 bundled traces cut to ~1k tokens, with SmolLM2-135M, its
Stream anchor scores had the highest mean per-trace Spearman correlation with the black-box
`resampling_importance_kl` (0.22; ``"raw"`` 0.18, ``"depth"`` -0.02) and `counterfactual_importance_kl`
(0.13; ``"raw"`` 0.12, ``"depth"`` 0.05), and the fewest top-5 anchors in the last 30% of the trace (with
``"raw"``). It is also the variant whose anchors survive pruning best: at 58% sparsity (``top_k=8``)
its Stream-vs-dense Spearman stayed 0.90 on average, against 0.89 for ``"raw"`` and 0.85 for
``"depth"``. These correlations with importance are weak and measured on few traces: treat the choice as a mild
preference, and ``"raw"`` (the Thought Anchors definition) as the baseline to compare against.

Inputs are a `Trace` (with sentence sums) or a ``[L, H, S, S]`` array of sentence means; outputs are
numpy arrays (float64) so that they go straight to the widgets (`ExploreData`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from stream_widgets.sentences import Sentence

if TYPE_CHECKING:
    from stream_widgets.traces import Trace

__all__ = [
    "DEFAULT_MIN_LATER",
    "DEFAULT_VARIANT",
    "PROXIMITY_IGNORE",
    "VARIANTS",
    "Anchor",
    "anchor_scores",
    "head_kurtosis",
    "mean_sentence_attention",
    "receiver_heads",
    "sentence_attention",
    "thought_anchors",
    "vertical_scores",
]

Variant = Literal["raw", "depth", "distance"]
VARIANTS: tuple[str, ...] = ("raw", "depth", "distance")
"""Vertical-score variants; see the module docstring."""
DEFAULT_VARIANT: Variant = "distance"
"""The variant used when none is given (chosen from `benchmarks/anchors.py`)."""
DEFAULT_MIN_LATER = 4
"""Later sentences (rows) a sentence needs to get a vertical score, by default."""
PROXIMITY_IGNORE = 4
"""Rows i < j + 4 are left out of column j's mean, as in the Thought Anchors receiver-head code."""


# --------------------------------------------------------------------------- sentence x sentence attention
def mean_sentence_attention(sums, token_counts) -> np.ndarray:
    """Turn summed sentence attention into means: ``sums[..., i, j] / (n_i * n_j)``.

    Args:
        sums: ``[..., S, S]`` summed token attention from the tokens of sentence i to those of sentence j
            (numpy array or tensor).
        token_counts: ``[S]`` tokens per sentence.

    Returns:
        float64 ``[..., S, S]``; cells of a sentence without tokens are 0. O(numel) time.

    Raises:
        ValueError: If the shapes disagree or a count is negative.
    """
    sums = _as_numpy(sums)
    counts = np.asarray(_as_numpy(token_counts), dtype=np.float64)
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
        float64 ``[L, H, S, S]``. O(L H S^2) time and memory; nothing T x T.

    Raises:
        ValueError: If the trace has no sentence sums.
    """
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
    a = np.asarray(_as_numpy(matrix), dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"matrix should be [..., S, S], got shape {a.shape}")
    _check_int("proximity_ignore", proximity_ignore, 1)
    _check_int("min_later", min_later, 1)
    s = a.shape[-1]
    rows, cols = np.indices((s, s))
    valid = rows - cols >= proximity_ignore  # [S, S]
    if variant == "distance":
        a = a / _distance_profile(a)[..., np.abs(rows - cols)]
    elif variant == "depth":
        a = _row_ranks(a, valid)
    a = np.where(valid, a, 0.0)
    later = valid.sum(axis=0)  # [S] rows below the band, per column
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = a.sum(axis=-2) / later
    return np.where(later >= min_later, scores, np.nan)


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


# --------------------------------------------------------------------------- receiver heads
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
            and H; S may differ).
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        float64 ``[L, H]``: ``scipy.stats.kurtosis(scores, fisher=True)`` over the sentences with a score,
        averaged over the traces where it is defined; NaN where it never is (fewer than 4 scored sentences
        or a constant vector).
    """
    from scipy.stats import kurtosis

    per_trace = []
    for matrix in _matrices(inputs):
        scores = vertical_scores(matrix, proximity_ignore, variant=variant, min_later=min_later)
        scored = ~np.isnan(scores[0, 0])
        if scored.sum() < 4:
            continue  # kurtosis of fewer than 4 values says nothing
        values = scores[..., scored]
        with np.errstate(invalid="ignore", divide="ignore"):
            k = kurtosis(values, axis=-1, fisher=True)
        # a constant vector has no kurtosis (scipy returns -3 for a zero variance)
        per_trace.append(np.where(values.std(axis=-1) > 0, k, np.nan))
    if not per_trace:
        raise ValueError(
            "no trace has 4 or more scored sentences: receiver heads need longer traces "
            f"(more than proximity_ignore + min_later + 2 = {proximity_ignore + min_later + 2} sentences)"
        )
    stacked = np.stack(per_trace)
    counts = (~np.isnan(stacked)).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)


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
            over all of them (SPEC: pooled over the traces analysed).
        top: How many heads (1 .. L*H; default 20).
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        ``(layer, head)`` pairs, highest kurtosis first (ties: lower layer, then lower head, first); heads
        without a kurtosis come last.
    """
    kurt = head_kurtosis(inputs, variant=variant, proximity_ignore=proximity_ignore, min_later=min_later)
    _check_int("top", top, 1)
    if top > kurt.size:
        raise ValueError(
            f"top={top} but there are only {kurt.size} heads ({kurt.shape[0]} layers x {kurt.shape[1]})"
        )
    key = np.where(np.isnan(kurt), -np.inf, kurt).ravel()
    order = np.lexsort((np.arange(key.size), -key))[:top]  # stable: ties by flat index
    return [(int(i // kurt.shape[1]), int(i % kurt.shape[1])) for i in order]


_pick_receiver_heads = receiver_heads  # `anchor_scores` takes an argument of the same name


# --------------------------------------------------------------------------- anchors
def anchor_scores(
    inputs,
    receiver_heads: Sequence[tuple[int, int]] | None = None,
    *,
    top_heads: int = 20,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
) -> np.ndarray:
    """Anchor score of every sentence: its vertical score averaged over the receiver heads.

    Args:
        inputs: A `Trace` or an ``[L, H, S, S]`` sentence-attention array.
        receiver_heads: ``(layer, head)`` pairs (e.g. from `receiver_heads` over many traces); if None,
            the `top_heads` receiver heads of this input alone.
        top_heads: Receiver heads to pick when `receiver_heads` is None (all heads if the model has
            fewer).
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        float64 ``[S]``, NaN for the sentences without a vertical score (the last few).
    """
    (matrix,) = _matrices(inputs, single=True)
    kwargs = {"variant": variant, "proximity_ignore": proximity_ignore, "min_later": min_later}
    if receiver_heads is None:
        receiver_heads = _pick_receiver_heads(
            matrix, min(top_heads, matrix.shape[0] * matrix.shape[1]), **kwargs
        )
    heads = _check_heads(receiver_heads, matrix.shape[:2])
    layers, head_ids = zip(*heads, strict=True)
    scores = vertical_scores(
        matrix[list(layers), list(head_ids)], proximity_ignore, variant=variant, min_later=min_later
    )  # [R, S]
    return scores.mean(axis=0)


@dataclass(frozen=True)
class Anchor:
    """One thought anchor: a sentence of the trace and its anchor score.

    Attributes:
        sentence: The `Sentence` (index, text, character and token spans).
        score: Its anchor score (mean vertical score over the receiver heads; the unit depends on the
            variant: attention probability for ``"raw"``, rank fraction for ``"depth"``, times the
            head's usual attention at that distance for ``"distance"``).
    """

    sentence: Sentence
    score: float

    @property
    def index(self) -> int:
        """The sentence's index in the trace."""
        return self.sentence.index

    @property
    def text(self) -> str:
        """The sentence's text."""
        return self.sentence.text


def thought_anchors(
    trace: Trace,
    receiver_heads: Sequence[tuple[int, int]] | None = None,
    top: int = 5,
    *,
    variant: Variant | None = None,
    top_heads: int = 20,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
    matrix=None,
) -> list[Anchor]:
    """The `top` sentences of a trace by anchor score, best first.

    Args:
        trace: A `Trace` with sentences (for the texts and spans).
        receiver_heads: ``(layer, head)`` pairs; if None, the `top_heads` receiver heads of this trace
            alone (pooling over several traces with `receiver_heads` is steadier).
        top: How many anchors (>= 1); fewer come back when fewer sentences have a score.
        variant, proximity_ignore, min_later: As in `vertical_scores`.
        top_heads: Receiver heads to pick when `receiver_heads` is None.
        matrix: ``[L, H, S, S]`` sentence attention to use instead of the trace's own (e.g. the dense
            reference of the same text); None for `sentence_attention(trace)`.

    Returns:
        Up to `top` `Anchor` objects, highest score first (ties: earlier sentence first).
    """
    _check_int("top", top, 1)
    source = trace if matrix is None else _as_numpy(matrix)
    scores = anchor_scores(
        source,
        receiver_heads,
        top_heads=top_heads,
        variant=variant,
        proximity_ignore=proximity_ignore,
        min_later=min_later,
    )
    if len(trace.sentences) != scores.shape[0]:
        raise ValueError(
            f"the matrix has {scores.shape[0]} sentences but the trace has {len(trace.sentences)}"
        )
    ranked = [
        i
        for i in np.lexsort((np.arange(scores.size), -np.nan_to_num(scores, nan=-np.inf)))
        if not np.isnan(scores[i])
    ]
    return [Anchor(trace.sentences[i], float(scores[i])) for i in ranked[:top]]


# --------------------------------------------------------------------------- helpers
def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _matrices(inputs, single: bool = False) -> list[np.ndarray]:
    """Normalise a Trace / array / sequence of them into a list of float64 ``[L, H, S, S]`` arrays."""
    if hasattr(inputs, "sentence_attention_sum") or hasattr(inputs, "shape"):
        inputs = [inputs]
    elif single:
        raise ValueError("expected one Trace or one [L, H, S, S] array, got a sequence")
    out = []
    for item in inputs:
        matrix = sentence_attention(item) if hasattr(item, "sentence_attention_sum") else _as_numpy(item)
        if matrix.ndim != 4 or matrix.shape[-1] != matrix.shape[-2]:
            raise ValueError(f"sentence attention should be [L, H, S, S], got shape {matrix.shape}")
        out.append(np.asarray(matrix, dtype=np.float64))
    if not out:
        raise ValueError("no traces given")
    if len({m.shape[:2] for m in out}) > 1:
        raise ValueError(f"traces disagree on layers x heads: {sorted({m.shape[:2] for m in out})}")
    return out


def _check_heads(heads, shape) -> list[tuple[int, int]]:
    heads = [(int(layer), int(head)) for layer, head in heads]
    if not heads:
        raise ValueError("receiver_heads is empty: give at least one (layer, head) pair")
    bad = [(layer, head) for layer, head in heads if not (0 <= layer < shape[0] and 0 <= head < shape[1])]
    if bad:
        raise ValueError(f"receiver heads {bad} out of range for {shape[0]} layers x {shape[1]} heads")
    return heads


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
