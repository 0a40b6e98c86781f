"""Per-trace anchors over the corpus receiver heads, and the corpus's per-tag, position and label summaries.

`analyse_traces(run, entries, receiver_heads)` reads the traces one at a time and gives each one's
anchor scores over those heads (`anchors.anchor_scores`) and its top anchors; each sentence's function
tag (from the input's labels when they carry tags, else the shipped tagger on the trace's own sentences,
`tagging.tag_sentences`) and label columns (carried over by character overlap,
`inputs.InputLabels.carry_over`). It returns a `TraceAnalysis` per trace and a row per sentence.

From the rows: per-tag anchor-score distributions, raw score and within-trace percentile (`tag_rows`);
the relative position of the anchors in their traces beside that of all scored sentences
(`anchor_positions`); and the Spearman correlation of the anchor score with every label column (mean
over traces, and pooled over all sentences after replacing each trace's values by within-trace
percentile ranks), with the position baseline (`anchors.position_baseline`: earlier sentences first)
beside it (`label_correlations`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stream_widgets.corpus.manifest import CorpusRun, TraceEntry

__all__ = [
    "POSITION_BINS",
    "TraceAnalysis",
    "analyse_traces",
    "anchor_positions",
    "label_correlations",
    "tag_rows",
]

POSITION_BINS = 10
"""Bins of the relative-position histogram (over [0, 1])."""


@dataclass(frozen=True)
class TraceAnalysis:
    """One trace of the corpus, analysed.

    Attributes:
        id, group: As in ``corpus.json``.
        tokens, sentences: Its size.
        scored: Sentences with an anchor score.
        tag_source: ``"labels"`` (the input's tags, carried over) or ``"tagger"`` (the shipped tagger).
        top_anchors: The top anchors, best first: ``{"index", "score", "tag", "position", "text"}``.
        spearman: Label column -> Spearman of the anchor score with it in this trace (None when it has
            fewer than 3 finite pairs or a side is constant).
        baseline_spearman: Label column -> the position baseline's Spearman with it.
    """

    id: str
    group: str
    tokens: int
    sentences: int
    scored: int
    tag_source: str
    top_anchors: list[dict]
    spearman: dict[str, float | None] = field(default_factory=dict)
    baseline_spearman: dict[str, float | None] = field(default_factory=dict)


# ----------------------------------------------------------------- numbers
def _spearman(x, y) -> float | None:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return None
    return float(spearmanr(x[keep], y[keep]).statistic)


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Within-trace percentile ranks in (0, 1) of the finite values (NaN elsewhere)."""
    from scipy.stats import rankdata

    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.any():
        out[ok] = (rankdata(values[ok]) - 0.5) / ok.sum()
    return out


def _quartiles(values: list[float]) -> dict:
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not finite.size:
        return {"mean": None, "q1": None, "median": None, "q3": None, "low": None, "high": None}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    iqr = q3 - q1
    inside = finite[(finite >= q1 - 1.5 * iqr) & (finite <= q3 + 1.5 * iqr)]
    return {
        "mean": float(finite.mean()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "low": float(inside.min()),  # whiskers: the furthest values within 1.5 IQR (Tukey)
        "high": float(inside.max()),
    }


# ----------------------------------------------------------------- the traces
def analyse_traces(
    run: CorpusRun,
    entries: Iterable[TraceEntry],
    receiver_heads: Sequence[tuple[int, int]],
    *,
    variant: str,
    min_later: int,
    top: int,
) -> tuple[list[TraceAnalysis], list[dict]]:
    """Anchors, tags and label columns of the traces `entries` of `run` (see the module docstring).

    Args:
        run: The corpus run (its manifest).
        entries: The entries to analyse, in corpus order (may be wrapped in a progress bar).
        receiver_heads: The ``(layer, head)`` pairs averaged for the anchor scores.
        variant: Vertical-score variant.
        min_later: Later sentences a sentence needs for a score.
        top: Anchors listed per trace.

    Returns:
        One `TraceAnalysis` per trace, and one row per sentence of them (the columns of the report's
        ``sentences.csv``).
    """
    from stream_widgets.anchors import anchor_scores, position_baseline

    nlp = None
    traces, rows = [], []
    for entry in entries:
        trace = run.load(entry)
        scores = anchor_scores(trace, receiver_heads, variant=variant, min_later=min_later)
        s = len(trace.sentences)
        labels = run.labels(entry)
        carried = labels.carry_over(trace.sentences) if labels is not None else None
        if carried is not None and labels.function_tags is not None:
            tags, source = list(carried.function_tags), "labels"
        else:
            import tagging

            nlp = nlp or tagging.load()
            tags = [t.tag for t in tagging.tag_sentences([x.text for x in trace.sentences], nlp=nlp)]
            source = "tagger"
        columns = {
            name: np.asarray(values, dtype=np.float64)
            for name, values in (carried.importance.items() if carried is not None else ())
        }
        baseline = position_baseline(s)
        # correlations of the baseline on the sentences with an anchor score: both on the same sentences
        compared = np.where(np.isfinite(scores), baseline, np.nan)
        percentile = _percentiles(scores)
        order = [
            i
            for i in np.lexsort((np.arange(s), -np.nan_to_num(scores, nan=-np.inf)))
            if np.isfinite(scores[i])
        ]
        rank = {int(i): r + 1 for r, i in enumerate(order)}
        best = [int(i) for i in order[:top]]
        position = np.arange(s) / max(s - 1, 1)
        texts = [x.text for x in trace.sentences]
        for i in range(s):
            rows.append(
                {
                    "trace": entry.id,
                    "group": entry.group,
                    "index": i,
                    "position": float(position[i]),
                    "tag": tags[i],
                    "anchor_score": float(scores[i]),
                    "percentile": float(percentile[i]),
                    "rank": rank.get(i),
                    "top_anchor": i in best,
                    "position_baseline": float(baseline[i]),
                    **{name: float(values[i]) for name, values in columns.items()},
                    "char_start": trace.sentences[i].char_start,
                    "char_end": trace.sentences[i].char_end,
                    "sentence": texts[i],
                }
            )
        traces.append(
            TraceAnalysis(
                id=entry.id,
                group=entry.group,
                tokens=trace.seq_len,
                sentences=s,
                scored=len(order),
                tag_source=source,
                top_anchors=[
                    {
                        "index": i,
                        "score": float(scores[i]),
                        "tag": tags[i],
                        "position": float(position[i]),
                        "text": texts[i],
                    }
                    for i in best
                ],
                spearman={name: _spearman(scores, values) for name, values in columns.items()},
                baseline_spearman={name: _spearman(compared, values) for name, values in columns.items()},
            )
        )
        del trace
    return traces, rows


# ----------------------------------------------------------------- summaries
def tag_rows(rows: list[dict]) -> list[dict]:
    """Per tag: sentence counts, anchor-score and percentile quartiles, share of the top anchors."""
    tags: dict[str, list[dict]] = {}
    for row in rows:
        tags.setdefault(row["tag"], []).append(row)
    total = len(rows)
    anchors = sum(row["top_anchor"] for row in rows)
    out = []
    for tag, members in sorted(tags.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        scored = [r for r in members if math.isfinite(r["anchor_score"])]
        top = sum(r["top_anchor"] for r in members)
        out.append(
            {
                "tag": tag,
                "sentences": len(members),
                "scored": len(scored),
                "sentence_share": len(members) / total if total else None,
                "top_anchors": top,
                "top_anchor_share": top / anchors if anchors else None,
                "score": _quartiles([r["anchor_score"] for r in scored]),
                "percentile": _quartiles([r["percentile"] for r in scored]),
            }
        )
    return out


def anchor_positions(rows: list[dict]) -> dict:
    """The histograms (`POSITION_BINS` bins over [0, 1]) of the top anchors' relative positions and of all
    scored sentences', and the share of the top anchors in the last 30% of their traces."""
    edges = np.linspace(0.0, 1.0, POSITION_BINS + 1)
    anchors = [r["position"] for r in rows if r["top_anchor"]]
    scored = [r["position"] for r in rows if math.isfinite(r["anchor_score"])]
    return {
        "edges": edges.tolist(),
        "anchors": np.histogram(anchors, bins=edges)[0].tolist(),
        "sentences": np.histogram(scored, bins=edges)[0].tolist(),
        "anchors_in_last_30_percent": float(np.mean(np.asarray(anchors) >= 0.7)) if anchors else None,
    }


def label_correlations(rows: list[dict], traces: list[TraceAnalysis], columns: list[str]) -> list[dict]:
    """Per label column: the anchor score's and the position baseline's Spearman, per trace and pooled."""
    by_trace: dict[str, list[dict]] = {}
    for row in rows:
        by_trace.setdefault(row["trace"], []).append(row)
    out = []
    for name in columns:
        entry = {"column": name}
        for score, per_trace in (("anchor_score", "spearman"), ("position_baseline", "baseline_spearman")):
            values = [getattr(t, per_trace).get(name) for t in traces]
            finite = [v for v in values if v is not None]
            pooled_x, pooled_y = [], []
            for members in by_trace.values():
                x = np.asarray([r[score] for r in members], dtype=np.float64)
                y = np.asarray([r.get(name, math.nan) for r in members], dtype=np.float64)
                scored = np.asarray([r["anchor_score"] for r in members], dtype=np.float64)
                keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(scored)
                if keep.sum() >= 2:
                    pooled_x.append(_percentiles(x[keep]))
                    pooled_y.append(_percentiles(y[keep]))
            pooled = _spearman(np.concatenate(pooled_x), np.concatenate(pooled_y)) if pooled_x else None
            entry[score] = {
                "mean_per_trace": float(np.mean(finite)) if finite else None,
                "traces": len(finite),
                "pooled": pooled,
                "pooled_sentences": int(sum(len(x) for x in pooled_x)),
            }
        out.append(entry)
    return out
