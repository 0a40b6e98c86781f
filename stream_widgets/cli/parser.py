"""The `stream-widgets` parser: every sub-command, its options and help, and the function that runs it.

Building it imports nothing heavy: the command modules import the library inside their functions.
"""

from __future__ import annotations

import argparse

from stream_widgets import __version__
from stream_widgets.cli.arguments import (
    DEMO_TRACE,
    MODEL_HELP,
    SOURCE_HELP,
    HelpFormatter,
    LibraryDefault,
    add_config_flags,
    add_source,
    int_in,
    probability,
)
from stream_widgets.cli.corpus import cmd_corpus, cmd_corpus_report, cmd_ruler
from stream_widgets.cli.sentences import KINDS, cmd_anchors, cmd_importance, cmd_tag
from stream_widgets.cli.tracing import cmd_demo, cmd_list, cmd_report, cmd_trace

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-widgets",
        description="Sparse attention interpretability for long chain-of-thought traces.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)

    demo = command("demo", "trace, tag and report a bundled reasoning trace with the default model")
    demo.add_argument("--out", default="out/demo", help="output folder")
    demo.add_argument("--trace", default=DEMO_TRACE, help="bundled trace name (`stream-widgets list`)")
    demo.set_defaults(func=cmd_demo)

    listing = command("list", "list the bundled reasoning traces (names for demo, trace, anchors, tag)")
    listing.set_defaults(func=cmd_list)

    tracing = command("trace", "trace a text with Stream masks and save the trace")
    add_source(tracing)
    tracing.add_argument("--out", required=True, help="trace file to write (.safetensors)")
    tracing.add_argument("--model", default=None, help=MODEL_HELP)
    tracing.add_argument("--mode", choices=("observe", "sparse"), default="observe", help="attention mode")
    tracing.add_argument(
        "--max-tokens",
        type=int_in(1),
        default=None,
        help="cut the text at the last sentence within this many tokens before tracing",
    )
    add_config_flags(tracing)
    tracing.set_defaults(func=cmd_trace)

    report = command("report", "write the phase-tag report of a saved trace")
    report.add_argument("trace", help="a trace file written by `stream-widgets trace` or Trace.save")
    report.add_argument(
        "--out", required=True, help="output folder for report.html, summary.json, sentences.csv"
    )
    report.set_defaults(func=cmd_report)

    corpus = command(
        "corpus", "trace a folder of texts, a JSONL file or the bundled traces, resumably, one worker per GPU"
    )
    corpus.add_argument(
        "inputs",
        metavar="INPUTS",
        help="a folder of text files (.txt, .text, .md, .cot), a .jsonl file (one {id, text, group, labels} "
        "record per line, see stream_widgets.corpus.inputs) or 'bundled' for the bundled traces",
    )
    corpus.add_argument("--out", required=True, help="output folder (traces/, corpus.json); reruns resume")
    corpus.add_argument("--model", default=None, help=MODEL_HELP)
    corpus.add_argument("--mode", choices=("observe", "sparse"), default="observe", help="attention mode")
    corpus.add_argument(
        "--max-tokens",
        type=int_in(1),
        default=None,
        help="cut every text at the last sentence within this many tokens before tracing",
    )
    corpus.add_argument("--limit", type=int_in(1), default=None, help="only the first N inputs")
    add_config_flags(corpus)
    corpus.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="model parameter dtype"
    )
    corpus.add_argument(
        "--device",
        default=None,
        help="cpu, cuda (every visible GPU) or cuda:N (default: every visible GPU, else the CPU)",
    )
    corpus.add_argument(
        "--workers",
        type=int_in(1),
        default=None,
        help="worker processes (default: one per visible GPU; one on the CPU)",
    )
    corpus.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="load the model with this accelerate device map in one worker: 'auto' spreads a model too "
        "large for one GPU over all of them; or a JSON object of module name -> device",
    )
    corpus.add_argument("--threads", type=int_in(1), default=None, help="torch threads per worker")
    corpus.add_argument(
        "--report", action="store_true", help="then analyse the traces and write the corpus report"
    )
    corpus.set_defaults(func=cmd_corpus)

    corpus_report = command(
        "corpus-report",
        "corpus receiver heads, anchors of every trace and the corpus report, from the traces of `corpus`",
    )
    corpus_report.add_argument("folder", metavar="DIR", help="the --out folder of `stream-widgets corpus`")
    corpus_report.add_argument(
        "--out", default=None, help="report folder (default: DIR/report); the heads go to DIR/receiver_heads"
    )
    corpus_report.add_argument(
        "--variant",
        choices=("raw", "depth", "distance"),
        default=LibraryDefault("stream_widgets.vertical", "DEFAULT_VARIANT"),
        help="vertical-score variant",
    )
    corpus_report.add_argument(
        "--min-later",
        type=int_in(1),
        default=LibraryDefault("stream_widgets.vertical", "DEFAULT_MIN_LATER"),
        help="later sentences a sentence needs for a score",
    )
    corpus_report.add_argument("--heads", type=int_in(1), default=20, help="receiver heads to average over")
    corpus_report.add_argument("--top", type=int_in(1), default=5, help="anchors per trace")
    corpus_report.set_defaults(func=cmd_corpus_report)

    anchors = command("anchors", "print the top thought anchors of a saved trace, a bundled trace or a text")
    add_source(anchors, "a trace file (.safetensors, from Trace.save), " + SOURCE_HELP)
    anchors.add_argument("--top", type=int_in(1), default=5, help="how many anchors")
    anchors.add_argument(
        "--variant",
        choices=("raw", "depth", "distance"),
        default=LibraryDefault("stream_widgets.anchors", "DEFAULT_VARIANT"),
        help="vertical-score variant",
    )
    anchors.add_argument("--heads", type=int_in(1), default=20, help="receiver heads to average over")
    anchors.add_argument(
        "--trace-heads",
        action="store_true",
        help="pick the receiver heads from this trace alone (default: the model's corpus heads when they ship)",
    )
    anchors.add_argument(
        "--corpus",
        default=None,
        metavar="DIR",
        help="take the receiver heads from a corpus analysis (`stream-widgets corpus-report DIR`)",
    )
    anchors.add_argument(
        "--suppression",
        action="store_true",
        help="also compute each sentence's attention-suppression importance (one forward pass per sentence)",
    )
    anchors.add_argument(
        "--max-tokens",
        type=int_in(1),
        default=None,
        help="cut a text at the last sentence within this many tokens before tracing",
    )
    anchors.add_argument("--model", default=None, help="model for texts: " + MODEL_HELP)
    anchors.add_argument(
        "--json", default=None, metavar="PATH", help="also write the anchors as JSON to PATH"
    )
    anchors.set_defaults(func=cmd_anchors)

    importance = command(
        "importance",
        "black-box importance of every sentence, computed with the model (Thought Anchors' measures)",
    )
    add_source(importance)
    importance.add_argument(
        "--kind",
        choices=KINDS,
        default="forced",
        help="which importance",
    )
    importance.add_argument("--model", default=None, help=MODEL_HELP)
    importance.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    importance.add_argument("--answer", default=None, help="the correct answer, for the accuracy columns")
    importance.add_argument(
        "--samples", type=int_in(1), default=10, help="continuations per prefix (resampling)"
    )
    importance.add_argument("--seed", type=int, default=0, help="sampling seed")
    importance.add_argument("--max-new-tokens", type=int_in(1), default=512, help="tokens per continuation")
    importance.add_argument("--batch-size", type=int_in(1), default=None, help="continuations per batch")
    importance.add_argument(
        "--rules", choices=("default", "thought-anchors"), default="default", help="sentence rules"
    )
    importance.add_argument("--json", default=None, metavar="PATH", help="write the scores as JSON to PATH")
    importance.set_defaults(func=cmd_importance)

    tag = command("tag", "tag every CoT sentence with its reasoning function (spaCy tagger)")
    add_source(tag)
    tag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tag.add_argument(
        "--min-confidence",
        type=probability,
        default=0.0,
        help="below this top probability the tag is 'unknown'; in [0, 1)",
    )
    tag.add_argument("--width", type=int_in(10), default=80, help="characters of sentence text shown")
    tag.set_defaults(func=cmd_tag)

    ruler = command("ruler", "score RULER needle cases, dense vs Stream-sparse")
    ruler.add_argument("--model", default=None, help=MODEL_HELP)
    ruler.add_argument(
        "--lengths", type=int_in(1), nargs="+", default=[1024], help="prompt lengths in tokens"
    )
    ruler.add_argument("--cases", type=int_in(1), default=1, help="cases per (length, kind)")
    ruler.add_argument(
        "--kinds",
        nargs="+",
        choices=("single", "multikey", "multivalue", "multiquery"),
        default=["single", "multikey", "multivalue", "multiquery"],
        help="case kinds",
    )
    ruler.add_argument("--haystack", default="filler", choices=["filler", "traces"], help="haystack text")
    ruler.add_argument("--seed", type=int, default=0, help="case seed")
    ruler.add_argument("--routes", action="store_true", help="also find and store every case's needle route")
    ruler.add_argument("--out", required=True, help="JSON file for the per-case results and the table")
    ruler.set_defaults(func=cmd_ruler)
    return parser
