"""The `stream-widgets` command line: one sub-command per task.

Each sub-command is a `_cmd_<name>(args)` function below plus its parser in `_build_parser`; the work
itself lives in the library modules, so the CLI only parses, calls and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

__all__ = ["main"]

_MODEL_HELP = (
    "qwen2.5-coder-0.5b (opt-in packaged model, 32k context), a local model folder, a .gguf file or a "
    "locally cached hub id (default: the embedded SmolLM2-135M-Instruct)"
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-widgets",
        description="Sparse attention interpretability for long chain-of-thought traces.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="trace, tag and report a bundled reasoning trace with the default model"
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--trace", default=DEMO_TRACE, help=f"bundled trace name (default: {DEMO_TRACE})")
    demo.set_defaults(func=_cmd_demo)

    tracing = commands.add_parser(
        "trace", help="trace a text (or text file) with Stream masks; save the trace"
    )
    tracing.add_argument("text", metavar="FILE_OR_TEXT", help="a UTF-8 text file, or the text itself")
    tracing.add_argument("--out", required=True, help="trace file to write (.safetensors)")
    tracing.add_argument(
        "--model",
        default=None,
        help=_MODEL_HELP,
    )
    tracing.add_argument("--mode", choices=("observe", "sparse"), default="observe", help="default: observe")
    for knob in ("q_block", "k_block", "top_k", "sink", "window", "search_width"):
        tracing.add_argument(
            f"--{knob.replace('_', '-')}", type=int, default=None, help=f"StreamConfig.{knob}"
        )
    tracing.add_argument("--score-rule", choices=("representative", "bound"), default=None)
    tracing.set_defaults(func=_cmd_trace)

    report = commands.add_parser("report", help="write the phase-tag report of a saved trace")
    report.add_argument("trace", help="a trace file written by `stream-widgets trace` or Trace.save")
    report.add_argument(
        "--out", required=True, help="output folder for report.html, summary.json, sentences.csv"
    )
    report.set_defaults(func=_cmd_report)
    anchors = commands.add_parser(
        "anchors", help="print the top thought anchors of a trace file, bundled trace or text"
    )
    anchors.add_argument(
        "source",
        metavar="TRACE_OR_TEXT",
        help="a trace file (Trace.save), a bundled trace name (see list_bundled_traces), a UTF-8 text file, or the text",
    )
    anchors.add_argument("--top", type=int, default=5, help="how many anchors (default: 5)")
    anchors.add_argument(
        "--variant",
        choices=("raw", "depth", "distance"),
        default=None,
        help="vertical-score variant (default: stream_widgets.anchors.DEFAULT_VARIANT)",
    )
    anchors.add_argument("--heads", type=int, default=20, help="receiver heads to average over (default: 20)")
    anchors.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cut a text at the last sentence within this many tokens before tracing",
    )
    anchors.add_argument("--model", default=None, help="model for texts: " + _MODEL_HELP)
    anchors.add_argument(
        "--json", default=None, metavar="PATH", help="also write the anchors as JSON to PATH"
    )
    anchors.set_defaults(func=_cmd_anchors)

    tag = commands.add_parser("tag", help="tag every CoT sentence with its reasoning function (spaCy tagger)")
    tag.add_argument(
        "source", metavar="FILE_OR_TEXT", help="a UTF-8 text file, a bundled trace name, or the text itself"
    )
    tag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tag.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        help="below this probability the tag is 'unknown' (default 0)",
    )
    tag.add_argument("--width", type=int, default=80, help="characters of sentence text shown (default 80)")
    tag.set_defaults(func=_cmd_tag)

    ruler = commands.add_parser("ruler", help="score RULER needle cases, dense vs Stream-sparse")
    ruler.add_argument("--model", default=None, help=_MODEL_HELP)
    ruler.add_argument("--lengths", type=int, nargs="+", default=[1024], help="prompt lengths in tokens")
    ruler.add_argument("--cases", type=int, default=1, help="cases per (length, kind) (default 1)")
    ruler.add_argument(
        "--kinds",
        nargs="+",
        default=["single", "multikey", "multivalue", "multiquery"],
        help="case kinds (default: all four)",
    )
    ruler.add_argument("--haystack", default="filler", choices=["filler", "traces"], help="haystack text")
    ruler.add_argument("--seed", type=int, default=0, help="case seed (default 0)")
    ruler.add_argument("--routes", action="store_true", help="also find and store every case's needle route")
    ruler.add_argument("--out", required=True, help="JSON file for the per-case results and the table")
    ruler.set_defaults(func=_cmd_ruler)
    return parser


DEMO_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"


def _print_summary(data, html) -> None:
    print(f"report: {html}")
    print(f"        {html.parent / 'summary.json'}, {html.parent / 'sentences.csv'}")
    meta = data.meta
    print(
        f"{meta['model']}: {meta['tokens']} tokens, {len(data.sentences)} sentences, sparsity {meta['sparsity']:.1%}"
    )
    print(
        f"top thought anchors ({meta['score_variant']} score over {len(data.receiver_heads)} receiver heads):"
    )
    for i in data.top_anchors(5):
        text = data.sentences[i].replace("\n", " ")
        print(f"  [{i:>3}] {data.anchor_scores[i]:7.3f}  {data.tags[i]:<24} {text[:70]}")


def _cmd_demo(args) -> int:
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace
    from stream_widgets.views import explore_data, write_report

    bundled = load_bundled_trace(args.trace)
    print(f"loading the default model and tracing {bundled.name} ...", flush=True)
    model, tokenizer = load_model()
    result = trace(model, tokenizer, bundled.full_cot, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "trace.safetensors")
    data = explore_data(result)
    _print_summary(data, write_report(data, out))
    return 0


def _cmd_trace(args) -> int:
    from stream_widgets.config import StreamConfig
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace

    path = Path(args.text)
    text = path.read_text(encoding="utf-8") if len(args.text) < 4096 and path.is_file() else args.text
    knobs = ("q_block", "k_block", "top_k", "sink", "window", "search_width", "score_rule")
    config = StreamConfig(**{k: getattr(args, k) for k in knobs if getattr(args, k) is not None})
    model, tokenizer = load_model(args.model)
    result = trace(model, tokenizer, text, config, mode=args.mode, progress=True)
    out = result.save(args.out)
    print(f"trace: {out}")
    print(f"{result!r}")
    return 0


def _cmd_report(args) -> int:
    from stream_widgets.views import explore_data, write_report

    data = explore_data(args.trace)
    _print_summary(data, write_report(data, args.out))
    return 0


def _cmd_anchors(args) -> int:
    import json

    from stream_widgets.anchors import DEFAULT_VARIANT, thought_anchors
    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.traces import Trace

    tags: list[str] | None = None
    path = Path(args.source)
    is_file = len(args.source) < 4096 and path.is_file()
    if path.suffix == ".safetensors" and len(args.source) < 4096:
        result = Trace.load(path)  # FileNotFoundError for a missing file
    else:
        from stream_widgets.dense_reference import truncate_to_tokens
        from stream_widgets.models import load_model
        from stream_widgets.tracer import trace

        names = [n for n in list_bundled_traces() if n == args.source or n.endswith("/" + args.source)]
        if not is_file and len(names) > 1 and args.source not in names:
            raise ValueError(
                f"{args.source!r} names several bundled traces ({', '.join(names)}): give a full name"
            )
        if not is_file and names:
            bundled = load_bundled_trace(args.source if args.source in names else names[0])
            text, tags = bundled.full_cot, bundled.labels
        else:
            text = path.read_text(encoding="utf-8") if is_file else args.source
        model, tokenizer = load_model(args.model)
        if args.max_tokens is not None:
            text = truncate_to_tokens(tokenizer, text, args.max_tokens)
        result = trace(model, tokenizer, text, progress=True)
    variant = args.variant or DEFAULT_VARIANT
    heads = min(args.heads, result.num_layers * result.num_heads)
    found = thought_anchors(result, top=args.top, variant=variant, top_heads=heads)
    print(
        f"{result.model_id}: {result.seq_len} tokens, {len(result.sentences)} sentences, "
        f"sparsity {float(result.sparsity().mean()):.1%}"
    )
    print(f"top {len(found)} thought anchors ({variant} score over {heads} receiver heads of this trace):")
    records = []
    for anchor in found:
        tag = tags[anchor.index] if tags is not None and anchor.index < len(tags) else "-"
        print(
            f"  [{anchor.index:>3}] {anchor.score:8.4f}  {tag:<24} {anchor.text.replace(chr(10), ' ')[:70]}"
        )
        records.append({**dataclasses.asdict(anchor), "function_tag": None if tag == "-" else tag})
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"model_id": result.model_id, "variant": variant, "anchors": records}, indent=1)
        )
        print(f"anchors: {out}")
    return 0


def _read_source(source: str) -> str:
    """A file's text, a bundled trace's `full_cot`, or the argument itself."""
    path = Path(source)
    if len(source) < 4096 and "\n" not in source and path.is_file():
        return path.read_text(encoding="utf-8")
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    if source in list_bundled_traces():
        return load_bundled_trace(source).full_cot
    return source


def _cmd_tag(args) -> int:
    import json

    import tagging  # imports spaCy: only here

    text = _read_source(args.source)
    nlp = tagging.load()
    nlp.get_pipe("function_tagger").min_confidence = args.min_confidence
    doc = nlp(text)
    rows = []
    for span in doc.spans["cot"]:
        sentence = span._.cot_sentence
        scores = span._.function_tag_scores
        rows.append(
            {
                "index": sentence.index,
                "char_start": sentence.char_start,
                "char_end": sentence.char_end,
                "tag": span._.function_tag,
                "confidence": round(scores[span._.function_tag], 4),
                "scores": {tag: round(p, 4) for tag, p in scores.items()},
                "text": sentence.text,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("no sentences found (empty text?)", file=sys.stderr)
        return 0
    width = max(args.width, 10)
    for row in rows:
        text = " ".join(row["text"].split())
        if len(text) > width:
            text = text[: width - 3] + "..."
        print(f"{row['index']:4d}  {row['tag']:<22s}  {row['confidence']:.2f}  {text}")
    return 0


def _cmd_ruler(args) -> int:
    import json

    from stream_widgets.models import load_model
    from stream_widgets.ruler_scoring import format_table, run_ruler, summarize

    model, tokenizer = load_model(args.model)
    results = run_ruler(
        model,
        tokenizer,
        args.lengths,
        args.kinds,
        args.cases,
        haystack=args.haystack,
        seed=args.seed,
        route=args.routes,
    )
    rows = summarize(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"table": rows, "cases": [r.to_dict() for r in results]}, indent=1), encoding="utf-8"
    )
    print(format_table(rows))
    print(f"results: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stream-widgets` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # KeyError's str() quotes its message (unknown bundled trace names): print the message itself
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"stream-widgets: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
