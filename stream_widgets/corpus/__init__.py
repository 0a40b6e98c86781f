"""Corpus runs: trace many reasoning traces resumably, on every GPU, then analyse them from disk.

Modules, one idea each:

- `inputs`: what to trace (a folder of texts, a JSONL file with optional labels, the bundled traces),
  checked, with safe file names (`read_inputs`, `CorpusInput`, `InputLabels`);
- `manifest`: the corpus folder on disk: ``DIR/corpus.json``, its entries and the content hash that
  decides a re-trace (`CorpusRun`, `TraceEntry`, `content_hash`);
- `runner`: tracing every input once into ``DIR/traces/``, resumable, one worker per GPU, writing
  ``DIR/corpus.json`` (`run_corpus`);
- `heads`: corpus receiver heads from the saved traces, without the model: per-head kurtosis pooled over
  the traces with its split-half reliability, saved beside the corpus and read back (`load_corpus_heads`);
- `trace_anchors`: the anchors of every trace over those heads, its tags and label columns, and the
  per-tag, position and label-correlation summaries (`TraceAnalysis`);
- `report_data`: what the analysis found as the report holds it (`CorpusAnalysis`, its summary and CSV
  tables);
- `analysis`: the analysis in order and the report it writes (`analyse_corpus`, `corpus_report`). The
  report page is drawn by `stream_widgets.views.corpus_report`.

Example:
    >>> from stream_widgets.corpus import run_corpus, corpus_report, load_corpus_heads
    >>> run_corpus("bundled", "out/corpus", max_tokens=2000)
    >>> corpus_report("out/corpus")                     # out/corpus/report/report.html
    >>> heads = load_corpus_heads("out/corpus").heads(20)
    >>> thought_anchors(trace, receiver_heads=heads)

Importing this package imports nothing heavy (no torch, no Bokeh): every name is imported on first use.
"""

from __future__ import annotations

from stream_widgets.lazy import lazy_names

_LAZY = {
    "CorpusInput": "stream_widgets.corpus.inputs",
    "InputLabels": "stream_widgets.corpus.inputs",
    "read_inputs": "stream_widgets.corpus.inputs",
    "CorpusRun": "stream_widgets.corpus.manifest",
    "TraceEntry": "stream_widgets.corpus.manifest",
    "run_corpus": "stream_widgets.corpus.runner",
    "CorpusAnalysis": "stream_widgets.corpus.report_data",
    "analyse_corpus": "stream_widgets.corpus.analysis",
    "corpus_report": "stream_widgets.corpus.analysis",
    "load_corpus_heads": "stream_widgets.corpus.heads",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
