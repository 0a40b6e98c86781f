"""Time black-box importance on one long bundled trace: forced-answer importance of its first 100
sentences and resampling importance (10 samples per prefix) of its first 60.

    python benchmarks/importance_speed.py --model qwen2.5-coder-0.5b --device cuda

The text is the trace's prompt and chain of thought cut after its N-th sentence (`split_sentences`,
Thought Anchors' rules). Prints a table and writes ``results/importance_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cut(text: str, sentences: int) -> tuple[str, int]:
    """`text` up to the end of its `sentences`-th sentence, and the number of sentences kept."""
    from stream_widgets.sentences import split_sentences

    found = split_sentences(text, rules="thought-anchors")
    kept = found[: min(sentences, len(found))]
    return text[: kept[-1].char_end], len(kept)


def main() -> None:
    import torch

    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.importance import forced_importance, resampling_importance
    from stream_widgets.models import load_model, model_id
    from stream_widgets.similarity import default_similarity
    from stream_widgets.tokens import tokenize

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--model-id", default=None, help="record this model id (for a GGUF file or folder)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--trace", default=None, help="bundled trace (default: the one with most sentences)")
    parser.add_argument("--forced-sentences", type=int, default=100)
    parser.add_argument("--resampling-sentences", type=int, default=60)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--json", default=str(RESULTS / "importance_speed.json"))
    args = parser.parse_args()

    model, tokenizer = load_model(args.model, dtype=torch.float32)
    model = model.to(args.device)
    name = args.trace or max(list_bundled_traces(), key=lambda n: len(load_bundled_trace(n).chunks))
    text = load_bundled_trace(name).full_cot
    rows = []
    for kind, n in (("forced", args.forced_sentences), ("resampling", args.resampling_sentences)):
        part, kept = cut(text, n)
        tokens = tokenize(tokenizer, part).input_ids.shape[1]
        if args.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        if kind == "forced":
            result = forced_importance(model, tokenizer, part, rules="thought-anchors")
        else:
            result = resampling_importance(
                model,
                tokenizer,
                part,
                samples=args.samples,
                rules="thought-anchors",
                max_new_tokens=args.max_new_tokens,
                similarity=default_similarity(),
            )
        seconds = time.perf_counter() - started
        rows.append(
            {
                "kind": kind,
                "sentences": len(result.sentences),
                "asked": kept,
                "tokens": int(tokens),
                "samples": args.samples if kind == "resampling" else None,
                "seconds": seconds,
            }
        )
        print(
            f"{kind:>10}: {len(result.sentences):3d} sentences, {tokens:5d} tokens, {seconds:7.1f} s",
            flush=True,
        )
    out = {
        "model_id": args.model_id or model_id(model),
        "trace": name,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "max_new_tokens": args.max_new_tokens,
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
