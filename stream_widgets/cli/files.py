"""The text a command works on and the files it writes, checked before any work.

`read_input` takes the text from FILE, standard input (-), a bundled trace or --text, and refuses what
is meant as a file name but names none; `output_file` and `output_folder` refuse an output that cannot
be written, before the model loads.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

__all__ = ["Input", "output_file", "output_folder", "read_input"]

# Suffixes of files people pass as text; an argument ending in one of them is a file name, never text.
_TEXT_SUFFIXES = (".txt", ".text", ".md", ".json", ".jsonl", ".csv", ".tsv", ".log", ".safetensors", ".cot")


# ----------------------------------------------------------------- inputs
def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):  # a name too long, or with a NUL byte: not a file
        return False


def _looks_like_path(argument: str) -> bool:
    """True for what is meant as a file name rather than text: a text-file suffix (``notes_typo.txt``,
    ``my notes.md``), one word with a path separator or a dot (``drafts/cot``, ``run.2``), or a
    single line that starts like a path (``~/My Documents/cot``). Text with spaces and a ``/`` in it
    (``n(n+1)/2``, ``</think>``) is text."""
    separators = "/" + os.sep + (os.altsep or "")
    if argument.lower().endswith(_TEXT_SUFFIXES):
        return True
    if not any(c.isspace() for c in argument):
        return "." in argument or any(c in argument for c in separators)
    return "\n" not in argument and argument.startswith(("/", "~/", "./", "../"))


def _check_utf8(text: str, what: str) -> str:
    """`text` if it encodes as UTF-8; else a `ValueError` saying where it is not (argv is decoded with
    surrogate escapes, so bytes that are not UTF-8 arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        char = ord(text[error.start])
        found = (
            f"the byte 0x{char - 0xDC00:02x}, which is not UTF-8,"
            if 0xDC80 <= char <= 0xDCFF
            else f"a lone surrogate U+{char:04X}"
        )
        raise ValueError(
            f"{what} holds {found} at character {error.start}: pass UTF-8 text (in a file, through "
            "standard input with -, or with --text)"
        ) from None
    return text


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): convert it, "
            "e.g. with `iconv -t utf-8`"
        ) from None


def _bundled_name(argument: str) -> str | None:
    """The bundled trace `argument` names (in full or by a unique ending), or None.

    Raises:
        ValueError: If it names several bundled traces.
    """
    from stream_widgets.data import list_bundled_traces

    names = list_bundled_traces()
    if argument in names:
        return argument
    matches = [n for n in names if n.endswith("/" + argument.strip("/"))]
    if len(matches) > 1:
        raise ValueError(
            f"{argument!r} names several bundled traces ({', '.join(matches)}): give a full name"
        )
    return matches[0] if matches else None


@dataclasses.dataclass
class Input:
    text: str
    bundled: object | None = None  # the BundledTrace the text came from (its labels carry over)
    trace_file: Path | None = None  # a saved trace (anchors only)


def read_input(args, *, traces: bool = False) -> Input:
    """The text a command works on: from FILE, standard input (-), a bundled trace, or --text.

    Raises:
        ValueError: For both or neither of FILE and --text, a missing file (an argument that looks like a
            file name), a folder, or text that is not UTF-8.
    """
    source, text = args.source, args.text
    if (source is None) == (text is None):
        raise ValueError(
            "give the text as FILE, as - (standard input) or with --text TEXT"
            if source is None
            else "give either FILE or --text, not both"
        )
    if text is not None:
        return Input(_check_utf8(text, "--text"))
    if source == "-":
        return Input(_decode(sys.stdin.buffer.read(), "standard input"))
    if _exists(source):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"{source} is a folder: pass a text file, - for standard input, or --text TEXT")
        if traces and path.suffix == ".safetensors":
            return Input("", trace_file=path)
        try:
            return Input(_decode(path.read_bytes(), str(path)))
        except PermissionError:
            raise ValueError(f"cannot read {source}: permission denied") from None
    name = _bundled_name(source)
    if name is not None:
        from stream_widgets.data import load_bundled_trace

        bundled = load_bundled_trace(name)
        return Input(bundled.full_cot, bundled=bundled)
    _check_utf8(source, "the argument")
    if _looks_like_path(source):
        raise ValueError(
            f"no such file: {source!r} (nor a bundled trace, see `stream-widgets list`); to trace these "
            f"characters as text, pass --text {source!r}"
        )
    return Input(source)


# ----------------------------------------------------------------- outputs, checked before the work
def _writable_ancestor(path: Path, flag: str) -> None:
    """Raise `ValueError` unless the nearest existing folder above `path` accepts new files."""
    from stream_widgets.storage import temp_path

    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, not a folder")
    probe = temp_path(ancestor / "probe")
    try:
        probe.touch(exist_ok=False)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot write in {ancestor} ({error.strerror})") from None
    probe.unlink()


def output_file(value: str, flag: str, example: str) -> Path:
    if not value:
        raise ValueError(f"{flag} is empty: give a file name, e.g. {flag} {example}")
    path = Path(os.path.realpath(value))
    if path.is_dir():
        raise ValueError(f"{flag} {value} is a folder: give a file name, e.g. {flag} {Path(value) / example}")
    _writable_ancestor(path, flag)
    return Path(value)


def output_folder(value: str, flag: str) -> Path:
    if not value:
        raise ValueError(f"{flag} is empty: give a folder, e.g. {flag} out/report")
    path = Path(os.path.realpath(value))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {value} is a file: give a folder")
    _writable_ancestor(path / "report.html", flag)
    return Path(value)
