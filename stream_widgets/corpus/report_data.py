"""What a corpus analysis found, as the report holds it: `CorpusAnalysis`, its JSON summary and its tables.

`CorpusAnalysis` is plain numbers and lists (no trace, no model): the corpus heads, one `TraceAnalysis`
per trace, one row per sentence, the per-tag, position and label-correlation summaries. `summary()`
gives ``summary.json``, `csv_files(analysis)` the report's tables (``sentences.csv``, ``tags.csv``,
``correlations.csv``, ``traces.csv``; NaN and None as empty cells); `views.corpus_report.corpus_html`
draws the page from the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from stream_widgets import storage
from stream_widgets.corpus.trace_anchors import TraceAnalysis

__all__ = ["CorpusAnalysis", "csv_files"]


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
        return storage.json_safe(
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


def csv_files(analysis: CorpusAnalysis) -> dict[str, str]:
    """The report's tables as CSV text: ``sentences.csv``, ``tags.csv``, ``correlations.csv``, ``traces.csv``."""
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
