"""Two checkouts of stream-widgets side by side: the same benchmark cases, alternating, on one machine.

For a change that must not slow anything down, timing "before" and "after" in two separate runs on a
shared machine compares the machine's load more than the code. This runs every case of
`benchmarks/estimator.py` and `benchmarks/tracing.py` (their internal ``--case`` mode, one subprocess per
run) for both trees in turn, `--rounds` times, and reports the median of each and their ratio.

    python benchmarks/paired.py --before /path/to/old/checkout --after . --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ESTIMATOR = [("stream", 8192), ("stream-bound", 8192), ("stream", 32768), ("stream-bound", 32768)]
TRACING = [("sdpa", 4096), ("observe", 4096), ("sdpa", 8192), ("observe", 8192)]


def _run(tree: Path, script: str, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / script), *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"{tree} {script} {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path("."))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "paired.json"
    )
    parser.add_argument(
        "--only", help="run only the cases whose label contains this, e.g. 'tracing' or 'T=4096'"
    )
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    cases = [
        ("estimator.py", ["--case", m, str(t), "--repeats", "1"], f"estimator {m} T={t}")
        for m, t in ESTIMATOR
    ]
    cases += [("tracing.py", ["--case", c, "--tokens", str(t)], f"tracing {c} T={t}") for c, t in TRACING]
    cases = [case for case in cases if args.only is None or args.only in case[2]]
    if not cases:
        raise SystemExit(f"--only {args.only!r} matches no case")
    seconds: dict[str, dict[str, list[float]]] = {label: {"before": [], "after": []} for *_, label in cases}
    for round_index in range(args.rounds):
        for script, case_args, label in cases:
            order = ("before", "after") if round_index % 2 == 0 else ("after", "before")
            for side in order:
                result = _run(trees[side], script, case_args)
                seconds[label][side].append(
                    result.get("seconds", result.get("median_s", result.get("time_s")))
                )
                print(
                    f"round {round_index + 1} {label:<32} {side:<6} {seconds[label][side][-1]:.3f} s",
                    flush=True,
                )
    rows = []
    for label, runs in seconds.items():
        before, after = statistics.median(runs["before"]), statistics.median(runs["after"])
        rows.append(
            {
                "case": label,
                "before_s": before,
                "after_s": after,
                "after_over_before": after / before,
                "runs": runs,
            }
        )
    print("\n| case | before (median s) | after (median s) | after / before |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['before_s']:.3f} | {r['after_s']:.3f} | {r['after_over_before']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "trees": {k: str(v) for k, v in trees.items()},
                "rounds": args.rounds,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
