"""The commands that run over many inputs: `corpus` (trace a folder, a JSONL file or the bundled traces),
`corpus-report` (receiver heads, anchors and the report of a corpus) and `ruler` (RULER needle cases,
dense vs Stream-sparse)."""

from __future__ import annotations

from pathlib import Path

from stream_widgets.cli.arguments import stream_config
from stream_widgets.cli.files import output_file, output_folder

__all__ = ["cmd_corpus", "cmd_corpus_report", "cmd_ruler"]


def cmd_corpus(args) -> int:
    config = stream_config(args)  # a bad value fails here, before the inputs are read or a model loads
    out = output_folder(args.out, "--out")
    from stream_widgets.corpus import corpus_report, run_corpus

    device_map = args.device_map
    if device_map is not None and device_map.isdigit():
        device_map = int(device_map)
    elif device_map is not None and device_map.lstrip().startswith("{"):
        import json

        try:
            device_map = json.loads(device_map)
        except ValueError as error:
            raise ValueError(f"--device-map {device_map!r} is not a JSON object ({error})") from None
    run = run_corpus(
        args.inputs,
        out,
        model=args.model,
        config=config,
        mode=args.mode,
        max_tokens=args.max_tokens,
        limit=args.limit,
        dtype=args.dtype,
        device=args.device,
        workers=args.workers,
        device_map=device_map,
        threads=args.threads,
    )
    summary = run.to_dict()["summary"]
    rate = summary["traces_per_minute"]
    print(
        f"corpus: {out / 'corpus.json'}: {summary['done']} of {summary['traces']} traces done, "
        f"{summary['failed']} failed, {summary['pending']} pending; {summary['tokens']:,} tokens"
        + (f", {rate:.2f} traces per minute of tracing" if rate else "")
    )
    for entry in run.failed:
        print(f"  failed: {entry.id}: {entry.error}")
    if args.report:
        _print_corpus_report(corpus_report(out), out)
    return 0


def _print_corpus_report(html, folder) -> None:
    import json

    summary = json.loads((html.parent / "summary.json").read_text(encoding="utf-8"))
    reliability = summary["split_half_reliability"]
    print(f"report: {html}")
    print(f"        {html.parent} (summary.json, sentences.csv, tags.csv, correlations.csv, traces.csv)")
    print(f"receiver heads: {Path(folder) / 'receiver_heads'}")
    r = reliability["mean_r"]
    print(
        f"{summary['traces']} traces of {summary['model_id']}; top receiver heads "
        + ", ".join(f"L{layer}H{head}" for layer, head in summary["receiver_heads"][:5])
        + "; split-half reliability "
        + (f"r = {r:.3f} over {reliability['groups']} groups" if r is not None else "n/a (one group)")
    )
    if summary["left_out"]:
        print(f"left out: {len(summary['left_out'])} traces (see summary.json)")
    for row in summary["correlations"]:
        score, baseline = row["anchor_score"], row["position_baseline"]
        print(
            f"  Spearman with {row['column']}: anchor score {_signed(score['mean_per_trace'])} per trace, "
            f"{_signed(score['pooled'])} pooled; position baseline {_signed(baseline['mean_per_trace'])}, "
            f"{_signed(baseline['pooled'])}"
        )


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def cmd_corpus_report(args) -> int:
    folder = Path(args.folder)
    if not (folder / "corpus.json").is_file():
        raise ValueError(f"{folder} has no corpus.json: give the --out folder of `stream-widgets corpus`")
    out = output_folder(args.out, "--out") if args.out is not None else None
    from stream_widgets.corpus import corpus_report

    html = corpus_report(
        folder,
        out,
        variant=str(args.variant),
        min_later=int(str(args.min_later)),
        top_heads=args.heads,
        top=args.top,
    )
    _print_corpus_report(html, folder)
    return 0


def cmd_ruler(args) -> int:
    import json

    out = output_file(args.out, "--out", "ruler.json")
    from stream_widgets.models import load_model
    from stream_widgets.ruler import format_table, run_ruler, summarize
    from stream_widgets.storage import write_file

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
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file(out, json.dumps({"table": rows, "cases": [r.to_dict() for r in results]}, indent=1))
    print(format_table(rows))
    print(f"results: {out}")
    return 0
