"""The phase-tag report: one standalone HTML file plus a JSON and a CSV summary (and tag corrections).

`write_report(data, out_dir)` writes its files as one set (`storage.write_files`: a kill leaves the old
report or the new one, never a mix):

- `report.html`: the shared views of `figures.build_views` with Bokeh's JavaScript inlined, so it opens
  offline from disk with no server and no network request. The views render and link in the browser
  through the same callbacks as the notebook explorer; the report only packs the data its own pickers
  feed into the shared sources (`report_packing`, `report_page`): every (layer, head) matrix (a layer
  picker and a head picker), the bars of each, the token view's rows, the tag filter and the tag
  correction picker.
- `summary.json`: counts, top anchors with their evidence, tag counts and per-tag anchor summaries
  ("n scored of m"), which matrices the HTML holds and at what resolution, meta, the route.
- `sentences.csv`: one row per sentence: text, tag (and the tagger's, when corrected), confidence,
  anchor score (empty when not scored), evidence scores, character span.
- `tag_corrections.json` (`views.corrections`), when the data has corrections. A `tag_corrections.json`
  already in `out_dir` (e.g. downloaded from the report's page and put there) is re-applied first.

Size: Bokeh's JavaScript (about 1.6 MB) plus the packed matrices within `max_matrix_bytes` (raw bytes,
base64 adds a third): the receiver-head average at `max_size` bins, then the layer means and receiver
heads, then every other head, each group pooled to fewer bins when the budget needs it; what was pooled
or left out is said on the page and in `summary.json` (`report_packing`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from stream_widgets import storage
from stream_widgets.views import corrections as corrections_io
from stream_widgets.views.data import ExploreData
from stream_widgets.views.matrices import spearman, tag_table
from stream_widgets.views.report_page import build_document

__all__ = ["REPORT_FILES", "write_report"]

#: The files `write_report` always writes into its output folder (plus `tag_corrections.json` when
#: there are corrections).
REPORT_FILES = ("report.html", "summary.json", "sentences.csv")


# ---------------------------------------------------------------------------- summary files


def _summary(data: ExploreData, packed: dict, tokens_packed: dict | None, top_anchors: int) -> dict:
    counts = {t: int(sum(1 for x in data.tags if x == t)) for t in data.tags_present()}
    table = tag_table(data.tags, data.anchor_scores, data.tags_present())
    evidence = {name: list(spearman(data.anchor_scores, values)) for name, values in data.evidence.items()}
    return {
        "n_sentences": data.n_sentences,
        "n_scored": int(data.scored.sum()),
        "n_layers": data.n_layers,
        "n_heads": data.n_heads,
        "receiver_heads": [list(h) for h in data.receiver_heads],
        "receiver_heads_source": data.meta.get("receiver_heads_source", "given"),
        "score_variant": data.meta.get("score_variant"),
        "top_anchors": [
            {
                "index": i,
                "sentence": data.sentences[i],
                "tag": data.tags[i],
                "tag_confidence": float(data.tag_confidence[i]),
                "anchor_score": float(data.anchor_scores[i]),
                "evidence": {name: float(values[i]) for name, values in data.evidence.items()},
                "char_span": list(data.char_spans[i]),
            }
            for i in data.top_anchors(top_anchors)
        ],
        "tag_counts": counts,
        "mean_anchor_score_per_tag": {r["tag"]: r["mean_anchor_score"] for r in table},
        "tag_table": table,
        "tag_corrections": sum(data.corrected),
        "evidence_spearman": {name: {"rho": rho, "n": n} for name, (rho, n) in evidence.items()},
        "suppression": None if data.suppression is None else data.suppression,
        "heatmap_matrices": packed["meta"]["label"],
        "heatmap_bins": packed["meta"]["n"],
        "heatmap_matrices_left_out": packed["left_out"],
        "heatmap_size": packed["meta"]["n"][0],
        "token_view_heads": [] if tokens_packed is None else tokens_packed["meta"]["label"],
        "token_view_heads_left_out": [] if tokens_packed is None else tokens_packed["left_out"],
        "tag_colors": {t: data.tag_color(t) for t in counts},
        "meta": data.meta,
        "route": None if data.route is None else data.route.to_dict(),
    }


def _number(value: float) -> str:
    return repr(float(value)) if np.isfinite(value) else ""


def _sentences_csv(data: ExploreData) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(data.evidence)
    writer.writerow(
        [
            "index",
            "sentence",
            "tag",
            "tagger_tag",
            "tag_confidence",
            "anchor_score",
            *names,
            "char_start",
            "char_end",
        ]
    )
    tagger = data.tagger_tags or data.tags
    for i, sentence in enumerate(data.sentences):
        start, end = data.char_spans[i]
        writer.writerow(
            [
                i,
                sentence,
                data.tags[i],
                tagger[i],
                _number(data.tag_confidence[i]),
                _number(data.anchor_scores[i]),
                *(_number(data.evidence[name][i]) for name in names),
                start,
                end,
            ]
        )
    return buffer.getvalue()


def write_report(
    data: ExploreData,
    out_dir: str | os.PathLike,
    *,
    max_size: int = 200,
    max_matrix_bytes: int = 900_000,
    max_token_bytes: int = 400_000,
    top_anchors: int = 10,
    output_backend: str = "canvas",
) -> Path:
    """Write `report.html`, `summary.json` and `sentences.csv` into `out_dir` (created if missing).

    A `tag_corrections.json` already in `out_dir` is applied first (and written back with any the data
    brings), so corrections downloaded from the page survive a rebuild into the same folder.

    Args:
        data: Sentences, tags, scores and sentence attention (`ExploreData`).
        out_dir: Output folder.
        max_size: Largest heatmap side in the HTML; longer traces are mean-pooled to this many bins.
        max_matrix_bytes: Budget for the matrices packed into the HTML (raw bytes; base64 adds a third):
            beyond the receiver-head average, groups are pooled to fewer bins, then cut, to fit.
        max_token_bytes: Budget for the token view's rows (raw bytes); heads beyond it are left out.
        top_anchors: How many top anchors `summary.json` lists.
        output_backend: ``"canvas"`` (each figure's save tool writes PNG) or ``"svg"`` (SVG).

    Returns:
        The path of `report.html`.
    """
    if not isinstance(data, ExploreData):
        raise TypeError(f"write_report needs an ExploreData, got {type(data).__name__}")
    if max_size < 2:
        raise ValueError(f"max_size must be >= 2, got {max_size}")
    if max_matrix_bytes < 0 or max_token_bytes < 0:
        raise ValueError(
            f"max_matrix_bytes and max_token_bytes must be >= 0, got {max_matrix_bytes}, {max_token_bytes}"
        )
    if top_anchors < 1:
        raise ValueError(f"top_anchors must be >= 1, got {top_anchors}")
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = out / corrections_io.CORRECTIONS_FILE
    if existing.is_file():
        data = corrections_io.apply_corrections(data, corrections_io.load_corrections(existing))
    document, packed, tokens_packed = build_document(
        data, max_size, max_matrix_bytes, max_token_bytes, output_backend
    )
    title = str(data.meta.get("title", "stream-widgets report"))
    summary = storage.json_safe(_summary(data, packed, tokens_packed, top_anchors))
    files = {
        "report.html": file_html(document, resources=INLINE, title=title),
        "summary.json": json.dumps(summary, indent=2, allow_nan=False) + "\n",
        "sentences.csv": _sentences_csv(data),
    }
    if any(data.corrected):
        files[corrections_io.CORRECTIONS_FILE] = corrections_io.corrections_json(
            corrections_io.corrections_document(data)
        )
    # One swap for the whole set: a kill leaves the old report or the new one, never a mix.
    folder = storage.write_files(out, files)
    return folder / "report.html"
