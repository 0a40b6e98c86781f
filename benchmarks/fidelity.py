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
from stream_widgets.faithfulness import fidelity
from stream_widgets.models import load_model

CONFIGS = {
    "default (q64, top32)": StreamConfig(),
    "q64, top8": StreamConfig(top_k=8),
    "q32, top8": StreamConfig(q_block=32, top_k=8),
    "q16, top8": StreamConfig(q_block=16, top_k=8),
    "q16, top8, bound": StreamConfig(q_block=16, top_k=8, score_rule="bound"),
    "q16, top12": StreamConfig(q_block=16, top_k=12),
    "q16, k8, top16": StreamConfig(q_block=16, k_block=8, top_k=16),
    "q16, top6, w128": StreamConfig(q_block=16, top_k=6, window=128),
    "q16, top4, s64, w128": StreamConfig(q_block=16, top_k=4, sink=64, window=128),
    # wider searches (search_width > top_k): same masks' size, more of the oracle's blocks
    "q16, top8, width32": StreamConfig(q_block=16, top_k=8, search_width=32),
    "q16, k8, top16, width64": StreamConfig(q_block=16, k_block=8, top_k=16, search_width=64),
    "default, width64": StreamConfig(search_width=64),
}


def truncate(tokenizer, text: str, tokens: int) -> str:
    """The longest prefix of `text` that tokenises to at most `tokens` tokens (cut at a token edge)."""
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= tokens else text[: offsets[tokens - 1][1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--traces", type=int, default=2, help="how many bundled traces (longest first)")
    parser.add_argument(
        "--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), help="names from CONFIGS"
    )
    parser.add_argument("--oracle", action="store_true", help="also run the exact block oracle per config")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fidelity.json"))
    parser.add_argument("--model", default=None, help="model path (default: the embedded SmolLM2 GGUF)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(2)

    model, tokenizer = load_model(args.model)
    model = model.to(args.device)
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
                    **report.to_dict(),  # holds the config as a dict under "config"
                    "config_name": name,
                    "mask": mask_name,
                    "seconds": time.perf_counter() - start,
                }
                rows.append(row)
                print(f"{trace.name[-40:]:<40} {name:<20} {mask_name:<9} {report}", flush=True)
                _write(args, rows)  # after every row, so a stopped sweep keeps what it measured

    print()
    header = f"{'config':<20} {'mask':<9} {'tokens':>6} {'sparsity':>8} {'top-1':>6} {'mean KL':>8} {'p95 KL':>7} {'final top-1':>11} {'mass':>6}"
    print(header)
    for name in args.configs:
        for mask_name in ("estimator", "oracle"):
            chosen = [r for r in rows if r["config_name"] == name and r["mask"] == mask_name]
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
    print(f"\nwrote {_write(args, rows)}")


def _write(args, rows: list[dict]) -> Path:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if args.device == "cuda":
        machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    out.write_text(json.dumps({"machine": machine, "tokens": args.tokens, "rows": rows}, indent=2))
    return out


if __name__ == "__main__":
    main()
