"""Time and peak memory of Stream tracing vs a plain SDPA forward vs eager `output_attentions=True`.

Every case runs in its own subprocess (so peak RSS, from `resource.getrusage`, belongs to that case
alone) on the default model over a bundled reasoning trace, repeated and cut to the asked length.
Cases: ``sdpa`` (plain forward, last-position logits), ``observe`` (`stream_widgets.trace`, default
config, sentence sums on), ``observe-exhaustive`` (the same with ``StreamConfig(exhaustive=True)``) and
``eager`` (all L x H x T x T weights returned; skipped where the
estimate would not fit in this machine's memory). Prints a table, writes benchmarks/results/tracing.json.

    .venv/bin/python benchmarks/tracing.py --tokens 4096 8192
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = ("sdpa", "observe", "observe-exhaustive", "eager")


def _text(tokenizer, tokens: int) -> str:
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    text = ""
    for name in list_bundled_traces():
        text += load_bundled_trace(name).full_cot + "\n\n"
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) >= tokens:
            return text[: offsets[tokens - 1][1]]
    raise ValueError(f"the bundled traces hold fewer than {tokens} tokens")


def run_case(case: str, tokens: int) -> dict:
    """Run one case in this process and return its measurements."""
    import torch

    from stream_widgets.models import load_model
    from stream_widgets.tokens import tokenize
    from stream_widgets.tracer import trace

    torch.set_num_threads(2)
    model, tokenizer = load_model()
    text = _text(tokenizer, tokens)
    ids = tokenize(tokenizer, text).input_ids
    with torch.inference_mode():  # warm-up: first-call kernel setup is not what we measure
        model(ids[:, :32], use_cache=False, logits_to_keep=1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if case.startswith("observe"):
        from stream_widgets.config import StreamConfig

        config = StreamConfig(exhaustive=case == "observe-exhaustive")
        result = trace(model, tokenizer, text, config, progress=False)
        extra = {
            "sparsity": result.sparsity().mean().item(),
            "retained_mass": result.retained_mass.mean().item(),
        }
    else:
        extra = {}
        with torch.inference_mode():
            if case == "sdpa":
                model(ids, use_cache=False, logits_to_keep=1)
            else:
                model.set_attn_implementation("eager")
                model(ids, use_cache=False, logits_to_keep=1, output_attentions=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "tokens": int(ids.shape[1]),
        "seconds": seconds,
        "peak_rss_gib": peak / 2**20,
        "peak_over_loaded_model_gib": (peak - base) / 2**20,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument(
        "--eager-limit-gib",
        type=float,
        default=None,
        help="skip eager where L*H*T*T*4 bytes exceeds this (default: 60%% of RAM)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tracing.json"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.tokens[0])))
        return

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    limit = args.eager_limit_gib or 0.6 * ram
    rows = []
    for tokens in args.tokens:
        for case in args.cases:
            weights_gib = 30 * 9 * tokens * tokens * 4 / 2**30  # SmolLM2: L=30, H=9, fp32
            if case == "eager" and weights_gib > limit:
                rows.append(
                    {
                        "case": case,
                        "tokens": tokens,
                        "skipped": f"needs > {weights_gib:.0f} GiB for the "
                        f"attention weights alone; this machine has {ram:.0f} GiB",
                    }
                )
                print(f"{case:<8} {tokens:>6}  skipped: {rows[-1]['skipped']}", flush=True)
                continue
            done = subprocess.run(
                [sys.executable, __file__, "--case", case, "--tokens", str(tokens)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{case:<8} {r['tokens']:>6}  {r['seconds']:8.1f} s  peak RSS {r['peak_rss_gib']:6.2f} GiB "
                f"(+{r['peak_over_loaded_model_gib']:.2f} over the loaded model)",
                flush=True,
            )
    print(f"\n{'tokens':>6} {'case':<8} {'time s':>8} {'x sdpa':>7} {'peak RSS GiB':>12}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['tokens']:>6} {r['case']:<8} {'skipped':>8}")
            continue
        sdpa = next(
            (s for s in rows if s["case"] == "sdpa" and s["tokens"] == r["tokens"] and "seconds" in s), None
        )
        ratio = f"{r['seconds'] / sdpa['seconds']:.2f}" if sdpa else "-"
        print(f"{r['tokens']:>6} {r['case']:<8} {r['seconds']:>8.1f} {ratio:>7} {r['peak_rss_gib']:>12.2f}")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {ram:.0f} GiB RAM"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
