"""The texts of a corpus run: read from a folder, a JSONL file or the bundled traces, and checked.

`read_inputs(source)` gives one `CorpusInput` per trace to make. A source is

* ``"bundled"``: the bundled Thought Anchors traces (`stream_widgets.data`), each with its labels (the
  GPT-4o function tags and the black-box importance columns) and its problem id as group;
* a folder: every ``.txt``, ``.text``, ``.md`` or ``.cot`` file directly inside it (UTF-8), one trace
  each, named by the file's stem;
* a ``.jsonl`` file: one JSON object per line (blank lines are skipped), in this schema::

      {"id": "p330-r0",                 # required: str (or int); unique in the file
       "text": "<think>...</think>",    # required: non-empty str, prompt + chain of thought
       "group": "p330",                 # optional: str (or int); traces of one problem share it
                                        #   (split-half reliability keeps a group on one side);
                                        #   default: the trace's own id
       "labels": {                      # optional: per-sentence labels
           "chunks": ["First ...", ...],         # optional: the labelled pieces of the text
           "function_tag": ["plan_generation", ...],  # optional: str, [str, ...] (first used) or null
           "counterfactual_importance_kl": [0.1, null, ...],  # any other key: a numeric column
       },
       "meta": {...}}                   # optional, ignored: anything else you keep with the record

  Without ``chunks``, every list in ``labels`` holds one value per default sentence of ``text``
  (`stream_widgets.sentences.split_sentences(text)`). With ``chunks``, one value per chunk; each chunk
  must occur in ``text`` after the previous one (whitespace may differ: the Thought Anchors chunks join
  pieces with one space), and the labels carry over to the traced sentences by character overlap, as
  the bundled labels do (`stream_widgets.data.BundledTrace.labels_for`: a sentence takes the tag of the
  chunk it shares most characters with, and the overlap-weighted mean of each column). A column value
  of null is missing (NaN). Other top-level keys are an error (put them under ``meta``).

A sequence of `CorpusInput` objects or of such records (dicts) is accepted too.

Ids become file names (``traces/<name>.safetensors``): an id made of letters, digits, ``.``, ``_`` and
``-`` (not starting with ``.`` or ``-``, at most 128 characters) is used as it is; any other id is mapped
to a safe name (its unsafe characters replaced by ``_``, plus 8 hex digits of its hash so that two ids
never share a name), and `CorpusInput.mapped` says so. Two ids whose names differ only in case are an
error (they would share a file on case-insensitive file systems).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_widgets.data import SentenceLabels
    from stream_widgets.sentences import Sentence

__all__ = [
    "BUNDLED",
    "TEXT_SUFFIXES",
    "CorpusInput",
    "InputLabels",
    "read_inputs",
    "safe_name",
]

BUNDLED = "bundled"
"""The source keyword for the bundled traces."""
TEXT_SUFFIXES = (".txt", ".text", ".md", ".cot")
"""Files of an input folder that are read as texts."""
_RECORD_KEYS = ("id", "text", "group", "labels", "meta")
_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_TAG_KEY = "function_tag"
_CHUNKS_KEY = "chunks"


def safe_name(id: str) -> str:
    """The file name (without suffix) of a trace id: the id itself when safe, else a mapped name."""
    if _SAFE.fullmatch(id):
        return id
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", id).strip("._-")[:100] or "input"
    return f"{base}-{hashlib.sha256(id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


@dataclass(frozen=True)
class InputLabels:
    """Per-chunk labels of one input: each chunk's character span in the text, its tag, its columns.

    Attributes:
        text: The input's whole text (the spans index it; a trace cut to ``max_tokens`` is a prefix).
        spans: ``[C]`` half-open character spans of the labelled chunks in `text`.
        function_tags: ``[C]`` tag per chunk (``"unknown"`` where none was given), or None when the input
            gives no tags (the shipped tagger tags the trace then).
        columns: Column name -> ``[C]`` floats (NaN where missing).
    """

    text: str
    spans: tuple[tuple[int, int], ...]
    function_tags: tuple[str, ...] | None = None
    columns: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "spans": [list(span) for span in self.spans],
            "function_tag": None if self.function_tags is None else list(self.function_tags),
            "columns": {
                name: [None if math.isnan(v) else v for v in values] for name, values in self.columns.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> InputLabels:
        tags = data.get("function_tag")
        return cls(
            text=str(data["text"]),
            spans=tuple((int(a), int(b)) for a, b in data["spans"]),
            function_tags=None if tags is None else tuple(str(t) for t in tags),
            columns={
                str(name): tuple(math.nan if v is None else float(v) for v in values)
                for name, values in data.get("columns", {}).items()
            },
        )

    def carry_over(self, sentences: Sequence[Sentence]) -> SentenceLabels:
        """The labels of `sentences` (spans into `text` or a prefix of it), by character overlap.

        The rule of `stream_widgets.data.BundledTrace.labels_for`, which does the work: a sentence takes
        the tag of the chunk it shares most characters with (``"unknown"`` if none) and, per column, the
        overlap-weighted mean over the chunks where the column is defined.
        """
        from stream_widgets.data import BundledTrace

        tags = self.function_tags or ("unknown",) * len(self.spans)
        labelled = BundledTrace(
            name="corpus input",
            model="",
            problem_id="",
            is_math=False,  # chunks located verbatim, in order: their spans are exactly `spans`
            full_cot=self.text,
            chunks=tuple(self.text[a:b] for a, b in self.spans),
            function_tags=tuple((tag,) for tag in tags),
            importance=dict(self.columns),
        )
        return labelled.labels_for(sentences)


@dataclass(frozen=True)
class CorpusInput:
    """One text to trace.

    Attributes:
        id: The trace's id (unique in the corpus).
        text: Prompt + chain of thought.
        group: Problem or group id: traces of one group stay on one side of a split-half split. None:
            the trace's own id.
        labels: Per-chunk labels, or None.
        origin: Where it came from (file and line), for messages.
    """

    id: str
    text: str
    group: str | None = None
    labels: InputLabels | None = None
    origin: str = ""

    @property
    def name(self) -> str:
        """The file name (no suffix) of its trace: `safe_name(id)`."""
        return safe_name(self.id)

    @property
    def mapped(self) -> bool:
        """True when the id is not a safe file name and was mapped to `name`."""
        return self.name != self.id

    @property
    def group_id(self) -> str:
        return self.id if self.group is None else self.group


# ----------------------------------------------------------------- reading
def read_inputs(source, *, limit: int | None = None) -> list[CorpusInput]:
    """The inputs of a corpus run, checked (see the module docstring for the sources and the schema).

    Args:
        source: ``"bundled"``, a folder of text files, a ``.jsonl`` file, or a sequence of `CorpusInput`
            objects or JSONL-style records (dicts).
        limit: Only the first `limit` inputs (>= 1), or all if None.

    Returns:
        The inputs, in order (folder: sorted by file name; bundled: sorted by name).

    Raises:
        ValueError: For a source that does not exist or holds no input, a record that breaks the schema
            (the message names the file, the line and the field), duplicate ids, or ids whose file names
            collide.
        TypeError: For a source of another type.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if str(source) == BUNDLED and not path.exists():
            inputs = _bundled(limit)
        elif path.is_dir():
            inputs = _folder(path)
        elif path.is_file():
            if path.suffix.lower() != ".jsonl":
                raise ValueError(
                    f"{path} is a file but not a .jsonl file: give a folder of text files, a .jsonl file "
                    f"(one record per line) or {BUNDLED!r} for the bundled traces"
                )
            inputs = _jsonl(path)
        else:
            raise ValueError(
                f"no such folder or file: {str(source)!r}; give a folder of text files, a .jsonl file or "
                f"{BUNDLED!r} for the bundled traces"
            )
    elif isinstance(source, Iterable) and not isinstance(source, bytes | Mapping):
        inputs = [
            item if isinstance(item, CorpusInput) else _record(item, f"input {number}")
            for number, item in enumerate(source, 1)
        ]
        bad = [type(item).__name__ for item in inputs if not isinstance(item, CorpusInput)]
        if bad:
            raise TypeError(f"inputs must be CorpusInput objects or dicts, got {sorted(set(bad))}")
    else:
        raise TypeError(
            f"inputs must be a folder, a .jsonl file, {BUNDLED!r} or a sequence of records, got "
            f"{type(source).__name__}"
        )
    inputs = inputs[:limit] if limit is not None else inputs
    if not inputs:
        raise ValueError(f"{source!s:.200} holds no inputs")
    _check_ids(inputs)
    return inputs


def _bundled(limit: int | None) -> list[CorpusInput]:
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    inputs = []
    for name in list_bundled_traces()[:limit]:
        bundled = load_bundled_trace(name)
        labels = InputLabels(
            text=bundled.full_cot,
            spans=bundled.chunk_spans,
            function_tags=tuple(bundled.labels),
            columns={k: tuple(v) for k, v in bundled.importance.items() if not all(map(math.isnan, v))},
        )
        inputs.append(
            CorpusInput(
                id=name.replace("/", "__"),
                text=bundled.full_cot,
                group=bundled.problem_id,
                labels=labels,
                origin=f"bundled trace {name}",
            )
        )
    return inputs


def _folder(path: Path) -> list[CorpusInput]:
    files = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in TEXT_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"the folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)}); give a folder of texts, "
            "a .jsonl file or 'bundled'"
        )
    inputs, stems = [], {}
    for file in files:
        if file.stem in stems:
            raise ValueError(
                f"{stems[file.stem].name} and {file.name} in {path} would both be the trace {file.stem!r}: "
                "rename one"
            )
        stems[file.stem] = file
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{file} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}): convert "
                "it, e.g. with `iconv -t utf-8`"
            ) from None
        if not text.strip():
            raise ValueError(f"{file} is empty: remove it from the folder or give it a text")
        inputs.append(CorpusInput(id=file.stem, text=text, origin=str(file)))
    return inputs


def _jsonl(path: Path) -> list[CorpusInput]:
    inputs = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{where} is not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where} is not valid JSON ({error.msg} at column {error.colno})") from None
            inputs.append(_record(record, where))
    if not inputs:
        raise ValueError(f"{path} holds no records: write one JSON object per line")
    return inputs


def _identifier(value, where: str, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{where}: {key!r} must be a string (or an integer), got {type(value).__name__}")
    value = str(value)
    if not value:
        raise ValueError(f"{where}: {key!r} is empty")
    return value


def _record(record, where: str) -> CorpusInput:
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(_RECORD_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {unknown}; a record has {list(_RECORD_KEYS)} (put other fields under 'meta')"
        )
    for key in ("id", "text"):
        if key not in record:
            raise ValueError(f"{where}: the record has no {key!r}")
    id = _identifier(record["id"], where, "id")
    where = f"{where} (id {id!r})"
    text = record["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: 'text' must be a non-empty string")
    group = None if record.get("group") is None else _identifier(record["group"], where, "group")
    labels = None if record.get("labels") is None else _labels(record["labels"], text, where)
    return CorpusInput(id=id, text=text, group=group, labels=labels, origin=where)


def _labels(labels, text: str, where: str) -> InputLabels | None:
    from stream_widgets.sentences import split_sentences

    if not isinstance(labels, Mapping):
        raise ValueError(f"{where}: 'labels' must be an object of lists, got {type(labels).__name__}")
    if not labels:
        return None
    if _CHUNKS_KEY in labels:
        chunks = labels[_CHUNKS_KEY]
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            raise ValueError(f"{where}: labels.chunks must be a list of strings")
        spans = _locate(text, chunks, where)
        unit = f"{len(spans)} chunks (labels.chunks)"
    else:
        spans = tuple((s.char_start, s.char_end) for s in split_sentences(text))
        unit = (
            f"{len(spans)} default sentences (stream_widgets.sentences.split_sentences); give one value "
            "per sentence, or the labelled pieces as labels.chunks"
        )
    tags, columns = None, {}
    for key, values in labels.items():
        if key == _CHUNKS_KEY:
            continue
        if not isinstance(values, list):
            raise ValueError(f"{where}: labels.{key} must be a list, got {type(values).__name__}")
        if len(values) != len(spans):
            raise ValueError(f"{where}: labels.{key} has {len(values)} values but the text has {unit}")
        if key == _TAG_KEY:
            tags = tuple(_tag(value, where, i) for i, value in enumerate(values))
        else:
            columns[key] = tuple(_number(value, where, key, i) for i, value in enumerate(values))
    if tags is None and not columns:
        return None
    return InputLabels(text=text, spans=spans, function_tags=tags, columns=columns)


def _tag(value, where: str, i: int) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return value[0] if value else "unknown"
    raise ValueError(
        f"{where}: labels.function_tag[{i}] must be a tag (string), a list of tags or null, got {value!r:.60}"
    )


def _number(value, where: str, key: str, i: int) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: labels.{key}[{i}] must be a number or null, got {value!r:.60}")
    return float(value)


def _locate(text: str, chunks: Sequence[str], where: str) -> tuple[tuple[int, int], ...]:
    """The span of every chunk in `text`, in order, whitespace runs matching any whitespace."""
    spans, position = [], 0
    for i, chunk in enumerate(chunks):
        words = chunk.split()
        if not words:
            raise ValueError(f"{where}: labels.chunks[{i}] is empty")
        found = re.compile(r"\s+".join(map(re.escape, words))).search(text, position)
        if found is None:
            raise ValueError(
                f"{where}: labels.chunks[{i}] ({chunk[:50]!r}) does not occur in the text after character "
                f"{position}: chunks must be pieces of the text, in order (whitespace may differ)"
            )
        spans.append((found.start(), found.end()))
        position = found.end()
    return tuple(spans)


def _check_ids(inputs: Sequence[CorpusInput]) -> None:
    seen: dict[str, CorpusInput] = {}
    names: dict[str, CorpusInput] = {}
    for item in inputs:
        if item.id in seen:
            raise ValueError(f"the id {item.id!r} is used twice ({seen[item.id].origin}; {item.origin})")
        seen[item.id] = item
        folded = item.name.casefold()
        if folded in names:
            other = names[folded]
            raise ValueError(
                f"the ids {other.id!r} and {item.id!r} would share the trace file {item.name}.safetensors "
                "(names that differ only in case collide on some file systems): rename one"
            )
        names[folded] = item
