"""Fidelity sweep: does the Stream mask preserve SmolLM2's next-token behaviour on real CoT traces?

For a few bundled Thought Anchors traces (truncated to --tokens tokens) and a few configs, runs
`stream_widgets.fidelity` (dense vs sparse next-token distributions: per CoT position and at the final
position) with the estimator's masks and with the exact block oracle's. Prints a table and writes
benchmarks/results/fidelity.json.

    .venv/bin/python benchmarks/fidelity.py --tokens 4096 --traces 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from stream_widgets.config import StreamConfig
from stream_widgets.data import list_bundled_traces, load_bundled_trace
from stream_widgets.estimator import estimate_mask, oracle_mask
from stream_widgets.fidelity import fidelity
from stream_widgets.models import load_model

CONFIGS = {
    "default (q64, top32)": StreamConfig(),
    "q16, top32": StreamConfig(q_block=16),
    "q64, top32, bound": StreamConfig(score_rule="bound"),
}


def truncate(tokenizer, text: str, tokens: int) -> str:
    """The longest prefix of `text` that tokenises to at most `tokens` tokens (cut at a token edge)."""
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= tokens else text[: offsets[tokens - 1][1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--traces", type=int, default=2, help="how many bundled traces (longest first)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), help="names from CONFIGS")
    parser.add_argument("--oracle", action="store_true", help="also run the exact block oracle per config")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fidelity.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    model, tokenizer = load_model()
    bundled = [load_bundled_trace(name) for name in list_bundled_traces()]
    bundled = sorted((b for b in bundled if b.is_math), key=lambda b: -len(b.full_cot))[: args.traces]
    rows = []
    for trace in bundled:
        text = truncate(tokenizer, trace.full_cot, args.tokens)
        for name in args.configs:
            for mask_name, mask_fn in [("estimator", estimate_mask)] + (
                [("oracle", oracle_mask)] if args.oracle else []
            ):
                start = time.perf_counter()
                report = fidelity(model, tokenizer, text, CONFIGS[name], mask_fn=mask_fn)
                row = {
                    "trace": trace.name,
                    "config": name,
                    "mask": mask_name,
                    **report.to_dict(),
                    "seconds": time.perf_counter() - start,
                }
                rows.append(row)
                print(f"{trace.name[-40:]:<40} {name:<20} {mask_name:<9} {report}", flush=True)

    print()
    header = f"{'config':<20} {'mask':<9} {'tokens':>6} {'sparsity':>8} {'top-1':>6} {'mean KL':>8} {'p95 KL':>7} {'final top-1':>11} {'mass':>6}"
    print(header)
    for name in args.configs:
        for mask_name in ("estimator", "oracle"):
            chosen = [r for r in rows if r["config"] == name and r["mask"] == mask_name]
            if not chosen:
                continue

            def mean(key: str, chosen: list = chosen) -> float:
                return sum(r[key] for r in chosen) / len(chosen)

            final = sum(r["final_top1_agrees"] for r in chosen)
            print(
                f"{name:<20} {mask_name:<9} {mean('num_tokens'):>6.0f} {mean('sparsity'):>8.1%} "
                f"{mean('top1_agreement'):>6.3f} {mean('mean_kl'):>8.4f} {mean('p95_kl'):>7.4f} "
                f"{final:>5}/{len(chosen):<5} {mean('retained_mass'):>6.3f}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    out.write_text(json.dumps({"machine": machine, "tokens": args.tokens, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
