"""The `stream-widgets` command line: one sub-command per task.

Each sub-command is a `_cmd_<name>(args)` function below plus its parser in `_build_parser`; the work
itself lives in the library modules, so the CLI only parses, calls and prints.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-widgets",
        description="Sparse attention interpretability for long chain-of-thought traces.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    del commands  # sub-commands are added here as they land
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stream-widgets` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"stream-widgets: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
