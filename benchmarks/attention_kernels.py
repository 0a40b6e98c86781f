"""Which CUDA attention kernel gives observe mode its log-sum-exp at the plain forward's speed.

Observe tracing needs every query's log-sum-exp (the softmax normaliser over all causal keys) beside the
attention output; the plain forward's `scaled_dot_product_attention` computes it internally and throws it
away. This times, on one layer's shapes (default: Qwen2-1.5B, 12 query / 2 KV heads, head dim 128, bf16,
random q/k/v, batch 1), every way to get the output and, where the kernel returns it, the log-sum-exp:

* ``sdpa``: `F.scaled_dot_product_attention(..., is_causal=True, enable_gqa=True)`, as transformers'
  SDPA attention calls it (no lse); with ``--backends`` also pinned to each SDPA backend;
* ``flash+repeat`` / ``flash``: `aten._scaled_dot_product_flash_attention` with K/V expanded to the
  query heads, and with the KV heads as they are (GQA inside the kernel, where it accepts them);
* ``cudnn+repeat`` / ``cudnn``: `aten._scaled_dot_product_cudnn_attention(compute_log_sumexp=True)`;
* ``efficient+repeat``: `aten._scaled_dot_product_efficient_attention(compute_log_sumexp=True)`;
* ``dense_attention``: what the tracer calls (`stream_widgets.sparse_attention.dense_attention`).

Each is checked against ``flash+repeat`` (max |out difference|, max |lse difference|); the CUDA kernel
names of one ``sdpa`` call (torch profiler) say which backend the plain forward runs. Time: median of
``--repeats`` runs after one warm-up, CUDA events.

    python benchmarks/attention_kernels.py --tokens 32768 131072 --out DIR

Prints a table and writes ``attention_kernels.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from stream_widgets.attention import repeat_kv
from stream_widgets.sparse_attention import dense_attention

BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


def _timed(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def variants(q, k, v, scale, backends: bool) -> dict:
    heads = q.shape[1]

    def rep(x):
        return repeat_kv(x, heads)

    table = {
        "sdpa": lambda: (
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True),
            None,
        ),
        "flash+repeat": lambda: torch.ops.aten._scaled_dot_product_flash_attention(
            q, rep(k), rep(v), 0.0, True, False, scale=scale
        )[:2],
        "flash": lambda: torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, True, False, scale=scale
        )[:2],
        "cudnn+repeat": lambda: torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, rep(k), rep(v), None, True, 0.0, True, False, scale=scale
        )[:2],
        "cudnn": lambda: torch.ops.aten._scaled_dot_product_cudnn_attention(
            q, k, v, None, True, 0.0, True, False, scale=scale
        )[:2],
        "efficient+repeat": lambda: torch.ops.aten._scaled_dot_product_efficient_attention(
            q, rep(k), rep(v), None, True, 0.0, True, scale=scale
        )[:2],
        "dense_attention": lambda: dense_attention(q, k, v, scale),
    }
    if backends:
        for name, backend in BACKENDS.items():

            def pinned(backend=backend):
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(
                        q, k, v, is_causal=True, scale=scale, enable_gqa=True
                    ), None

            table[f"sdpa[{name}]"] = pinned
    return table


def sdpa_kernels(q, k, v, scale) -> list[str]:
    """CUDA kernel names of one plain SDPA call."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
        torch.cuda.synchronize()
    return sorted({e.key for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA})


def run(tokens: int, heads: int, kv_heads: int, dim: int, repeats: int, backends: bool) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, n, tokens, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        for n in (heads, kv_heads, kv_heads)
    )
    scale = dim**-0.5
    table = variants(q, k, v, scale, backends)
    ref_out, ref_lse = table["flash+repeat"]()
    ref_lse = ref_lse.float()
    rows = []
    for name, fn in table.items():
        row = {"variant": name}
        try:
            out, lse = fn()
            row["out_max_abs_diff"] = (out.float() - ref_out.float()).abs().max().item()
            if lse is not None:
                row["lse_shape"] = list(lse.shape)
                lse = lse.float().reshape(ref_lse.shape[0], ref_lse.shape[1], -1)[..., :tokens]
                row["lse_max_abs_diff"] = (lse - ref_lse).abs().max().item()
            del out, lse
            row["seconds"] = _timed(fn, repeats)
        except (RuntimeError, TypeError) as error:
            row["error"] = str(error).splitlines()[0][:200]
        torch.cuda.empty_cache()
        rows.append(row)
        print(tokens, row, flush=True)
    return {"tokens": tokens, "sdpa_kernels": sdpa_kernels(q, k, v, scale), "rows": rows}


def print_table(result: dict) -> None:
    for case in result["cases"]:
        base = next(r["seconds"] for r in case["rows"] if r["variant"] == "sdpa")
        print(f"\nT = {case['tokens']:,}; plain SDPA runs: {', '.join(case['sdpa_kernels'])[:200]}")
        print(f"{'variant':<18} {'ms':>9} {'/ sdpa':>7} {'lse diff':>9} {'out diff':>9}")
        for r in case["rows"]:
            if "error" in r:
                print(f"{r['variant']:<18} error: {r['error'][:80]}")
                continue
            lse = f"{r['lse_max_abs_diff']:.1e}" if "lse_max_abs_diff" in r else "-"
            print(
                f"{r['variant']:<18} {1000 * r['seconds']:>9.2f} {r['seconds'] / base:>7.2f} {lse:>9} "
                f"{r['out_max_abs_diff']:>9.1e}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[32_768, 131_072])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", action="store_true", help="also pin plain SDPA to each backend")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--table-from", type=Path, help="re-print a saved run")
    args = parser.parse_args()
    if args.table_from:
        print_table(json.loads(args.table_from.read_text()))
        return
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "shape": {"heads": args.heads, "kv_heads": args.kv_heads, "dim": args.dim, "dtype": "bfloat16"},
        "repeats": args.repeats,
        "cases": [
            run(t, args.heads, args.kv_heads, args.dim, args.repeats, args.backends) for t in args.tokens
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_kernels.json").write_text(json.dumps(result, indent=1))
    print_table(result)


if __name__ == "__main__":
    main()
