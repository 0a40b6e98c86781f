"""End-to-end Stream tracing on one GPU: a random-weight Qwen2-1.5B at 32k / 64k / 128k tokens.

Model: a Qwen2-1.5B-shaped `Qwen2Config` (28 layers, hidden 1536, 12 query / 2 KV heads, head dim 128,
intermediate 8960, vocab 151936, rope_theta 1e6, 131072 positions) with random weights, bf16, on CUDA.
Text: the bundled Thought Anchors chains of thought, concatenated, cut at T tokens of the SmolLM2
tokenizer (its ids are < 49152, inside Qwen2's vocabulary). Per T, after one warm-up at 4,096 tokens:

* ``sdpa``: a plain forward of the decoder (``model.get_decoder()``, no LM head, no cache) with
  ``attn_implementation="sdpa"``;
* ``observe``: `stream_widgets.trace` in ``observe`` mode, the `--config` settings (default `StreamConfig`), ``sentences=False``
  (no sentence sums: the text is many traces glued together; ``--sentences`` turns them on, ``[L, H, S, S]``
  float32 on the host), wall time including tokenisation and the copy of the records to host memory.

Peak GPU memory = ``torch.cuda.max_memory_allocated()`` after a reset per case (weights included).
Wall time = host clock around the call with ``torch.cuda.synchronize()`` on both sides; the median of
``--repeats`` runs. ``--profile T`` also times the pieces of one layer's Stream attention call at T
(layer 0's real q/k, random v) and writes a torch.profiler table.

``--fidelity-gguf FILE`` instead runs `stream_widgets.faithfulness.fidelity` with the trained default model
(SmolLM2-135M-Instruct from its GGUF file, dequantised, fp32) on the GPU, on the bundled trace and
lengths that `benchmarks/fidelity.py` uses on the CPU, for comparison with the CPU figures.

Usage (on the GPU machine)::

    python benchmarks/gpu_trace.py --tokenizer DIR --out DIR [--tokens 32768 65536 131072]
    python benchmarks/gpu_trace.py --fidelity-gguf FILE --fidelity-tokens 4096 8192 --update JSON --out DIR

Prints a table and writes ``gpu_trace.json`` under ``--out``. ``--table-from JSON`` re-prints a saved run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from stream_configs import add_config_argument, named  # benchmarks/stream_configs.py

from stream_widgets import StreamConfig, trace
from stream_widgets.estimator import estimate_mask
from stream_widgets.tokens import tokenize

LENGTHS = [32_768, 65_536, 131_072]
WARMUP_TOKENS = 4096
GiB = 2**30

QWEN2_1_5B = dict(
    num_hidden_layers=28,
    hidden_size=1536,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=8960,
    vocab_size=151936,
    rope_theta=1_000_000.0,
    max_position_embeddings=131072,
    tie_word_embeddings=True,
)


def bundled_text(tokenizer, tokens: int) -> str:
    """The bundled chains of thought, concatenated (repeated if needed), cut after `tokens` tokens."""
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    cots = [load_bundled_trace(name).full_cot for name in list_bundled_traces()]
    text, counted, i = "", 0, 0
    while True:
        piece = cots[i % len(cots)] + "\n\n"
        text, counted, i = text + piece, counted + len(tokenizer(piece)["input_ids"]), i + 1
        if counted < tokens:  # piecewise counts are close to the whole text's; check it only when near
            continue
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) >= tokens:
            return text[: offsets[tokens - 1][1]]


def random_qwen2(seed: int = 0):
    """A Qwen2-1.5B-shaped model with random weights, bf16, built directly on the GPU."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(seed)
    config = Qwen2Config(**QWEN2_1_5B)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.config._name_or_path = "random Qwen2-1.5B config"
    return model.eval()


def _measure(fn) -> tuple[float, int]:
    """(wall seconds, peak allocated bytes) of one call, synchronised on both sides."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated()
    del result
    return seconds, peak


def sdpa_forward(model, input_ids: torch.Tensor):
    with torch.inference_mode():
        return (
            model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[0, -1].float().cpu()
        )


def run_case(model, tokenizer, tokens: int, repeats: int, sentences: bool = False, config=None) -> dict:
    text = bundled_text(tokenizer, tokens)
    input_ids = tokenize(tokenizer, text).input_ids.cuda()
    row: dict = {"tokens": int(input_ids.shape[1]), "weights_bytes": torch.cuda.memory_allocated()}
    runs = [_measure(lambda ids=input_ids: sdpa_forward(model, ids)) for _ in range(repeats)]
    row["sdpa_seconds"] = [s for s, _ in runs]
    row["sdpa_peak_bytes"] = max(p for _, p in runs)
    input_ids = None  # the trace tokenises the text itself
    runs, result = [], None
    for _ in range(repeats):
        result = None
        torch.cuda.empty_cache()

        def call():
            nonlocal result
            result = trace(
                model, tokenizer, text, config, mode="observe", sentences=sentences, progress=False
            )

        runs.append(_measure(call))
    row["observe_seconds"] = [s for s, _ in runs]
    row["observe_peak_bytes"] = max(p for _, p in runs)
    row["sparsity"] = result.sparsity().mean().item()
    row["retained_mass"] = result.retained_mass.mean().item()
    row["retained_mass_p05"] = torch.quantile(result.retained_mass.flatten()[::97].double(), 0.05).item()
    row["trace_seq_len"] = result.seq_len
    row["num_sentences"] = len(result.sentences)
    return row


@torch.inference_mode()  # q and k are captured inside the trace's inference mode
def profile_layer(model, tokenizer, tokens: int, out: Path, config) -> dict:
    """Time the pieces of one layer's Stream attention call (layer 0's q/k at `tokens`, random v)."""
    from types import SimpleNamespace

    from stream_widgets.attention import AttentionCall
    from stream_widgets.sparse_attention import dense_attention, masked_chunks
    from stream_widgets.tracer import Recorder

    captured, estimator_seconds = {}, []

    def timed_mask(q, k, config):
        if not captured:
            captured["q"], captured["k"] = q.clone(), k.clone()
        torch.cuda.synchronize()
        start = time.perf_counter()
        mask = estimate_mask(q, k, config)
        torch.cuda.synchronize()
        estimator_seconds.append(time.perf_counter() - start)
        return mask

    text = bundled_text(tokenizer, tokens)
    full, _ = _measure(
        lambda: trace(model, tokenizer, text, config, sentences=False, mask_fn=timed_mask, progress=False)
    )
    q, k = captured["q"], captured["k"]
    v = torch.randn_like(k)
    scale = q.shape[-1] ** -0.5
    call = AttentionCall(SimpleNamespace(layer_idx=0, training=False), 0, q, k, v, scale, None)

    def attend():
        return Recorder(config, "observe", estimate_mask)(call)

    def chunks_only():
        mask = estimate_mask(q, k, config)
        for chunk in masked_chunks(q, k, mask, scale):
            chunk.logits.exp_()
        return mask

    def fused_only():
        from stream_widgets.kernels.kept_sums import kept_sums

        mask = estimate_mask(q, k, config)
        return kept_sums(q, k, lse, mask, scale)

    def best(fn, n=3):
        fn()
        return min(_measure(fn)[0] for _ in range(n))

    lse = dense_attention(q, k, v, scale)[1]
    pieces = {
        "tokens": int(q.shape[2]),
        "full_trace_seconds_synced_estimator": full,
        "estimator_seconds_all_layers": sum(estimator_seconds),
        "layer_attend_seconds": best(attend),
        "layer_estimate_mask_seconds": best(lambda: estimate_mask(q, k, config)),
        "layer_dense_attention_seconds": best(lambda: dense_attention(q, k, v, scale)),
        # what a plain SDPA forward's attention runs (transformers passes enable_gqa without a mask)
        "layer_plain_sdpa_seconds": best(
            lambda: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=scale, enable_gqa=True
            )
        ),
        "layer_estimate_plus_masked_chunks_seconds": best(chunks_only),
        "layer_estimate_plus_kept_sums_seconds": best(fused_only),
        "query_blocks": -(-q.shape[2] // config.q_block),
    }
    ids = tokenize(tokenizer, text).input_ids.cuda()
    pieces["whole_sdpa_forward"] = profile_trace(lambda: sdpa_forward(model, ids))
    pieces["whole_trace"] = profile_trace(
        lambda: trace(model, tokenizer, text, config, sentences=False, progress=False)
    )
    host_profile(lambda: trace(model, tokenizer, text, config, sentences=False, progress=False), out)
    (out / "gpu_trace_profile.json").write_text(json.dumps(pieces, indent=2))
    for key, value in pieces.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        attend()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
    (out / "gpu_trace_profile.txt").write_text(table)
    print(table)
    return pieces


def host_profile(fn, out: Path) -> None:
    """cProfile of one call (the host's side: where Python waits or works), top 40 by cumulative time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    torch.cuda.synchronize()
    profiler.enable()
    fn()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    (out / "gpu_trace_host_profile.txt").write_text(text.getvalue())


def profile_trace(fn) -> dict:
    """GPU kernel time of one whole trace against its wall time (the difference: the GPU waiting for the
    host), and the kernels that take the most of it."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels = sorted(
        (
            {"kernel": e.key[:100], "calls": e.count, "seconds": e.self_device_time_total / 1e6}
            for e in events
        ),
        key=lambda row: -row["seconds"],
    )
    return {
        "wall_seconds_profiled": wall,
        "gpu_kernel_seconds": sum(row["seconds"] for row in kernels),
        "top_kernels": kernels[:12],
    }


def run_fidelity(gguf: Path, token_counts: list[int]) -> list[dict]:
    """`fidelity` of the default model on the GPU, same trace/config selection as benchmarks/fidelity.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fidelity import truncate  # benchmarks/fidelity.py

    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.faithfulness import fidelity
    from stream_widgets.models import load_model

    start = time.perf_counter()
    model, tokenizer = load_model(gguf, dtype=torch.float32)
    load_seconds = time.perf_counter() - start
    model = model.cuda()
    bundled = [load_bundled_trace(name) for name in list_bundled_traces()]
    longest = max((b for b in bundled if b.is_math), key=lambda b: len(b.full_cot))
    rows = []
    for tokens in token_counts:
        text = truncate(tokenizer, longest.full_cot, tokens)
        fidelity(model, tokenizer, text[:2000], StreamConfig())  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        report = fidelity(model, tokenizer, text, StreamConfig())
        torch.cuda.synchronize()
        row = {"trace": longest.name, "config": "default", "mask": "estimator", **report.to_dict()}
        row["seconds"] = time.perf_counter() - start
        row["load_seconds"] = load_seconds
        rows.append(row)
        print(f"{longest.name} {tokens}: {report}  ({row['seconds']:.1f} s)", flush=True)
    return rows


def machine() -> dict:
    import transformers
    import triton

    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "gpu_memory_gib": round(props.total_memory / GiB, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def print_table(result: dict) -> None:
    print(
        f"{'T':>8} {'SDPA s':>8} {'SDPA peak GiB':>14} {'observe s':>10} {'observe peak GiB':>17} {'sparsity':>9} {'mass':>6}"
    )
    for r in result.get("cases", []):
        print(
            f"{r['tokens']:>8,} {statistics.median(r['sdpa_seconds']):>8.2f} {r['sdpa_peak_bytes'] / GiB:>14.2f} "
            f"{statistics.median(r['observe_seconds']):>10.2f} {r['observe_peak_bytes'] / GiB:>17.2f} "
            f"{r['sparsity']:>9.1%} {r['retained_mass']:>6.3f}"
        )
    for r in result.get("fidelity", []):
        print(
            f"fidelity {r['num_tokens']} tokens: sparsity {r['sparsity']:.1%} top-1 {r['top1_agreement']:.3f} "
            f"mean KL {r['mean_kl']:.4f} p95 KL {r['p95_kl']:.4f} final top-1 {r['final_top1_agrees']} "
            f"(KL {r['final_kl']:.4f}) mass {r['retained_mass']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--tokenizer", type=Path, help="folder with the SmolLM2 tokenizer files")
    parser.add_argument("--tokens", type=int, nargs="*", default=LENGTHS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sentences", action="store_true", help="trace with sentence sums")
    parser.add_argument("--profile", type=int, default=0, help="profile one layer at this T (0: skip)")
    parser.add_argument("--fidelity-gguf", type=Path, help="run the default-model fidelity check instead")
    parser.add_argument("--fidelity-tokens", type=int, nargs="*", default=[4096, 8192])
    parser.add_argument("--update", type=Path, help="start from this saved gpu_trace.json")
    parser.add_argument(
        "--table-from", type=Path, help="print the table of a saved gpu_trace.json; runs nothing"
    )
    add_config_argument(parser)
    args = parser.parse_args()
    config = named(args.config)
    if args.table_from:
        print_table(json.loads(args.table_from.read_text()))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    result = json.loads(args.update.read_text()) if args.update else {}
    if args.fidelity_gguf:
        result["fidelity_machine"] = machine()
        result["fidelity"] = run_fidelity(args.fidelity_gguf, args.fidelity_tokens)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, local_files_only=True)
        model = random_qwen2()
        result.update(machine=machine(), model=dict(QWEN2_1_5B, dtype="bfloat16", weights="random"))
        result.update(config=config.to_dict(), sentences=args.sentences, repeats=args.repeats, cases=[])
        text = bundled_text(tokenizer, WARMUP_TOKENS)
        sdpa_forward(model, tokenize(tokenizer, text).input_ids.cuda())
        trace(model, tokenizer, text, config, sentences=False, progress=False)
        for tokens in args.tokens:
            row = run_case(model, tokenizer, tokens, args.repeats, args.sentences, config)
            result["cases"].append(row)
            print(json.dumps(row), flush=True)
            (args.out / "gpu_trace.json").write_text(json.dumps(result, indent=2))
        if args.profile:
            result["profile"] = profile_layer(model, tokenizer, args.profile, args.out, config)
    (args.out / "gpu_trace.json").write_text(json.dumps(result, indent=2))
    print()
    print_table(result)


if __name__ == "__main__":
    main()
