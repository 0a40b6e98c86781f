"""RULER needle cases with the default model: dense vs Stream-sparse accuracy, sparsity, needle mass kept.

For every (length, kind) it scores ``--cases`` cases (depths spread over [0.1, 0.9], filler haystack,
default `StreamConfig`), prints the table and writes ``benchmarks/results/ruler.json`` (table, per-case
results, machine, wall time). The route of the first case is found too, written into the JSON and as a
standalone HTML view (``--route-html``, default ``benchmarks/results/ruler_route.html``).

Cost on CPU: two prompt passes per case (about 2x a plain forward pass each), i.e. minutes per case at
4k-8k tokens on two cores; choose ``--lengths`` and ``--cases`` to fit the time you have.

Usage: ``python benchmarks/ruler.py [--lengths 1024 2048 4096 8192] [--cases 1] [--kinds ...]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from stream_configs import add_config_argument, named  # benchmarks/stream_configs.py

from stream_widgets.models import load_model, model_id
from stream_widgets.ruler import KINDS, format_table, make_cases, run_ruler, score_case, summarize

RESULTS = Path(__file__).resolve().parent / "results"


def print_saved(path: Path) -> None:
    """The summary table of a saved run (its config and machine first), from its per-case records."""
    data = json.loads(path.read_text(encoding="utf-8"))
    results = [
        SimpleNamespace(
            case=SimpleNamespace(**{k: c["case"][k] for k in ("length", "kind")}),
            **{
                k: c[k]
                for k in (
                    "dense_correct",
                    "sparse_correct",
                    "agree",
                    "sparsity",
                    "needle_mass_kept",
                    "seconds",
                )
            },
        )
        for c in data["cases"]
    ]
    print(f"\n{path.name}: {data['machine']}, {data.get('dtype', 'float32')}, config {data['config']}")
    print(format_table(summarize(results)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--cases", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "ruler.json"))
    parser.add_argument("--route-html", default=str(RESULTS / "ruler_route.html"), help="'' for none")
    parser.add_argument(
        "--model", default=None, help="packaged model name or model path (default: the embedded SmolLM2)"
    )
    parser.add_argument(
        "--model-id", default=None, help="record this model id (for a GGUF file or folder of a known model)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_config_argument(parser)
    parser.add_argument(
        "--table-from", nargs="+", type=Path, help="print the tables of saved runs; runs nothing"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    if args.table_from:
        for path in args.table_from:
            print_saved(path)
        return
    torch.set_num_threads(args.threads)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch {torch.__version__}"
    if args.device == "cuda":
        machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    config = named(args.config)
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    if args.model_id:
        model.config._name_or_path = args.model_id
    model = model.to(args.device)
    started = time.perf_counter()

    # The route case: a single needle at mid depth at the shortest length.
    case = make_cases("single", 1, min(args.lengths), 0.5, "filler", tokenizer, seed=100)[0]
    routed = score_case(model, tokenizer, case, config, route=True)
    print(routed)
    print(routed.route)
    print("route heads by layer:", routed.route.heads())
    if args.route_html:
        from stream_widgets.views.routes import write_route_html  # Bokeh: only where a view is wanted

        write_route_html(routed.route, args.route_html)

    out = Path(args.out)
    results: list = []

    def save(result=None) -> None:
        """Write everything scored so far (after every case, so a stopped run keeps its cases)."""
        if result is not None:
            results.append(result)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "dtype": args.dtype,
                    "model": model_id(model),
                    "config": config.to_dict(),
                    "cases_per_cell": args.cases,
                    "complete": len(results) == len(args.lengths) * len(args.kinds) * args.cases,
                    "seconds": time.perf_counter() - started,
                    "table": summarize(results),
                    "cases": [r.to_dict() for r in results],
                    "route_case": routed.to_dict(),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        tmp.replace(out)

    for length in args.lengths:
        run_ruler(model, tokenizer, [length], args.kinds, args.cases, config=config, on_result=save)
        print(
            f"\nRULER on {machine}; {args.cases} case(s) per cell, filler haystack, {config}; "
            f"{time.perf_counter() - started:.0f} s"
        )
        print(format_table(summarize(results)), flush=True)
    print(f"results: {out}; route view: {args.route_html or 'not written'}")


if __name__ == "__main__":
    main()
