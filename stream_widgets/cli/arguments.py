"""What the sub-commands' parsers are made of: help texts, the help formatter, argument types, the source
and `StreamConfig` flags; and `stream_config`, the `StreamConfig` those flags give.

Imports nothing heavy (no torch): the parser is built from these at every start.
"""

from __future__ import annotations

import argparse
import math

from stream_widgets.config import MAX_BLOCK, MAX_TOKENS, MAX_TOP_K, StreamConfig

__all__ = [
    "DEMO_TRACE",
    "MODEL_HELP",
    "SOURCE_HELP",
    "HelpFormatter",
    "LibraryDefault",
    "add_config_flags",
    "add_source",
    "int_in",
    "probability",
    "stream_config",
]

MODEL_HELP = (
    "qwen2.5-coder-0.5b (opt-in packaged model, 32k context), a local model folder, a .gguf file or a "
    "locally cached hub id (default: the embedded SmolLM2-135M-Instruct)"
)
SOURCE_HELP = (
    "a UTF-8 text file, - for standard input, or a bundled trace name (`stream-widgets list`); text "
    "itself goes in --text"
)
DEMO_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"
_DEFAULTS = StreamConfig()


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to every option that has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
            or isinstance(action, argparse._VersionAction)
        ):
            return text
        return text + " (default: %(default)s)"


class LibraryDefault:
    """A default that lives in a library module, looked up only when it is needed (help or use), so
    building the parser imports nothing heavy."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __str__(self) -> str:
        import importlib

        return str(getattr(importlib.import_module(self.module), self.name))


def int_in(low: int, high: int | None = None):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high:,}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return number

    return parse


def probability(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number < 1.0):
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), got {value}")
    return number


def add_source(parser: argparse.ArgumentParser, help: str = SOURCE_HELP) -> None:
    parser.add_argument("source", nargs="?", default=None, metavar="FILE", help=help)
    parser.add_argument("--text", default=None, help="the text itself, instead of FILE")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The `StreamConfig` flags of `trace` and `corpus`."""
    knobs = {
        "q_block": ("queries per query block", 1, MAX_BLOCK),
        "k_block": ("keys per key block", 1, MAX_BLOCK),
        "top_k": ("key blocks the search keeps per query block", 1, MAX_TOP_K),
        "sink": ("leading tokens always kept", 0, MAX_TOKENS),
        "window": ("tokens before each query block always kept", 0, MAX_TOKENS),
    }
    for knob, (what, low, high) in knobs.items():
        parser.add_argument(
            f"--{knob.replace('_', '-')}",
            type=int,
            default=getattr(_DEFAULTS, knob),
            help=f"StreamConfig.{knob}: {what}, {low} to {high:,}",
        )
    parser.add_argument(
        "--search-width",
        type=int,
        default=None,
        help="StreamConfig.search_width: ranges the search keeps between rounds, >= top_k "
        "(default: top_k, the paper's search)",
    )
    parser.add_argument(
        "--wide-rounds",
        type=int,
        default=None,
        help="StreamConfig.wide_rounds: with --search-width, the rounds that keep that many ranges before "
        "the search narrows to top_k; 0 = a wide start (default: every round)",
    )
    parser.add_argument(
        "--exhaustive",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULTS.exhaustive,
        help="StreamConfig.exhaustive: on texts short enough that scoring every candidate key block is no "
        "slower than the search (up to about 2.7k tokens at the default sizes), score them all and keep the "
        "exact top_k (default: always search)",
    )
    parser.add_argument(
        "--score-rule",
        choices=("representative", "bound"),
        default=_DEFAULTS.score_rule,
        help="StreamConfig.score_rule: how the search scores a range of key blocks: representative (q.k "
        "with the range's centre block, the paper's rule) or bound (an upper bound over the whole range "
        "from per-dimension key maxima and minima)",
    )


def stream_config(args) -> StreamConfig:
    knobs = (
        "q_block",
        "k_block",
        "top_k",
        "sink",
        "window",
        "search_width",
        "wide_rounds",
        "exhaustive",
        "score_rule",
    )
    return StreamConfig(**{k: getattr(args, k) for k in knobs})
