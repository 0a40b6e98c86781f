"""Corpus analysis from the saved traces, without the model: receiver heads, anchors, tags, labels.

`analyse_corpus(out)` reads a folder written by `run_corpus`, one trace at a time (load, compute, drop:
memory is that of the largest trace, ``[L, H, S, S]`` float32 sentence attention), in two passes:

1. Receiver heads: every trace's per-head Fisher kurtosis of its vertical scores
   (`receivers.trace_kurtosis`, for `vertical.DEFAULT_VARIANT` and `vertical.DEFAULT_MIN_LATER` unless
   asked otherwise), averaged over the traces (as Thought Anchors does), with the split-half reliability
   of per-head kurtosis over the traces' groups (`receivers.split_half_reliability`: each split gives
   half of the groups, e.g. problems, to each side). The result is a `receivers.CorpusHeads`.
2. Anchors: every trace's anchor scores over those heads (`anchors.anchor_scores`) and its top anchors;
   each sentence's function tag (from the input's labels when they carry tags, else the shipped tagger
   on the trace's own sentences, `tagging.tag_sentences`) and label columns (carried over by character
   overlap, `inputs.InputLabels.carry_over`).

From these: per-tag anchor-score distributions (raw score and within-trace percentile), the relative
position of the anchors in their traces beside that of all scored sentences, and the Spearman
correlation of the anchor score with every label column (mean over traces, and pooled over all
sentences after replacing each trace's values by within-trace percentile ranks), with the position
baseline (`anchors.position_baseline`: earlier sentences first) beside it.

`corpus_report(out)` runs the analysis and writes the heads (``out/receiver_heads/<model>.json``, the
format of the shipped heads: `receivers.corpus_heads(model_id, variant, directory=out /
"receiver_heads")` reads it, and so does `load_corpus_heads(out)`) and the report
(``out/report/``: ``report.html``, ``summary.json``, ``sentences.csv``, ``tags.csv``,
``correlations.csv``, ``traces.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_widgets.corpus.runner import CorpusRun

__all__ = [
    "HEADS_DIR",
    "POSITION_BINS",
    "REPORT_DIR",
    "CorpusAnalysis",
    "TraceAnalysis",
    "analyse_corpus",
    "corpus_report",
    "load_corpus_heads",
]

HEADS_DIR = "receiver_heads"
REPORT_DIR = "report"
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


@dataclass(frozen=True)
class CorpusAnalysis:
    """What `analyse_corpus` finds: plain numbers and lists, ready for the report.

    Attributes:
        out: The corpus folder.
        heads: The corpus receiver heads (`receivers.CorpusHeads`: pooled kurtosis, reliability).
        receiver_heads: The ``(layer, head)`` pairs averaged for the anchor scores.
        settings: The run's settings (``corpus.json``) plus the analysis's (variant, min_later, ...).
        traces: One `TraceAnalysis` per trace analysed, in corpus order.
        left_out: ``{"id", "reason"}`` of every corpus entry not analysed (failed, pending, unreadable,
            too short for a kurtosis).
        sentences: One row per sentence of the analysed traces (the columns of ``sentences.csv``).
        tags: Per-tag rows (the columns of ``tags.csv``), most frequent tag first.
        positions: ``{"edges", "anchors", "sentences"}``: the histogram of the top anchors' relative
            positions and of all scored sentences' (counts per bin).
        correlations: Per label column: anchor score and position baseline, per trace and pooled.
        label_columns: The label columns found.
    """

    out: Path
    heads: object
    receiver_heads: list[tuple[int, int]]
    settings: dict
    traces: list[TraceAnalysis]
    left_out: list[dict]
    sentences: list[dict]
    tags: list[dict]
    positions: dict
    correlations: list[dict]
    label_columns: list[str]

    def summary(self) -> dict:
        """The JSON summary (``summary.json``)."""
        heads = self.heads
        return _json_safe(
            {
                "model_id": heads.model_id,
                "settings": self.settings,
                "traces": len(self.traces),
                "groups": heads.reliability.groups,
                "sentences": len(self.sentences),
                "receiver_heads": [list(h) for h in self.receiver_heads],
                "split_half_reliability": {
                    "mean_r": heads.reliability.mean_r,
                    "splits": len(heads.reliability.r),
                    "groups": heads.reliability.groups,
                },
                "left_out": self.left_out,
                "label_columns": self.label_columns,
                "tags": self.tags,
                "positions": self.positions,
                "correlations": self.correlations,
                "per_trace": [
                    {
                        "id": t.id,
                        "group": t.group,
                        "tokens": t.tokens,
                        "sentences": t.sentences,
                        "scored": t.scored,
                        "tag_source": t.tag_source,
                        "top_anchors": t.top_anchors,
                        "spearman": t.spearman,
                        "baseline_spearman": t.baseline_spearman,
                    }
                    for t in self.traces
                ],
            }
        )


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


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------- the analysis
def analyse_corpus(
    out: str | os.PathLike,
    *,
    variant: str | None = None,
    min_later: int | None = None,
    top_heads: int = 20,
    top: int = 5,
    splits: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> CorpusAnalysis:
    """Analyse the traces of a corpus folder (see the module docstring); needs no model.

    Args:
        out: A folder written by `run_corpus` (its ``corpus.json`` lists the traces).
        variant: Vertical-score variant; `vertical.DEFAULT_VARIANT` if None.
        min_later: Later sentences a sentence needs for a score; `vertical.DEFAULT_MIN_LATER` if None.
        top_heads: Receiver heads to average (at most L x H).
        top: Anchors listed per trace (the "top anchors" of the position view).
        splits: Random splits of the split-half reliability.
        seed: Seed of those splits.
        progress: Progress bars on stderr.

    Returns:
        The `CorpusAnalysis`.

    Raises:
        FileNotFoundError: If `out` has no ``corpus.json``.
        ValueError: If no trace is done, the traces are of different models or shapes, or none has
            enough sentences for a kurtosis (4 scored sentences).
    """
    from stream_widgets import receivers
    from stream_widgets.vertical import (
        DEFAULT_MIN_LATER,
        DEFAULT_VARIANT,
        PROXIMITY_IGNORE,
        VARIANTS,
        check_count,
        sentence_attention,
        vertical_scores,
    )

    variant = DEFAULT_VARIANT if variant is None else variant
    min_later = DEFAULT_MIN_LATER if min_later is None else min_later
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    check_count("min_later", min_later, 1)
    check_count("top_heads", top_heads, 1)
    check_count("top", top, 1)
    run = CorpusRun.load_manifest(out)
    left_out = [
        {"id": e.id, "reason": e.error if e.status == "failed" else "not traced yet (pending)"}
        for e in run.entries
        if e.status != "done"
    ]
    done = run.done
    if not done:
        raise ValueError(f"no trace of {run.out} is done yet: run the corpus command first")
    bar = _bar(progress)

    # pass 1: per-trace kurtosis, pooled
    kurtosis, used, model_ids = [], [], set()
    for entry in bar(done, "receiver heads"):
        try:
            trace = run.load(entry)
        except (OSError, ValueError) as error:
            left_out.append({"id": entry.id, "reason": f"unreadable trace file: {error}"})
            continue
        if not trace.sentences or trace.sentence_attention_sum is None:
            left_out.append({"id": entry.id, "reason": "the trace has no sentence attention"})
            continue
        model_ids.add(trace.model_id)
        scores = vertical_scores(
            sentence_attention(trace), PROXIMITY_IGNORE, variant=variant, min_later=min_later
        )
        k = receivers.score_kurtosis(scores)
        del trace, scores
        if np.isnan(k).all():
            left_out.append(
                {"id": entry.id, "reason": "fewer than 4 sentences with a score: no kurtosis, left out"}
            )
            continue
        kurtosis.append(k)
        used.append(entry)
    if len(model_ids) > 1:
        raise ValueError(
            f"the corpus mixes traces of several models ({sorted(model_ids)}): analyse one at a time"
        )
    if not used:
        raise ValueError(
            f"no trace of {run.out} has 4 or more sentences with a score: receiver heads need longer traces"
        )
    if len({k.shape for k in kurtosis}) > 1:
        raise ValueError(f"the traces disagree on layers x heads: {sorted({k.shape for k in kurtosis})}")
    stacked = np.stack(kurtosis)
    groups = [e.group for e in used]
    if len(set(groups)) >= 2:
        reliability = receivers.split_half_reliability(stacked, groups, splits=splits, seed=seed)
    else:  # one group: no split can be made; the heads are still pooled
        reliability = receivers.SplitHalf(float("nan"), (), len(set(groups)))
    counts = (~np.isnan(stacked)).sum(axis=0)
    pooled = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
    heads = receivers.CorpusHeads(
        model_id=model_ids.pop(),
        variant=variant,
        kurtosis=pooled,
        reliability=reliability,
        traces=tuple(e.id for e in used),
        proximity_ignore=PROXIMITY_IGNORE,
        min_later=min_later,
        notes={
            "source": f"stream-widgets corpus analysis of {run.out}",
            "tokens": [e.tokens for e in used],
            "config": run.settings.get("config"),
            "mode": run.settings.get("mode"),
            "max_tokens": run.settings.get("max_tokens"),
        },
    )
    chosen = heads.heads(top_heads)

    # pass 2: anchors, tags, labels
    from stream_widgets.anchors import anchor_scores, position_baseline

    nlp = None
    traces, rows = [], []
    for entry in bar(used, "anchors"):
        trace = run.load(entry)
        scores = anchor_scores(trace, chosen, variant=variant, min_later=min_later)
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
    label_columns = sorted({name for t in traces for name in t.spearman})
    settings = {
        **run.settings,
        "variant": variant,
        "min_later": min_later,
        "proximity_ignore": PROXIMITY_IGNORE,
        "top_heads": len(chosen),
        "top_anchors": top,
    }
    return CorpusAnalysis(
        out=run.out,
        heads=heads,
        receiver_heads=chosen,
        settings=settings,
        traces=traces,
        left_out=left_out,
        sentences=rows,
        tags=_tag_rows(rows),
        positions=_positions(rows),
        correlations=_correlations(rows, traces, label_columns),
        label_columns=label_columns,
    )


def _bar(progress: bool):
    def bar(items, what: str):
        if not progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=what, unit="trace", file=sys.stderr, leave=False)

    return bar


def _tag_rows(rows: list[dict]) -> list[dict]:
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


def _positions(rows: list[dict]) -> dict:
    edges = np.linspace(0.0, 1.0, POSITION_BINS + 1)
    anchors = [r["position"] for r in rows if r["top_anchor"]]
    scored = [r["position"] for r in rows if math.isfinite(r["anchor_score"])]
    return {
        "edges": edges.tolist(),
        "anchors": np.histogram(anchors, bins=edges)[0].tolist(),
        "sentences": np.histogram(scored, bins=edges)[0].tolist(),
        "anchors_in_last_30_percent": float(np.mean(np.asarray(anchors) >= 0.7)) if anchors else None,
    }


def _correlations(rows: list[dict], traces: list[TraceAnalysis], columns: list[str]) -> list[dict]:
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


# ----------------------------------------------------------------- files
def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            ["" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in row]
        )
    return buffer.getvalue()


def _csv_files(analysis: CorpusAnalysis) -> dict[str, str]:
    columns = analysis.label_columns
    sentence_header = [
        "trace",
        "group",
        "index",
        "position",
        "tag",
        "anchor_score",
        "percentile",
        "rank",
        "top_anchor",
        "position_baseline",
        *columns,
        "char_start",
        "char_end",
        "sentence",
    ]
    sentences = _csv(
        sentence_header,
        [[row.get(key, math.nan) for key in sentence_header] for row in analysis.sentences],
    )
    stats = ("mean", "q1", "median", "q3")
    tag_header = [
        "tag",
        "sentences",
        "scored",
        "sentence_share",
        "top_anchors",
        "top_anchor_share",
        *(f"score_{s}" for s in stats),
        *(f"percentile_{s}" for s in stats),
    ]
    tags = _csv(
        tag_header,
        [
            [row[k] for k in tag_header[:6]]
            + [row["score"][s] for s in stats]
            + [row["percentile"][s] for s in stats]
            for row in analysis.tags
        ],
    )
    correlation_header = ["column"] + [
        f"{score}_{part}"
        for score in ("anchor_score", "position_baseline")
        for part in ("mean_per_trace", "traces", "pooled", "pooled_sentences")
    ]
    correlations = _csv(
        correlation_header,
        [
            [row["column"]]
            + [
                row[score][part]
                for score in ("anchor_score", "position_baseline")
                for part in ("mean_per_trace", "traces", "pooled", "pooled_sentences")
            ]
            for row in analysis.correlations
        ],
    )
    trace_header = [
        "id",
        "group",
        "tokens",
        "sentences",
        "scored",
        "tag_source",
        "top_anchor",
        "top_anchor_tag",
    ]
    trace_header += [f"spearman_{c}" for c in columns]
    traces = _csv(
        trace_header,
        [
            [t.id, t.group, t.tokens, t.sentences, t.scored, t.tag_source]
            + ([t.top_anchors[0]["index"], t.top_anchors[0]["tag"]] if t.top_anchors else [None, None])
            + [t.spearman.get(c) for c in columns]
            for t in analysis.traces
        ],
    )
    return {
        "sentences.csv": sentences,
        "tags.csv": tags,
        "correlations.csv": correlations,
        "traces.csv": traces,
    }


def _save_heads(analysis: CorpusAnalysis) -> Path:
    """Write the heads into ``out/receiver_heads/<model>.json``, keeping other variants already there."""
    from stream_widgets import receivers

    directory = analysis.out / HEADS_DIR
    heads = analysis.heads
    entries = [heads]
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            kept = [
                receivers.CorpusHeads.from_dict(e)
                for e in json.loads(path.read_text(encoding="utf-8"))["variants"]
            ]
        except (ValueError, KeyError, TypeError):
            continue
        entries += [
            e
            for e in kept
            if e.model_id == heads.model_id
            and (e.variant, e.proximity_ignore, e.min_later)
            != (heads.variant, heads.proximity_ignore, heads.min_later)
        ]
    return receivers.save_corpus_heads(entries, directory)


def corpus_report(
    out: str | os.PathLike, report_dir: str | os.PathLike | None = None, *, progress: bool = True, **options
) -> Path:
    """Analyse a corpus folder and write its heads and its report; returns the report's HTML path.

    Writes ``out/receiver_heads/<model>.json`` (`load_corpus_heads` reads it) and, into `report_dir`
    (``out/report`` if None), all at once (`storage.write_files`): ``report.html`` (offline: Bokeh
    inlined, no network), ``summary.json``, ``sentences.csv``, ``tags.csv``, ``correlations.csv`` and
    ``traces.csv``.

    Args:
        out: A folder written by `run_corpus`.
        report_dir: Where the report goes.
        progress: Progress bars on stderr.
        **options: As in `analyse_corpus` (variant, min_later, top_heads, top, splits, seed).
    """
    from stream_widgets.storage import write_files
    from stream_widgets.views.corpus_report import corpus_html

    analysis = analyse_corpus(out, progress=progress, **options)
    _save_heads(analysis)
    target = Path(report_dir) if report_dir is not None else analysis.out / REPORT_DIR
    files = _csv_files(analysis)
    files["summary.json"] = (
        json.dumps(analysis.summary(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    )
    files["report.html"] = corpus_html(analysis)
    write_files(target, files)
    return target / "report.html"


def load_corpus_heads(out: str | os.PathLike, variant: str | None = None, *, min_later: int | None = None):
    """The receiver heads a corpus analysis found (`corpus_report`), as a `receivers.CorpusHeads`.

    Use them for the anchors of any trace of the same model:
    ``thought_anchors(trace, receiver_heads=load_corpus_heads(out).heads(20))``, ``explore(trace,
    receiver_heads=...)``, or ``stream-widgets anchors TRACE --corpus OUT``.

    Args:
        out: The corpus folder (or its ``receiver_heads`` folder).
        variant: The vertical-score variant the heads were pooled for; `vertical.DEFAULT_VARIANT` if None.
        min_later: Their ``min_later``; `vertical.DEFAULT_MIN_LATER` if None.

    Raises:
        FileNotFoundError: If the folder has no analysed heads.
        ValueError: If there are none for this variant and min_later.
    """
    from stream_widgets import receivers
    from stream_widgets.vertical import DEFAULT_MIN_LATER, DEFAULT_VARIANT

    variant = DEFAULT_VARIANT if variant is None else variant
    min_later = DEFAULT_MIN_LATER if min_later is None else min_later
    out = Path(out)
    directory = out if out.name == HEADS_DIR else out / HEADS_DIR
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no corpus receiver heads in {directory}: run `stream-widgets corpus-report {out}` first"
        )
    found = []
    for path in files:
        try:
            found += [
                receivers.CorpusHeads.from_dict(e)
                for e in json.loads(path.read_text(encoding="utf-8"))["variants"]
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a corpus-heads file ({error})") from None
    for heads in found:
        if (heads.variant, heads.min_later) == (variant, min_later):
            return heads
    have = sorted({(h.variant, h.min_later) for h in found})
    raise ValueError(
        f"{directory} has receiver heads for (variant, min_later) {have}, not ({variant!r}, {min_later}): run "
        f"`stream-widgets corpus-report {out} --variant {variant} --min-later {min_later}`"
    )
