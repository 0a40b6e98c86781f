"""Where the time of one `observe` trace goes on this machine: `cProfile` over `stream_widgets.trace` of
the default model on the bundled text (`benchmarks/tracing.py`'s), grouped into the model's own work,
the dense attention, the estimator, the kept probabilities and the sentence sums.

    python benchmarks/profile_tracing.py --tokens 4096 8192

Prints a table (seconds summed over layers; cProfile makes the whole a few percent slower than
`benchmarks/tracing.py`'s timed runs) and writes ``results/profile_tracing.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

# part -> (file suffix, function name) of the pstats entries whose cumulative time it is
PARTS = {
    "linear layers (q/k/v/o and MLP)": ("", "<built-in method torch._C._nn.linear>"),
    "dense attention with its log-sum-exp": (
        "",
        "<built-in method torch._ops.aten._scaled_dot_product_flash_attention_for_cpu>",
    ),
    "estimator (estimate_mask)": ("stream_widgets/estimator.py", "estimate_mask"),
    "block-score bmm": ("", "<built-in method torch.bmm>"),
    "key-block index_select": ("", "<method 'index_select' of 'torch._C.TensorBase' objects>"),
    "kept probabilities (masked_chunks)": ("stream_widgets/sparse_attention.py", "masked_chunks"),
    "sentence-pair sums (_add_sentence_sums)": ("stream_widgets/tracer.py", "_add_sentence_sums"),
}


def profile(model, tokenizer, text: str) -> tuple[float, dict[str, float]]:
    from stream_widgets.tracer import trace

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    trace(model, tokenizer, text, progress=False)
    profiler.disable()
    whole = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    parts = {}
    for part, (suffix, name) in PARTS.items():
        parts[part] = sum(v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(suffix))
    return whole, parts


def main() -> None:
    import torch
    from tracing import _text

    from stream_widgets.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_tracing.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model()
    with torch.inference_mode():  # first-call kernel set-up is not what we measure
        model(tokenizer("warm-up", return_tensors="pt").input_ids, use_cache=False)
    rows = []
    for tokens in args.tokens:
        whole, parts = profile(model, tokenizer, _text(tokenizer, tokens))
        rows.append({"tokens": tokens, "whole_seconds": whole, "parts_seconds": parts})
    print("| part | " + " | ".join(f"{r['tokens']:,} tokens" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    print("| whole trace | " + " | ".join(f"{r['whole_seconds']:.1f}" for r in rows) + " |")
    for part in PARTS:
        print(f"| {part} | " + " | ".join(f"{r['parts_seconds'][part]:.1f}" for r in rows) + " |")
    document = {
        "machine": platform.platform(),
        "threads": args.threads,
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
