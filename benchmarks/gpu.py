"""The Stream estimator on one GPU at 32k ... 1M tokens, against SDPA flash and a block-dense estimator.

One layer of Llama-3-8B-shaped attention (32 query heads, 8 KV heads, head dim 128, bf16, random Q/K),
the `--config` settings (default `StreamConfig()`). Per T:

* ``stream``: `estimate_mask` (the CUDA path), median of repeated runs after a warm-up, CUDA events;
  peak extra memory = ``torch.cuda.max_memory_allocated()`` minus what was allocated before the call
  (the inputs).
* ``sdpa``: `scaled_dot_product_attention(is_causal=True)` forward with the flash backend, K/V expanded
  to 32 heads. Where 32 heads would take long (T >= 512k) it is timed on a group of heads and scaled to
  32 by head count (every head does the same work); the JSON records the heads timed.
* ``block_dense``: mean-pooled key blocks and q_block-pooled queries, scores against every key block,
  causal candidates only, then top-k: per head, in chunks of query blocks.
* ``reference``: the plain-torch reference path on the GPU, at 32k only, for scale.
* Floors: bytes of Q and K read once over the measured copy bandwidth; the search's block-score
  arithmetic (rows x halves scored x q_block x k_block x D x 2 FLOP; `search.halves_scored`) over the measured bf16 matmul
  rate. Both ceilings are measured in the same run.

* ``compare``: `--compare NAME ...` times other configs on the same inputs in the same run.
* ``--profile T``: instead, one `estimate_mask` call at T under the torch profiler: where its GPU time
  goes, kernel by kernel (``gpu_profile.json`` and a table ``gpu_profile.txt``).
* ``--launch-sweep T``: instead, the block-score kernel alone on one search round's worth of rows at T
  (every block row of the layer, 2 top_k random representative blocks each), under each launch setting
  (branches per dot x warps x pipeline stages; ``gpu_launch_sweep.json``).

Usage: ``python benchmarks/gpu.py [--out DIR] [--max-t 1048576] [--config NAME] [--compare NAME ...]``;
prints a table, writes ``gpu.json`` (``--name``).
``--table-from results/gpu.json`` prints the table (with the derived columns) of a saved run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from stream_configs import SWEEP, add_config_argument, named  # benchmarks/stream_configs.py

from stream_widgets import StreamConfig, estimate_mask, search
from stream_widgets.estimator import estimate_mask_reference

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
LENGTHS = [32_768, 131_072, 524_288, 1_048_576]
GiB = 2**30


def _time(fn, *args, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median seconds of `fn(*args)` over `repeats` runs after `warmup`, timed with CUDA events."""
    for _ in range(warmup):
        fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), times


def _peak_extra(fn, *args) -> int:
    """Peak device memory `fn(*args)` allocates beyond what is allocated when it starts."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn(*args)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del result
    return peak


def measure_ceilings() -> dict:
    """Device copy bandwidth (bytes read + written) and bf16 matmul rate, on random data."""
    src = torch.randn(2 * GiB // 2, device="cuda", dtype=torch.bfloat16)  # 2 GiB
    dst = torch.empty_like(src)
    copy_s, _ = _time(dst.copy_, src, repeats=20, warmup=3)
    bandwidth = 2 * src.numel() * src.element_size() / copy_s
    del src, dst
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    mm_s, _ = _time(torch.matmul, a, b, repeats=20, warmup=3)
    return {"copy_bytes_per_s": bandwidth, "bf16_matmul_flop_per_s": 2 * n**3 / mm_s}


def block_dense_mask(q: torch.Tensor, k: torch.Tensor, config: StreamConfig, chunk_bytes: int = GiB):
    """Pooled block scores against every causal candidate block, then top-k: ``[B, H, Qb, top_k]``."""
    b, h, t, d = q.shape
    group = h // k.shape[1]
    qb, kb = config.q_block, config.k_block
    num_q_blocks, num_k_blocks = -(-t // qb), -(-t // kb)
    pooled_k = F.pad(k, (0, 0, 0, -t % kb)).view(b, k.shape[1], num_k_blocks, kb, d).mean(dim=3)
    pooled_q = F.pad(q, (0, 0, 0, -t % qb)).view(b, h, num_q_blocks, qb, d).mean(dim=3)
    columns = torch.arange(num_k_blocks, device=q.device)
    out = torch.empty(b, h, num_q_blocks, config.top_k, device=q.device, dtype=torch.int32)
    rows = max(1, chunk_bytes // (num_k_blocks * 8))
    for bi in range(b):
        for hi in range(h):
            keys = pooled_k[bi, hi // group]
            for begin in range(0, num_q_blocks, rows):
                block = torch.arange(begin, min(begin + rows, num_q_blocks), device=q.device)
                layout = search.layout(block[:, None], t, config)
                scores = pooled_q[bi, hi, begin : begin + rows] @ keys.T
                candidate = (columns >= layout.sink_end) & (columns < layout.local_start)
                scores = scores.masked_fill(~candidate, float("-inf"))
                out[bi, hi, begin : begin + rows] = scores.topk(config.top_k, dim=1).indices.to(torch.int32)
    return out


def sdpa_time(q, k, heads_timed: int, repeats: int) -> tuple[float, int]:
    """SDPA flash causal forward over `heads_timed` query heads, scaled to all heads by count."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    h, group = q.shape[1], q.shape[1] // k.shape[1]
    qs = q[:, :heads_timed]
    ks = k[:, : -(-heads_timed // group)].repeat_interleave(group, dim=1)[:, :heads_timed].contiguous()
    vs = torch.randn_like(ks)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        attend = partial(F.scaled_dot_product_attention, is_causal=True)
        seconds, _ = _time(attend, qs, ks, vs, repeats=repeats)
        peak = _peak_extra(attend, qs, ks, vs)
    return seconds * h / heads_timed, peak


def run(lengths: list[int], config: StreamConfig, compare: dict[str, StreamConfig]) -> dict:
    props = torch.cuda.get_device_properties(0)
    import triton

    result = {
        "gpu": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "shape": {
            "heads": HEADS,
            "kv_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "dtype": "bfloat16",
            "batch": 1,
        },
        "config": config.to_dict(),
        "compare": {name: other.to_dict() for name, other in compare.items()},
    }
    ceilings = measure_ceilings()
    result["ceilings"] = ceilings
    print(
        f"{props.name}: copy {ceilings['copy_bytes_per_s'] / 1e12:.2f} TB/s, "
        f"bf16 matmul {ceilings['bf16_matmul_flop_per_s'] / 1e12:.0f} TFLOP/s",
        flush=True,
    )
    rows = []
    for t in lengths:
        torch.manual_seed(t)
        q = torch.randn(1, HEADS, t, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, KV_HEADS, t, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
        repeats = 5 if t <= 131_072 else 3
        row = {"T": t}
        stream_s, stream_all = _time(estimate_mask, q, k, config, repeats=repeats)
        row["stream_s"], row["stream_runs_s"] = stream_s, stream_all
        row["stream_peak_extra_bytes"] = _peak_extra(estimate_mask, q, k, config)

        for name, other in compare.items():  # the same inputs, timed in the same run
            other_s, _ = _time(estimate_mask, q, k, other, repeats=repeats)
            row.setdefault("compare", {})[name] = {
                "stream_s": other_s,
                "vs_config": other_s / stream_s,
                "peak_extra_bytes": _peak_extra(estimate_mask, q, k, other),
            }

        block_rows = HEADS * -(-t // config.q_block)
        rounds = search.num_rounds(t, config)
        row["halves_per_block_row"] = search.halves_scored(t, config)
        flops = block_rows * row["halves_per_block_row"] * config.q_block * config.k_block * HEAD_DIM * 2
        qk_bytes = (q.numel() + k.numel()) * q.element_size()
        row["rounds"] = rounds
        row["score_flop"] = flops
        row["floor_bytes_s"] = qk_bytes / ceilings["copy_bytes_per_s"]
        row["floor_flop_s"] = flops / ceilings["bf16_matmul_flop_per_s"]

        dense_s, _ = _time(block_dense_mask, q, k, config, repeats=3)
        row["block_dense_s"] = dense_s
        row["block_dense_peak_extra_bytes"] = _peak_extra(block_dense_mask, q, k, config)

        heads_timed = HEADS if t <= 131_072 else (8 if t <= 524_288 else 4)
        row["sdpa_heads_timed"] = heads_timed
        row["sdpa_s"], row["sdpa_peak_extra_bytes"] = sdpa_time(q, k, heads_timed, repeats=3)

        if t <= 32_768:
            ref_s, _ = _time(estimate_mask_reference, q, k, config, repeats=3)
            row["reference_s"] = ref_s
            same = estimate_mask(q, k, config)
            ref = estimate_mask_reference(q, k, config)
            agree = (same.to_block_dense() & ref.to_block_dense()).sum() / ref.to_block_dense().sum()
            row["recall_vs_reference"] = agree.item()
        rows.append(row)
        print(json.dumps(row), flush=True)
        del q, k
        torch.cuda.empty_cache()
    result["rows"] = rows
    return result


def add_derived(result: dict) -> None:
    """Columns computed from the measured fields: the gather floor and the growth of the stream time.

    The gather floor is the search's own memory traffic: every scored branch reads one key block
    (k_block x D bf16 values) from device memory, rows x halves scored of them, over the measured copy
    bandwidth (no reuse through the L2 cache assumed).
    """
    config, bandwidth = result["config"], result["ceilings"]["copy_bytes_per_s"]
    previous = None
    for row in result["rows"]:
        block_rows = result["shape"]["heads"] * -(-row["T"] // config["q_block"])
        scored = row.get(
            "halves_per_block_row", row["rounds"] * 2 * config["top_k"]
        )  # older runs: paper search
        gathered = block_rows * scored * config["k_block"] * HEAD_DIM * 2
        row["gathered_key_bytes"] = gathered
        row["floor_gather_s"] = gathered / bandwidth
        if previous is not None:
            row["growth_from_previous"] = row["stream_s"] / previous["stream_s"]
        previous = row


def print_table(result: dict) -> None:
    add_derived(result)
    print()
    print(
        f"{'T':>9} {'stream ms':>10} {'peak MiB':>9} {'sdpa ms':>10} {'sdpa/stream':>11} "
        f"{'dense ms':>9} {'QK floor ms':>11} {'flop floor ms':>13} {'gather floor ms':>15}"
    )
    for row in result["rows"]:
        print(
            f"{row['T']:>9} {row['stream_s'] * 1e3:>10.1f} {row['stream_peak_extra_bytes'] / 2**20:>9.0f} "
            f"{row['sdpa_s'] * 1e3:>10.1f} {row['sdpa_s'] / row['stream_s']:>11.1f} "
            f"{row['block_dense_s'] * 1e3:>9.1f} {row['floor_bytes_s'] * 1e3:>11.2f} "
            f"{row['floor_flop_s'] * 1e3:>13.1f} {row['floor_gather_s'] * 1e3:>15.1f}"
        )
    for row in result["rows"]:
        for name, other in row.get("compare", {}).items():
            print(
                f"T={row['T']}: {name}: {other['stream_s'] * 1e3:.1f} ms, {other['vs_config']:.2f}x the config's"
            )
    for row in result["rows"][1:]:
        print(
            f"T={row['T']}: stream time x{row['growth_from_previous']:.2f} from the previous T; "
            f"stream / floors: QK bytes {row['stream_s'] / row['floor_bytes_s']:.0f}x, "
            f"FLOP {row['stream_s'] / row['floor_flop_s']:.2f}x, gather {row['stream_s'] / row['floor_gather_s']:.2f}x"
        )


def profile(tokens: int, config: StreamConfig, out: Path) -> dict:
    """GPU time of one `estimate_mask` call at `tokens`, per CUDA kernel (torch profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, KV_HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    estimate_mask(q, k, config)
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        estimate_mask(q, k, config)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.self_device_time_total for e in events)
    kernels = sorted(
        ({"kernel": e.key[:120], "calls": e.count, "ms": e.self_device_time_total / 1000} for e in events),
        key=lambda row: -row["ms"],
    )
    result = {"tokens": tokens, "config": config.to_dict(), "gpu_ms": total / 1000, "kernels": kernels[:25]}
    (out / "gpu_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
    (out / "gpu_profile.txt").write_text(table)
    print(f"estimate_mask at T={tokens:,}: {total / 1000:.1f} ms of GPU time")
    for row in kernels[:15]:
        print(f"  {row['ms']:8.2f} ms  {row['calls']:5d} calls  {row['kernel']}")
    return result


def launch_sweep(tokens: int, config: StreamConfig, out: Path) -> list[dict]:
    """The block-score kernel on one round of every block row at `tokens`, per launch setting."""
    from stream_widgets.kernels.block_score import block_scores

    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, KV_HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    rows = HEADS * -(-tokens // config.q_block)
    num_k = -(-tokens // config.k_block)
    blocks = torch.randint(0, num_k, (rows, 2 * config.top_k), device="cuda", generator=gen)
    table = []
    for branches in (2, 4, 8, 16):
        for warps in (2, 4, 8):
            for stages in (1, 2, 3, 4):
                fn = partial(block_scores, q, k, blocks, 0, config.q_block, config.k_block)
                settings = dict(branches=branches, num_warps=warps, num_stages=stages)
                try:
                    seconds, _ = _time(partial(fn, **settings), repeats=5)
                except Exception as error:  # a setting the compiler refuses (shared memory, registers)
                    table.append({**settings, "error": str(error).splitlines()[0][:120]})
                    continue
                table.append({**settings, "ms": 1000 * seconds})
                print(
                    f"branches {branches:>2} warps {warps} stages {stages}: {1000 * seconds:8.2f} ms",
                    flush=True,
                )
    result = {"tokens": tokens, "rows": rows, "halves": 2 * config.top_k, "settings": table}
    (out / "gpu_launch_sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--max-t", type=int, default=LENGTHS[-1])
    parser.add_argument("--table-from", type=Path, help="print the table of a saved gpu.json; runs nothing")
    add_config_argument(parser)
    parser.add_argument(
        "--compare", nargs="*", default=[], choices=list(SWEEP), help="also time these configs, same inputs"
    )
    parser.add_argument("--name", default="gpu.json", help="file name of the results under --out")
    parser.add_argument("--profile", type=int, default=0, help="profile one estimate_mask call at this T")
    parser.add_argument(
        "--launch-sweep", type=int, default=0, help="time the kernel's launch settings at this T"
    )
    args = parser.parse_args()
    if args.launch_sweep:
        args.out.mkdir(parents=True, exist_ok=True)
        launch_sweep(args.launch_sweep, named(args.config), args.out)
        return
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        profile(args.profile, named(args.config), args.out)
        return
    if args.table_from is not None:
        print_table(json.loads(args.table_from.read_text()))
        return
    compare = {name: named(name) for name in args.compare}
    result = run([t for t in LENGTHS if t <= args.max_t], named(args.config), compare)
    print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / args.name
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
