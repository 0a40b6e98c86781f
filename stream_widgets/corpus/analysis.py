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

Modules: `heads` (pass 1; saving and loading the heads), `trace_anchors` (pass 2 and the summaries of
its rows), `report_data` (`CorpusAnalysis`, its summary and tables); this module runs them in order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from stream_widgets.corpus.heads import HEADS_DIR, load_corpus_heads, pool_heads, save_heads
from stream_widgets.corpus.manifest import CorpusRun
from stream_widgets.corpus.report_data import CorpusAnalysis, csv_files
from stream_widgets.corpus.trace_anchors import (
    POSITION_BINS,
    TraceAnalysis,
    analyse_traces,
    anchor_positions,
    label_correlations,
    tag_rows,
)

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

REPORT_DIR = "report"


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
    from stream_widgets.vertical import (
        DEFAULT_MIN_LATER,
        DEFAULT_VARIANT,
        PROXIMITY_IGNORE,
        VARIANTS,
        check_count,
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
    heads, used, skipped = pool_heads(
        run, bar(done, "receiver heads"), variant=variant, min_later=min_later, splits=splits, seed=seed
    )
    left_out += skipped
    chosen = heads.heads(top_heads)
    # pass 2: anchors, tags, labels
    traces, rows = analyse_traces(
        run, bar(used, "anchors"), chosen, variant=variant, min_later=min_later, top=top
    )
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
        tags=tag_rows(rows),
        positions=anchor_positions(rows),
        correlations=label_correlations(rows, traces, label_columns),
        label_columns=label_columns,
    )


def _bar(progress: bool):
    def bar(items, what: str):
        if not progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, desc=what, unit="trace", file=sys.stderr, leave=False)

    return bar


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
    save_heads(analysis.heads, analysis.out)
    target = Path(report_dir) if report_dir is not None else analysis.out / REPORT_DIR
    files = csv_files(analysis)
    files["summary.json"] = (
        json.dumps(analysis.summary(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    )
    files["report.html"] = corpus_html(analysis)
    write_files(target, files)
    return target / "report.html"
