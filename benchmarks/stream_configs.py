"""Named `StreamConfig` settings the benchmarks sweep and compare, and the ``--config NAME`` option.

The names are the rows of the docs' tables (docs/benchmarks.md); each maps to the `StreamConfig` fields
it changes from the default.
"""

from __future__ import annotations

import argparse

SWEEP = {
    "default (k16, top32)": {},
    "top_k 8": {"top_k": 8},
    "top_k 64": {"top_k": 64},
    "search_width 4 x top_k": {"search_width": 128},
    "top_k 64, search_width 256": {"top_k": 64, "search_width": 256},
    "k_block 8, top_k 64": {"k_block": 8, "top_k": 64},
    "k_block 4, top_k 128": {"k_block": 4, "top_k": 128},
    "bound rule": {"score_rule": "bound"},
    "wide start, search_width 128": {"search_width": 128, "wide_rounds": 0},
    "wide start, search_width 256": {"search_width": 256, "wide_rounds": 0},
    "exhaustive where cheaper": {"exhaustive": True},
}


def named(name: str):
    """The `StreamConfig` of a sweep name; SystemExit naming the choices for an unknown one."""
    from stream_widgets import StreamConfig

    if name not in SWEEP:
        raise SystemExit(f"unknown config {name!r}; choose from {list(SWEEP)}")
    return StreamConfig(**SWEEP[name])


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config NAME``: the estimator settings of the run (default: `StreamConfig()`)."""
    parser.add_argument(
        "--config",
        default="default (k16, top32)",
        help=f"StreamConfig settings by name, one of {list(SWEEP)}",
    )
