"""Corpus throughput: the bundled traces through `run_corpus`, then the corpus receiver heads.

Traces every bundled trace (33, whole unless ``--max-tokens``) with one model into a fresh folder
(`stream_widgets.corpus.run_corpus`: one worker per GPU, or one on the CPU), then analyses the folder
(`corpus_report`: receiver heads pooled over the traces with their split-half reliability over the 9
problems, anchors, report). Reports:

* traces per minute and tokens per second over the whole run's wall time (model loading and worker
  start-up included), and over the traces' own seconds (``corpus.json``), with the machine's load
  average sampled during the run (other work on a shared machine slows the traces down);
* the analysis time;
* the split-half reliability of per-head kurtosis (default variant and ``min_later``, 200 splits);
* beside it, the shipped corpus heads of the same model where they exist: Pearson r of the two pooled
  kurtosis arrays and the overlap of their top-20 heads (same texts and config, another machine).

Prints a table and writes JSON (default ``benchmarks/results/corpus_<cpu|gpu>.json``).

    .venv/bin/python benchmarks/corpus.py                                  # SmolLM2 on the CPU
    .venv/bin/python benchmarks/corpus.py --model qwen2.5-coder-0.5b --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


class LoadSampler:
    """Samples the 1-minute load average every `every` seconds while the benchmark runs: on a shared
    machine, other work slows the traces down, and the figures say by how much the machine was busy."""

    def __init__(self, every: float = 30.0) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        values = self.samples or [float("nan")]
        return {
            "mean": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "samples": len(values),
        }


def shipped_comparison(heads) -> dict | None:
    """How the heads found here compare with the heads that ship for the same model, if any."""
    import numpy as np

    from stream_widgets.receivers import corpus_heads

    shipped = corpus_heads(heads.model_id, heads.variant, min_later=heads.min_later)
    if shipped is None or shipped.kurtosis.shape != heads.kurtosis.shape:
        return None
    a, b = heads.kurtosis.ravel(), shipped.kurtosis.ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    top = min(20, a.size)
    return {
        "kurtosis_pearson": float(np.corrcoef(a[ok], b[ok])[0, 1]),
        "top20_shared": len(set(heads.heads(top)) & set(shipped.heads(top))),
        "shipped_reliability": shipped.reliability.mean_r,
        "shipped_tokens": int(sum(shipped.notes.get("tokens", []))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model for load_model (default: the embedded SmolLM2)")
    parser.add_argument(
        "--model-id", default=None, help="record this model id (for a GGUF file or folder of a known model)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda (every visible GPU) or cuda:N")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per GPU)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    parser.add_argument("--max-tokens", type=int, default=None, help="cut every trace to this many tokens")
    parser.add_argument("--limit", type=int, default=None, help="only the first N bundled traces")
    parser.add_argument("--out", default=None, help="corpus folder, new or empty (default: a temp folder)")
    parser.add_argument("--json", default=None, help="results file (default: results/corpus_<cpu|gpu>.json)")
    args = parser.parse_args()

    import torch

    from stream_widgets.corpus import corpus_report, run_corpus
    from stream_widgets.corpus.analysis import load_corpus_heads

    out = Path(args.out or tempfile.mkdtemp(prefix="corpus-bench-"))
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: the benchmark times a fresh run; give a new folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with LoadSampler() as load:
        run = run_corpus(
            "bundled",
            out,
            model=args.model,
            max_tokens=args.max_tokens,
            limit=args.limit,
            dtype=args.dtype,
            device=args.device,
            workers=args.workers,
            threads=args.threads,
        )
    wall = time.perf_counter() - started
    started = time.perf_counter()
    try:
        html = corpus_report(out)
    except ModuleNotFoundError as error:  # a GPU machine without bokeh: the analysis without its report
        print(f"no corpus report ({error}); analysing without it", flush=True)
        from stream_widgets.corpus import analyse_corpus

        analyse_corpus(out)
        html = None
    analysis_seconds = time.perf_counter() - started
    heads = load_corpus_heads(out)
    if args.model_id:  # the traces name the file or folder they were read with
        heads = dataclasses.replace(heads, model_id=args.model_id)
    done = run.done
    tokens = sum(e.tokens for e in done)
    trace_seconds = sum(e.seconds for e in done)
    workers = sorted({e.device for e in done})
    result = {
        "machine": machine(args.device),
        "load_average": load.summary(),
        "model_id": heads.model_id,
        "device": args.device,
        "devices": workers,
        "workers": args.workers or len(workers),
        "dtype": args.dtype,
        "config": run.settings["config"],
        "max_tokens": args.max_tokens,
        "traces": len(run.entries),
        "done": len(done),
        "failed": [{"id": e.id, "error": e.error} for e in run.failed],
        "tokens": tokens,
        "tokens_per_trace": [e.tokens for e in done],
        "wall_seconds": wall,
        "traces_per_minute": 60.0 * len(done) / wall,
        "tokens_per_second": tokens / wall,
        "trace_seconds": trace_seconds,
        "traces_per_minute_tracing": 60.0 * len(done) / trace_seconds,
        "analysis_seconds": analysis_seconds,
        "variant": heads.variant,
        "min_later": heads.min_later,
        "split_half_reliability": heads.reliability.mean_r,
        "reliability_groups": heads.reliability.groups,
        "reliability_splits": len(heads.reliability.r),
        "receiver_heads": [list(h) for h in heads.heads(20)],
        "shipped_heads": shipped_comparison(heads),
        "report": str(html),
    }
    path = (
        Path(args.json) if args.json else RESULTS / f"corpus_{'gpu' if 'cuda' in args.device else 'cpu'}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    shipped = result["shipped_heads"]
    rows = [
        ("model", result["model_id"]),
        ("devices", ", ".join(workers)),
        ("traces (done / all)", f"{len(done)} / {len(run.entries)}"),
        ("tokens", f"{tokens:,}"),
        ("wall time (model load + traces)", f"{wall:.0f} s"),
        (
            "load average during the run (mean, max)",
            f"{load.summary()['mean']:.1f}, {load.summary()['max']:.1f}",
        ),
        ("traces per minute (wall)", f"{result['traces_per_minute']:.2f}"),
        ("tokens per second (wall)", f"{result['tokens_per_second']:.0f}"),
        ("traces per minute (tracing only)", f"{result['traces_per_minute_tracing']:.2f}"),
        ("analysis (heads, anchors, report)", f"{analysis_seconds:.0f} s"),
        (
            f"split-half reliability ({heads.variant}, min_later={heads.min_later})",
            f"{heads.reliability.mean_r:.3f} over {heads.reliability.groups} problems",
        ),
    ]
    if shipped:
        rows += [
            ("kurtosis vs shipped heads (Pearson r)", f"{shipped['kurtosis_pearson']:.4f}"),
            ("top-20 heads shared with shipped", f"{shipped['top20_shared']} / 20"),
        ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
