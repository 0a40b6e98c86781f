"""The sentence commands: `anchors` (the top thought anchors of a trace, a bundled trace or a text),
`importance` (black-box importance of every sentence, computed with the model:
`stream_widgets.importance`) and `tag` (the spaCy tagger's function tag of every sentence)."""

from __future__ import annotations

import dataclasses
import math
import sys

from stream_widgets.cli.files import output_file, read_input
from stream_widgets.cli.tracing import EVIDENCE_COLUMNS, note_if_nothing_pruned, print_anchor_rows

__all__ = ["KINDS", "cmd_anchors", "cmd_importance", "cmd_tag", "run_command"]


# ----------------------------------------------------------------- anchors
def _tagger_tags(result) -> tuple[list[str] | None, str | None]:
    """The shipped tagger's tag of every sentence of a trace, or None and why not.

    The tagger splits the trace's text itself; its tags are used only when its sentences are exactly the
    trace's (same character spans).
    """
    import tagging  # imports spaCy: only here

    if not result.sentences:
        return None, "the trace has no sentences: trace the text with sentences=True"
    doc = tagging.load()(result.text)
    spans = list(doc.spans["cot"])
    if len(spans) != len(result.sentences):
        return None, (
            f"the tagger found {len(spans)} sentences where the trace has {len(result.sentences)}, so its "
            "tags do not line up with the trace's sentences"
        )
    if [(s.start_char, s.end_char) for s in spans] != [(s.char_start, s.char_end) for s in result.sentences]:
        return None, "the tagger's sentence boundaries differ from the trace's, so its tags do not line up"
    return [span._.function_tag for span in spans], None


def cmd_anchors(args) -> int:
    import json

    from stream_widgets.anchors import thought_anchors

    if args.json is not None:
        json_out = output_file(args.json, "--json", "anchors.json")
    source = read_input(args, traces=True)
    model = tokenizer = None
    if source.trace_file is not None:
        from stream_widgets.traces import Trace

        for flag, value in (("--max-tokens", args.max_tokens), ("--model", args.model)):
            if value is not None:
                raise ValueError(f"{flag} applies to texts; {source.trace_file} is a saved trace")
        result = Trace.load(source.trace_file)
    else:
        from stream_widgets.dense_reference import truncate_to_tokens
        from stream_widgets.models import load_model
        from stream_widgets.tracer import trace

        model, tokenizer = load_model(args.model)
        text = source.text
        if args.max_tokens is not None:
            text = truncate_to_tokens(tokenizer, text, args.max_tokens)
        result = trace(model, tokenizer, text, progress=True)
    suppression = None
    if args.suppression:
        from stream_widgets.suppression import suppression_matrix

        if model is None:
            from stream_widgets.models import load_model

            model, tokenizer = load_model(args.model or result.model_id)
        suppression = suppression_matrix(model, tokenizer, result.text, progress=True)
    importance, tags, origin = None, None, None
    if source.bundled is not None:  # the bundled labels, carried over to the traced sentences
        labels = source.bundled.labels_for(result.sentences)
        importance = {column: labels.importance[column] for column in EVIDENCE_COLUMNS}
        tags, origin = list(labels.function_tags), "the bundled labels"
    else:
        tags, note = _tagger_tags(result)
        origin = "the shipped tagger"
        if note:
            print(f"note: {note}; tags are not shown", file=sys.stderr)
    variant = str(args.variant)
    heads = "trace" if args.trace_heads else None
    if args.corpus is not None:
        if args.trace_heads:
            raise ValueError("give --corpus DIR or --trace-heads, not both")
        from stream_widgets.corpus import load_corpus_heads

        found_heads = load_corpus_heads(args.corpus, variant)
        if found_heads.model_id != result.model_id:
            raise ValueError(
                f"the corpus heads in {args.corpus} are of {found_heads.model_id}, the trace is of "
                f"{result.model_id}: receiver heads belong to one model"
            )
        heads = found_heads.heads(args.heads)
    found = thought_anchors(
        result,
        heads,
        top=args.top,
        variant=variant,
        top_heads=args.heads,
        suppression=suppression,
        importance=importance,
    )
    print(
        f"{result.model_id}: {result.seq_len} tokens, {len(result.sentences)} sentences, "
        f"sparsity {float(result.sparsity().mean()):.1%}"
    )
    if not found:
        print("no sentence can be scored: the trace has too few sentences for its later ones to look back")
    else:
        where = {
            "corpus": "the model's corpus",
            "trace": "this trace",
            "given": f"the corpus in {args.corpus}" if args.corpus else "the given list",
        }
        print(
            f"top {len(found)} thought anchors ({variant} score over {len(found[0].receiver_heads)} receiver "
            f"heads of {where[found[0].heads_from]}"
            + (f"; tags from {origin}" if tags is not None else "")
            + "):"
        )
        print_anchor_rows(
            [
                (a.index, a.score, a.evidence, tags[a.index] if tags is not None else "-", a.text)
                for a in found
            ]
        )
    note_if_nothing_pruned(result)
    if args.json is not None:
        from stream_widgets.storage import write_file

        records = [
            {
                **dataclasses.asdict(anchor.sentence),
                "score": anchor.score,
                "function_tag": None if tags is None else tags[anchor.index],
                "evidence": {k: (None if v != v else v) for k, v in anchor.evidence.items()},
            }
            for anchor in found
        ]
        document = {
            "model_id": result.model_id,
            "variant": variant,
            "receiver_heads": [list(h) for h in found[0].receiver_heads] if found else [],
            "heads_from": found[0].heads_from if found else None,
            "anchors": records,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_file(json_out, json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        print(f"anchors: {json_out}")
    return 0


# ----------------------------------------------------------------- importance
KINDS = ("forced", "resampling", "counterfactual")
"""What `stream-widgets importance --kind` computes (resampling and counterfactual come from one run)."""


def cmd_importance(args) -> int:
    import json

    json_out = output_file(args.json, "--json", "importance.json") if args.json is not None else None
    source = read_input(args)
    result = run_command(args, source.text, args.answer)
    if json_out is not None:
        from stream_widgets.storage import write_file

        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_file(json_out, json.dumps(result, indent=1))
        print(f"importance: {json_out}")
    return 0


def run_command(args, text: str, reference: str | None) -> dict:
    """The work of ``stream-widgets importance`` (the CLI parses; this computes, prints and returns).

    Args:
        args: The parsed options: ``kind``, ``model``, ``device``, ``samples``, ``seed``,
            ``max_new_tokens``, ``rules``, ``batch_size``.
        text: Prompt plus chain of thought.
        reference: The correct answer, or None.

    Returns:
        JSON-ready ``{"sentences": [...], "importance": {column: [...]}, "settings": {...}}`` (NaN as None).
    """
    from stream_widgets.importance import forced_importance, resampling_importance
    from stream_widgets.models import load_model, model_id

    model, tokenizer = load_model(args.model)
    model = model.to(args.device)
    if args.kind == "forced":
        result = forced_importance(
            model, tokenizer, text, reference=reference, rules=args.rules, progress=True
        )
        columns = result.importance
        extra = {"answers": list(result.answers), "distributions": result.distributions.round(6).tolist()}
    else:
        result = resampling_importance(
            model,
            tokenizer,
            text,
            samples=args.samples,
            seed=args.seed,
            reference=reference,
            rules=args.rules,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=True,
        )
        wanted = "resampling_importance" if args.kind == "resampling" else "counterfactual_importance"
        columns = {k: v for k, v in result.importance.items() if k.startswith(wanted) or k == "accuracy"}
        if args.kind == "counterfactual":
            columns["different_trajectories_fraction"] = result.importance["different_trajectories_fraction"]
        extra = {"answers": [[r.answer for r in rows] for rows in result.rollouts]}
    first = next(iter(columns))
    print(f"{'#':>3}  {first:>28}  sentence")
    for sentence, value in zip(result.sentences, columns[first], strict=True):
        shown = " ".join(sentence.text.split())
        print(f"{sentence.index:3d}  {value:28.4f}  {shown[:70]}")

    def plain(values) -> list:
        return [None if not math.isfinite(float(v)) else float(v) for v in values]

    return {
        "model": model_id(model),
        "kind": args.kind,
        "sentences": [
            {"index": s.index, "text": s.text, "char_start": s.char_start, "char_end": s.char_end}
            for s in result.sentences
        ],
        "importance": {name: plain(values) for name, values in columns.items()},
        "settings": {**result.settings, **extra, "device": args.device},
    }


# ----------------------------------------------------------------- tag
def cmd_tag(args) -> int:
    import json

    import tagging  # imports spaCy: only here
    from tagging.tags import FUNCTION_TAGS

    text = read_input(args).text
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
                # the top probability of the 8 tags: that of the tag shown, or for 'unknown' the best one's
                "confidence": round(max(scores[t] for t in FUNCTION_TAGS), 4),
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
    for row in rows:
        text = " ".join(row["text"].split())
        if len(text) > args.width:
            text = text[: args.width - 3] + "..."
        print(f"{row['index']:4d}  {row['tag']:<22s}  {row['confidence']:.2f}  {text}")
    return 0
