"""The `stream-widgets` command line: one sub-command per task.

Each sub-command is a `cmd_<name>(args)` function in the module of its kind plus its parser in
`parser.build_parser`; the work itself lives in the library modules, so the CLI only parses, checks,
calls and prints. Building the parser imports nothing heavy (no torch): `stream-widgets --help` answers
at once.

* `stream_widgets.cli.arguments` -- help texts, the help formatter, argument types, the source and
  `StreamConfig` flags;
* `stream_widgets.cli.parser` -- every sub-command's options (`build_parser`);
* `stream_widgets.cli.files` -- the text a command reads and the files it writes, checked first;
* `stream_widgets.cli.tracing` -- `demo`, `list`, `trace`, `report`, and how anchors print;
* `stream_widgets.cli.sentences` -- `anchors`, `importance` and `tag`, the commands on a text's sentences;
* `stream_widgets.cli.corpus` -- `corpus`, `corpus-report` and `ruler`, the runs over many inputs.

Inputs and outputs are checked before any work: a text argument that looks like a file name but names
no file, a folder where a file is expected, an output folder that cannot be written, a bad config value,
all end with ``stream-widgets: error: ...`` and exit status 2, not a traceback after the model ran.
"""

from __future__ import annotations

import os
import sys

from stream_widgets.cli.arguments import DEMO_TRACE as DEMO_TRACE  # the demo's bundled trace (tests use it)
from stream_widgets.cli.parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stream-widgets` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        # The reader went away (`stream-widgets tag ... | head`): stop quietly, as `cat` or `grep` do.
        # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe
    except (ValueError, OSError, KeyError) as error:
        # KeyError's str() quotes its message (unknown bundled trace names): print the message itself
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, OSError) and error.filename is not None and error.strerror:
            message = f"{error.filename}: {error.strerror}"
        print(f"stream-widgets: error: {message}", file=sys.stderr)
        return 2
