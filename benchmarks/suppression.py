"""Time attention suppression (`suppression_matrix`) on bundled traces: tokens, sentences, seconds.

    python benchmarks/suppression.py --model qwen2.5-coder-0.5b --device cuda --traces NAME [NAME ...]
    python benchmarks/suppression.py --tokens 1024            # the default model on the CPU, one cut trace

Prints a table and writes JSON (`benchmarks/results/suppression.json` or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from stream_widgets.data import load_bundled_trace
from stream_widgets.dense_reference import truncate_to_tokens
from stream_widgets.models import load_model, model_id
from stream_widgets.suppression import suppression_matrix
from stream_widgets.tokens import tokenize

DEFAULT_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--traces", nargs="+", default=[DEFAULT_TRACE])
    parser.add_argument("--tokens", type=int, default=None, help="cut each trace to this many tokens")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "suppression.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    model = model.to(args.device)
    rows = []
    for name in args.traces:
        text = load_bundled_trace(name).full_cot
        if args.tokens:
            text = truncate_to_tokens(tokenizer, text, args.tokens)
        tokens = tokenize(tokenizer, text)
        started = time.perf_counter()
        matrix = suppression_matrix(model, tokenizer, text, batch_size=args.batch_size)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        below = matrix[np.tril_indices(matrix.shape[0], k=-1)]
        rows.append(
            {
                "trace": name,
                "tokens": tokens.num_tokens,
                "sentences": int(matrix.shape[0]),
                "seconds": seconds,
                "finite_cells": int(np.isfinite(below).sum()),
            }
        )
        print(f"{name}: T={tokens.num_tokens} S={matrix.shape[0]} {seconds:.1f} s", flush=True)
    print("\n| trace | tokens | sentences | seconds |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trace']} | {r['tokens']} | {r['sentences']} | {r['seconds']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": platform.platform(), "device": args.device, "model_id": model_id(model)}
    args.out.write_text(json.dumps({**document, "batch_size": args.batch_size, "rows": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
