"""Estimator scaling and quality on CPU (or CUDA): time, peak memory, recall against the oracle.

Three parts, each printed as a table and written to ``benchmarks/results/estimator.json``:

1. Scaling: `estimate_mask` (both score rules) at T = 2k ... 64k, side by side in one run with the exact
   `oracle_mask` (where it fits) and a dense ``q @ k^T`` + softmax of one head. Every case runs in its own
   subprocess so its peak memory (growth of max RSS over the inputs) is its own. Reports t(2T)/t(T).
2. Recall on random Q/K: the share of the oracle's chosen (non-fixed) blocks that the search keeps.
3. Recall and attention mass kept on real post-RoPE Q/K of the default model over a bundled reasoning
   trace (``--real``): per score rule, for the search and the oracle, the share of each query's true
   softmax mass that falls in its kept blocks.

Usage: ``python benchmarks/estimator.py [--max-t 65536] [--real] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from stream_widgets import StreamConfig, estimate_mask, oracle_mask

RESULTS = Path(__file__).resolve().parent / "results"
# The default model's attention shape (SmolLM2-135M: 9 query heads, 3 KV heads, head dim 64).
HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64
ORACLE_MAX_T = 8192
DENSE_MAX_T = 16384


def _run_case(method: str, t: int, device: str, repeats: int) -> dict:
    """Time one method at length t in this process; peak memory is max-RSS growth over the inputs."""
    import resource

    torch.manual_seed(0)
    q = torch.randn(1, HEADS, t, HEAD_DIM, device=device)
    k = torch.randn(1, KV_HEADS, t, HEAD_DIM, device=device)
    config = StreamConfig(score_rule="bound" if method == "stream-bound" else "representative")

    def once():
        if method in ("stream", "stream-bound"):
            return estimate_mask(q, k, config)
        if method == "oracle":
            return oracle_mask(q, k, config)
        # Dense reference: one head's full attention probabilities, what output_attentions stores.
        return torch.softmax((q[:, :1] @ k[:, :1].transpose(-1, -2)) / HEAD_DIM**0.5, dim=-1)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) * 1024
    return {"method": method, "T": t, "seconds": statistics.median(times), "peak_extra_bytes": peak}


def _subprocess_case(method: str, t: int, device: str, repeats: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", method, str(t), "--device", device, "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling(max_t: int, device: str, min_t: int = 2048, large_repeats: int = 1) -> list[dict]:
    rows = []
    t = min_t
    while t <= max_t:
        methods = ["stream", "stream-bound"]
        if t <= ORACLE_MAX_T:
            methods.append("oracle")
        if t <= DENSE_MAX_T:
            methods.append("dense-1-head")
        for method in methods:
            repeats = 3 if t <= 16384 else large_repeats
            row = _subprocess_case(method, t, device, repeats)
            rows.append(row)
            print(
                f"  {method:>13} T={t:>6}  {row['seconds']:8.3f} s  {row['peak_extra_bytes'] / 2**20:8.1f} MiB"
            )
        t *= 2
    return rows


def _fixed_only(config, t):
    """bool [1, 1, Qb, Kb]: the sink and window blocks of every query block."""
    qn, kn = -(-t // config.q_block), -(-t // config.k_block)
    out = torch.zeros(1, 1, qn, kn, dtype=torch.bool)
    for i in range(qn):
        q_start, q_end = i * config.q_block, min((i + 1) * config.q_block, t)
        local = max(q_start - config.window, 0) // config.k_block
        out[0, 0, i, : min(config.sink_blocks, local)] = True
        out[0, 0, i, local : (q_end - 1) // config.k_block + 1] = True
    return out


def block_recall(search, oracle, config, t) -> float:
    fixed = _fixed_only(config, t)
    chosen_oracle = oracle.to_block_dense() & ~fixed
    chosen_search = search.to_block_dense() & ~fixed
    return (chosen_oracle & chosen_search).sum().item() / max(chosen_oracle.sum().item(), 1)


def mass_kept(q, k, mask) -> float:
    """Mean over heads and queries of the true softmax mass inside the mask (dense, small T only)."""
    group = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(group, dim=1).float()
    total = 0.0
    for h in range(q.shape[1]):
        probs = torch.softmax(
            (q[:, h].float() @ kk[:, h].transpose(-1, -2)) / q.shape[-1] ** 0.5
            + torch.full((q.shape[2],) * 2, float("-inf")).triu(1),
            dim=-1,
        )
        total += (probs * mask.to_dense()[:, h]).sum(-1).mean().item()
    return total / q.shape[1]


def random_recall(t: int = 4096) -> list[dict]:
    torch.manual_seed(0)
    q, k = torch.randn(1, HEADS, t, HEAD_DIM), torch.randn(1, KV_HEADS, t, HEAD_DIM)
    rows = []
    for rule in ("representative", "bound"):
        config = StreamConfig(score_rule=rule)
        recall = block_recall(estimate_mask(q, k, config), oracle_mask(q, k, config), config, t)
        rows.append({"inputs": "random", "T": t, "score_rule": rule, "block_recall": recall})
        print(f"  random T={t} {rule:>14}: block recall {recall:.3f}")
    return rows


def real_recall(max_tokens: int = 2048, layers=(0, 4, 9, 14, 19, 24, 29)) -> list[dict]:
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace

    model, tokenizer = load_model()
    text = load_bundled_trace(0).full_cot
    ids = tokenizer(text)["input_ids"][:max_tokens]
    text = tokenizer.decode(ids)
    captured = {}

    def capture(q, k, config):
        captured[len(captured)] = (q.detach().clone(), k.detach().clone())
        return estimate_mask(q, k, config)

    trace(model, tokenizer, text, mask_fn=capture, sentences=False, progress=False)
    rows = []
    for rule in ("representative", "bound"):
        config = StreamConfig(score_rule=rule)
        recalls, kept_search, kept_oracle = [], [], []
        for layer in layers:
            q, k = captured[layer]
            t = q.shape[2]
            search, oracle = estimate_mask(q, k, config), oracle_mask(q, k, config)
            recalls.append(block_recall(search, oracle, config, t))
            kept_search.append(mass_kept(q, k, search))
            kept_oracle.append(mass_kept(q, k, oracle))
        row = {
            "inputs": "SmolLM2-135M post-RoPE Q/K, bundled trace 0",
            "T": t,
            "layers": list(layers),
            "score_rule": rule,
            "block_recall": statistics.mean(recalls),
            "mass_kept_search": statistics.mean(kept_search),
            "mass_kept_oracle": statistics.mean(kept_oracle),
            "sparsity": search.sparsity().item(),
        }
        rows.append(row)
        print(
            f"  real T={t} {rule:>14}: block recall {row['block_recall']:.3f}, mass kept "
            f"{row['mass_kept_search']:.3f} (oracle {row['mass_kept_oracle']:.3f}), sparsity {row['sparsity']:.3f}"
        )
    return rows


def growth(rows: list[dict], method: str, key: str) -> list[tuple[int, float]]:
    series = sorted((r["T"], r[key]) for r in rows if r["method"] == method)
    return [(t2, v2 / v1) for (t1, v1), (t2, v2) in zip(series, series[1:], strict=False) if v1 > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-t", type=int, default=65536)
    parser.add_argument("--min-t", type=int, default=2048)
    parser.add_argument("--large-repeats", type=int, default=1, help="runs per case above 16k (median)")
    parser.add_argument("--no-recall", action="store_true", help="skip the random-input recall")
    parser.add_argument("--out", default=str(RESULTS / "estimator.json"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real", action="store_true", help="also measure recall on the default model's Q/K")
    parser.add_argument("--case", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    if args.case:
        print(json.dumps(_run_case(args.case[0], int(args.case[1]), args.device, args.repeats)))
        return

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"Estimator scaling on {args.device} ({machine}); H={HEADS}, Hkv={KV_HEADS}, D={HEAD_DIM}")
    rows = scaling(args.max_t, args.device, args.min_t, args.large_repeats)
    print("\nGrowth t(2T)/t(T) and memory(2T)/memory(T):")
    summary = {}
    for method in ("stream", "stream-bound", "oracle", "dense-1-head"):
        times, mems = growth(rows, method, "seconds"), growth(rows, method, "peak_extra_bytes")
        summary[method] = {"time_growth": times, "memory_growth": mems}
        print(f"  {method:>13}: time " + ", ".join(f"{t}: {g:.2f}" for t, g in times))
        print(f"  {'':>13}  mem  " + ", ".join(f"{t}: {g:.2f}" for t, g in mems))
    print("\nOracle-block recall:")
    recall = random_recall() if not args.no_recall else []
    if args.real:
        recall += real_recall()
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out)
    out.write_text(
        json.dumps(
            {"machine": machine, "device": args.device, "scaling": rows, "growth": summary, "recall": recall},
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
