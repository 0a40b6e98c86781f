"""The tracing commands: `demo`, `list`, `trace`, `report`; and how a trace's anchors print.

`print_anchor_rows` and `note_if_nothing_pruned` are shared with `anchors` (`stream_widgets.cli.sentences`).
"""

from __future__ import annotations

import sys

from stream_widgets.cli.arguments import stream_config
from stream_widgets.cli.files import output_file, output_folder, read_input

__all__ = [
    "EVIDENCE_COLUMNS",
    "cmd_demo",
    "cmd_list",
    "cmd_report",
    "cmd_trace",
    "note_if_nothing_pruned",
    "print_anchor_rows",
    "print_summary",
]

# black-box importance of the bundled traces shown beside each anchor
EVIDENCE_COLUMNS = ("counterfactual_importance_kl", "resampling_importance_accuracy")


# ----------------------------------------------------------------- printing
def note_if_nothing_pruned(result) -> None:
    if result.masks and float(result.sparsity().max()) == 0.0:
        config = result.config
        print(
            f"note: this config keeps every key block of this {result.seq_len}-token text (sparsity 0%): "
            f"the sinks, the window and top_k={config.top_k} blocks of {config.k_block} tokens cover it. "
            "Lower --top-k or trace a longer text to prune.",
            file=sys.stderr,
        )


def print_summary(data, html) -> None:
    print(f"report: {html}")
    print(f"        {html.parent / 'summary.json'}, {html.parent / 'sentences.csv'}")
    meta = data.meta
    print(
        f"{meta['model']}: {meta['tokens']} tokens, {len(data.sentences)} sentences, sparsity {meta['sparsity']:.1%}"
    )
    where = {"corpus": "the model's corpus", "trace": "this trace", "given": "the given list"}
    source = meta.get("receiver_heads_source", "given")
    print(
        f"top thought anchors ({meta['score_variant']} score over {len(data.receiver_heads)} receiver heads"
        f" of {where.get(source, source)}), with the evidence beside each:"
    )
    print_anchor_rows(
        [
            (
                i,
                float(data.anchor_scores[i]),
                {n: float(v[i]) for n, v in data.evidence.items()},
                data.tags[i],
                data.sentences[i],
            )
            for i in data.top_anchors(5)
        ]
    )


_SHORT_NAMES = {
    "position baseline": "position",
    "suppression importance": "suppression",
    "counterfactual_importance_kl": "counterfact. KL",
    "resampling_importance_accuracy": "resampl. acc.",
}


def print_anchor_rows(rows: list[tuple[int, float, dict, str, str]]) -> None:
    """One line per anchor: index, score, its evidence columns, tag and the start of the sentence."""
    if not rows:
        return
    names = list(rows[0][2])
    header = "".join(f"{_SHORT_NAMES.get(n, n)[:15]:>16}" for n in names)
    print(f"  {'#':>5} {'score':>8}{header}  {'tag':<24} sentence")
    for index, score, evidence, tag, text in rows:
        values = "".join(f"{evidence[n]:16.4g}" for n in names)
        print(f"  [{index:>3}] {score:8.4f}{values}  {tag:<24} {text.replace(chr(10), ' ')[:60]}")


# ----------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace
    from stream_widgets.views import explore_data, write_report

    out = output_folder(args.out, "--out")
    bundled = load_bundled_trace(args.trace)
    print(f"loading the default model and tracing {bundled.name} ...", flush=True)
    model, tokenizer = load_model()
    result = trace(model, tokenizer, bundled.full_cot, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "trace.safetensors")
    labels = bundled.labels_for(result.sentences)  # the bundled black-box importance, per traced sentence
    data = explore_data(result, evidence={c: labels.importance[c] for c in EVIDENCE_COLUMNS})
    print_summary(data, write_report(data, out))
    return 0


def cmd_list(args) -> int:
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    names = list_bundled_traces()
    width = max(map(len, names), default=0)
    print(f"{'name':<{width}}  sentences  characters")
    for name in names:
        bundled = load_bundled_trace(name)
        print(f"{name:<{width}}  {len(bundled.chunks):>9}  {len(bundled.full_cot):>10,}")
    print(f"{len(names)} bundled traces (Thought Anchors, MIT); pass a name, or its last part, to a command")
    return 0


def cmd_trace(args) -> int:
    config = stream_config(args)  # a bad value fails here, before the model loads
    out = output_file(args.out, "--out", "trace.safetensors")
    text = read_input(args).text
    from stream_widgets.dense_reference import truncate_to_tokens
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace

    model, tokenizer = load_model(args.model)
    if args.max_tokens is not None:
        text = truncate_to_tokens(tokenizer, text, args.max_tokens)
    result = trace(model, tokenizer, text, config, mode=args.mode, progress=True)
    written = result.save(out)
    print(f"trace: {written}")
    print(f"{result!r}")
    note_if_nothing_pruned(result)
    return 0


def cmd_report(args) -> int:
    from tqdm.auto import tqdm

    out = output_folder(args.out, "--out")
    with tqdm(total=3, desc="report", unit="step", file=sys.stderr, leave=False) as bar:
        bar.set_postfix_str("reading the trace")
        from stream_widgets.traces import Trace

        result = Trace.load(args.trace)
        bar.update()
        bar.set_postfix_str(f"tagging {len(result.sentences)} sentences, scoring anchors")
        from stream_widgets.views import explore_data

        data = explore_data(result)
        bar.update()
        bar.set_postfix_str("writing the report")
        from stream_widgets.views import write_report

        html = write_report(data, out)
        bar.update()
    print_summary(data, html)
    return 0
