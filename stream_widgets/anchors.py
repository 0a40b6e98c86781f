"""Thought anchors: the sentences later reasoning keeps attending to, with the evidence to check each one.

The pipeline (after Bogdan et al., "Thought Anchors", arXiv 2506.19143), on a Stream trace's sentence
sums, never on token x token weights:

1. `sentence_attention` and `vertical_scores` (`stream_widgets.vertical`): how much the sentences well
   after sentence j attend to it, per (layer, head), in one of three `VARIANTS`.
2. Receiver heads (`stream_widgets.receivers`): the heads whose vertical scores are most heavy-tailed.
   By default the heads found across a corpus of traces of the same model (shipped for the default
   SmolLM2-135M and the opt-in Qwen2.5-Coder-0.5B, `receivers.corpus_heads`), else the trace's own.
3. `anchor_scores`: the mean vertical score over the receiver heads; `thought_anchors`: the top sentences,
   each an `Anchor` carrying its evidence (`anchor_evidence`): a position-only baseline (earlier
   sentences first), the attention-suppression importance when one is given (`stream_widgets.suppression`),
   and any black-box importance the input carries (e.g. the bundled traces' resampling scores).

Which variant and settings agree best with causal importance is measured by `benchmarks/anchors.py`
(docs/anchors.md); `DEFAULT_VARIANT` and `DEFAULT_MIN_LATER` follow it, and Thought Anchors' own
settings stay available (``variant="raw"`` or ``"depth"``, ``min_later=1``).

Outputs are numpy arrays (float64) so that they go straight to the views (`ExploreData`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from stream_widgets import receivers
from stream_widgets.receivers import corpus_heads, head_kurtosis, receiver_heads, trace_kurtosis
from stream_widgets.sentences import Sentence
from stream_widgets.vertical import (
    DEFAULT_MIN_LATER,
    DEFAULT_VARIANT,
    PROXIMITY_IGNORE,
    VARIANTS,
    Variant,
    as_matrices,
    check_count,
    mean_sentence_attention,
    sentence_attention,
    vertical_scores,
)

if TYPE_CHECKING:
    from stream_widgets.traces import Trace

__all__ = [
    "DEFAULT_MIN_LATER",
    "DEFAULT_VARIANT",
    "HEAD_SOURCES",
    "POSITION_BASELINE",
    "PROXIMITY_IGNORE",
    "SUPPRESSION_IMPORTANCE",
    "VARIANTS",
    "Anchor",
    "anchor_evidence",
    "anchor_scores",
    "choose_heads",
    "head_kurtosis",
    "mean_sentence_attention",
    "position_baseline",
    "receiver_heads",
    "sentence_attention",
    "thought_anchors",
    "trace_kurtosis",
    "vertical_scores",
]

HEAD_SOURCES = ("corpus", "trace")
"""Named choices of receiver heads: the model's shipped corpus heads, or the trace's own."""
POSITION_BASELINE = "position baseline"
"""Evidence name of the position-only baseline."""
SUPPRESSION_IMPORTANCE = "suppression importance"
"""Evidence name of the attention-suppression importance."""

HeadChoice = Sequence[tuple[int, int]] | Literal["corpus", "trace"] | None


def choose_heads(
    source,
    receiver_heads: HeadChoice = None,
    *,
    top_heads: int = 20,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
    matrix: np.ndarray | None = None,
    vertical: np.ndarray | None = None,
) -> tuple[list[tuple[int, int]], str]:
    """The receiver heads to average, and where they come from (``"given"``, ``"corpus"`` or ``"trace"``).

    Args:
        source: A `Trace` (its `model_id` finds the corpus heads) or an ``[L, H, S, S]`` array.
        receiver_heads: ``(layer, head)`` pairs; ``"corpus"`` for the shipped heads of the trace's model
            (an error if there are none); ``"trace"`` for the `top_heads` of this input alone; None for
            the corpus heads when the model has them, else the trace's own.
        top_heads: How many heads to take from the corpus or the trace (at most L x H).
        variant, proximity_ignore, min_later: As in `vertical_scores`.
        matrix: The ``[L, H, S, S]`` array of `source`, when the caller has it already.
        vertical: Its ``[L, H, S]`` vertical scores for these settings, when the caller has them already.

    Raises:
        ValueError: For ``"corpus"`` without shipped heads, or a trace too short for its own heads (fewer
            than 4 sentences with a score).
    """
    variant = variant or DEFAULT_VARIANT
    if matrix is None:
        (matrix,) = as_matrices(source, single=True)
    shape = matrix.shape[:2]
    count = min(top_heads, shape[0] * shape[1])
    if receiver_heads is not None and not isinstance(receiver_heads, str):
        return _check_heads(receiver_heads, shape), "given"
    if receiver_heads not in (None, *HEAD_SOURCES):
        raise ValueError(f"receiver_heads must be (layer, head) pairs, None or one of {HEAD_SOURCES}")
    if receiver_heads != "trace":
        model = getattr(source, "model_id", None)
        found = (
            None
            if model is None
            else corpus_heads(model, variant, proximity_ignore=proximity_ignore, min_later=min_later)
        )
        if found is not None and found.kurtosis.shape == shape:
            return found.heads(count), "corpus"
        if receiver_heads == "corpus":
            raise ValueError(
                f"no corpus receiver heads ship for {model or 'an array input'} with variant={variant!r}, "
                f"proximity_ignore={proximity_ignore}, min_later={min_later}; use receiver_heads='trace' or "
                "pool your own with stream_widgets.receivers.receiver_heads over many traces"
            )
    if vertical is None:
        vertical = vertical_scores(matrix, proximity_ignore, variant=variant, min_later=min_later)
    kurt = receivers.score_kurtosis(vertical)
    if np.isnan(kurt).all():
        raise ValueError(
            "no trace has 4 or more scored sentences: receiver heads need longer traces "
            f"(more than proximity_ignore + min_later + 2 = {proximity_ignore + min_later + 2} sentences)"
        )
    return receivers.top_heads(kurt, count), "trace"


def anchor_scores(
    inputs,
    receiver_heads: HeadChoice = None,
    *,
    top_heads: int = 20,
    variant: Variant | None = None,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
) -> np.ndarray:
    """Anchor score of every sentence: its vertical score averaged over the receiver heads.

    Args:
        inputs: A `Trace` or an ``[L, H, S, S]`` sentence-attention array.
        receiver_heads: As in `choose_heads` (pairs, ``"corpus"``, ``"trace"`` or None).
        top_heads: Receiver heads to take when they are not given (all heads if the model has fewer).
        variant, proximity_ignore, min_later: As in `vertical_scores`.

    Returns:
        float64 ``[S]``, NaN for the sentences without a vertical score (the last few).
    """
    (matrix,) = as_matrices(inputs, single=True)
    kwargs = {"variant": variant, "proximity_ignore": proximity_ignore, "min_later": min_later}
    heads, _ = choose_heads(inputs, receiver_heads, top_heads=top_heads, matrix=matrix, **kwargs)
    layers, head_ids = zip(*heads, strict=True)
    scores = vertical_scores(
        matrix[list(layers), list(head_ids)], proximity_ignore, variant=variant, min_later=min_later
    )
    return scores.mean(axis=0)


def position_baseline(num_sentences: int) -> np.ndarray:
    """The position-only baseline: ``1 - j / (S - 1)`` for sentence j, i.e. "earlier sentences matter more".

    Any score that correlates with causal importance no better than this says nothing beyond position.
    """
    check_count("num_sentences", num_sentences, 1)
    return 1.0 - np.arange(num_sentences) / max(num_sentences - 1, 1)


def anchor_evidence(
    num_sentences: int,
    *,
    suppression=None,
    importance: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-sentence evidence to read beside the attention anchor score.

    Args:
        num_sentences: S.
        suppression: ``[S, S]`` from `suppression.suppression_matrix`, or its ``[S]`` importance, or None.
        importance: Name -> ``[S]`` black-box importance per sentence (NaN where missing), e.g.
            ``BundledTrace.labels_for(trace.sentences).importance``; None for none.

    Returns:
        Name -> float64 ``[S]``: always `POSITION_BASELINE`; `SUPPRESSION_IMPORTANCE` when given; each
        importance column (all-NaN columns left out).
    """
    evidence = {POSITION_BASELINE: position_baseline(num_sentences)}
    if suppression is not None:
        values = np.asarray(suppression, dtype=np.float64)
        if values.ndim == 2:
            from stream_widgets.suppression import suppression_importance

            values = suppression_importance(values)
        if values.shape != (num_sentences,):
            raise ValueError(f"suppression has shape {values.shape} for {num_sentences} sentences")
        evidence[SUPPRESSION_IMPORTANCE] = values
    for name, column in (importance or {}).items():
        values = np.asarray(column, dtype=np.float64)
        if values.shape != (num_sentences,):
            raise ValueError(f"importance {name!r} has {values.shape} values for {num_sentences} sentences")
        if not np.isnan(values).all():
            evidence[str(name)] = values
    return evidence


@dataclass(frozen=True)
class Anchor:
    """One thought anchor: a sentence of the trace, its anchor score and the evidence beside it.

    Attributes:
        sentence: The `Sentence` (index, text, character and token spans).
        score: Its anchor score (mean vertical score over the receiver heads; the unit depends on the
            variant: attention probability for ``"raw"``, rank fraction for ``"depth"``, times the
            head's usual attention at that distance for ``"distance"``).
        receiver_heads: The ``(layer, head)`` pairs averaged.
        heads_from: Where they came from: ``"given"``, ``"corpus"`` or ``"trace"``.
        evidence: Name -> the sentence's value of each `anchor_evidence` column (NaN where missing).
    """

    sentence: Sentence
    score: float
    receiver_heads: tuple[tuple[int, int], ...] = ()
    heads_from: str = "given"
    evidence: dict[str, float] = field(default_factory=dict)

    @property
    def index(self) -> int:
        """The sentence's index in the trace."""
        return self.sentence.index

    @property
    def text(self) -> str:
        """The sentence's text."""
        return self.sentence.text


def thought_anchors(
    trace: Trace | str | os.PathLike,
    receiver_heads: HeadChoice = None,
    top: int = 5,
    *,
    variant: Variant | None = None,
    top_heads: int = 20,
    proximity_ignore: int = PROXIMITY_IGNORE,
    min_later: int = DEFAULT_MIN_LATER,
    matrix=None,
    suppression=None,
    importance: Mapping[str, Sequence[float]] | None = None,
) -> list[Anchor]:
    """The `top` sentences of a trace by anchor score, best first, with their evidence.

    Args:
        trace: A `Trace` with sentences, or the path of one saved with `Trace.save`.
        receiver_heads: As in `choose_heads`: by default the corpus heads of the trace's model when they
            ship, else the `top_heads` of this trace alone; ``"trace"`` forces the latter.
        top: How many anchors (>= 1); fewer come back when fewer sentences have a score.
        variant, proximity_ignore, min_later: As in `vertical_scores`.
        top_heads: Receiver heads to take when they are not given.
        matrix: ``[L, H, S, S]`` sentence attention to use instead of the trace's own (e.g. the dense
            reference of the same text); None for `sentence_attention(trace)`.
        suppression, importance: Evidence, as in `anchor_evidence`.

    Returns:
        Up to `top` `Anchor` objects, highest score first (ties: earlier sentence first).
    """
    if isinstance(trace, str | os.PathLike):
        from stream_widgets.traces import Trace

        trace = Trace.load(trace)
    check_count("top", top, 1)
    (array,) = as_matrices(trace if matrix is None else matrix, single=True)
    kwargs = {"variant": variant, "proximity_ignore": proximity_ignore, "min_later": min_later}
    heads, heads_from = choose_heads(trace, receiver_heads, top_heads=top_heads, matrix=array, **kwargs)
    layers, head_ids = zip(*heads, strict=True)
    scores = vertical_scores(
        array[list(layers), list(head_ids)], proximity_ignore, variant=variant, min_later=min_later
    ).mean(axis=0)
    if len(trace.sentences) != scores.shape[0]:
        raise ValueError(
            f"the matrix has {scores.shape[0]} sentences but the trace has {len(trace.sentences)}"
        )
    evidence = anchor_evidence(len(scores), suppression=suppression, importance=importance)
    ranked = [
        i
        for i in np.lexsort((np.arange(scores.size), -np.nan_to_num(scores, nan=-np.inf)))
        if not np.isnan(scores[i])
    ]
    return [
        Anchor(
            trace.sentences[i],
            float(scores[i]),
            tuple(heads),
            heads_from,
            {name: float(values[i]) for name, values in evidence.items()},
        )
        for i in ranked[:top]
    ]


def _check_heads(heads, shape) -> list[tuple[int, int]]:
    heads = [(int(layer), int(head)) for layer, head in heads]
    if not heads:
        raise ValueError("receiver_heads is empty: give at least one (layer, head) pair")
    bad = [(layer, head) for layer, head in heads if not (0 <= layer < shape[0] and 0 <= head < shape[1])]
    if bad:
        raise ValueError(f"receiver heads {bad} out of range for {shape[0]} layers x {shape[1]} heads")
    return heads
