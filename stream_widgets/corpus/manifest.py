"""A corpus folder on disk: ``corpus.json``, its entries, and the content hash that decides a re-trace.

A corpus folder (written by `stream_widgets.corpus.runner.run_corpus`) holds:

* ``traces/<name>.safetensors`` (`TRACES`): one `Trace` per input (`Trace.save`: atomic, checksummed);
* ``labels/<name>.json`` (`LABELS`): the input's labels (`inputs.InputLabels`), for inputs that carry them;
* ``corpus.json`` (`MANIFEST`): the settings, and per input its id, group, file, content hash, status
  (``"done"``, ``"failed"`` or ``"pending"``), token and sentence counts, mean sparsity and retained
  mass, and the seconds its trace took; failures with their error; a summary. Rewritten atomically
  (`stream_widgets.storage.write_file`) by `CorpusRun.save`, so a kill leaves it consistent.

`CorpusRun.load_manifest` reads it back (checking its `FORMAT` and `VERSION`); `CorpusRun.load` and
`CorpusRun.labels` read an entry's trace and labels. `content_hash` is the SHA-256 of a text and the
settings that make its trace: an input whose hash changed is traced again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "FORMAT",
    "LABELS",
    "MANIFEST",
    "TRACES",
    "VERSION",
    "CorpusRun",
    "TraceEntry",
    "content_hash",
]

MANIFEST = "corpus.json"
TRACES = "traces"
LABELS = "labels"
FORMAT = "stream-widgets/corpus"
VERSION = 1
STATUSES = ("done", "failed", "pending")


@dataclass(frozen=True)
class TraceEntry:
    """One input of a corpus run, as ``corpus.json`` lists it.

    Attributes:
        id: The input's id.
        file: Its trace file, relative to the run's folder (``traces/<name>.safetensors``).
        group: Its group (problem) id.
        hash: Content hash of its text and the run's settings (what decides a re-trace).
        status: ``"done"``, ``"failed"`` or ``"pending"``.
        labels: Its labels file relative to the run's folder, or None.
        tokens, sentences: Counts of the trace (None until done).
        sparsity: Mean sparsity over layers and heads.
        retained_mass: Mean retained attention mass over layers, heads and queries.
        seconds: Time the trace took (cut, trace, save).
        device: Where it was traced.
        error: ``"<ExceptionType>: <message>"`` of a failed trace.
    """

    id: str
    file: str
    group: str
    hash: str
    status: str = "pending"
    labels: str | None = None
    tokens: int | None = None
    sentences: int | None = None
    sparsity: float | None = None
    retained_mass: float | None = None
    seconds: float | None = None
    device: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> TraceEntry:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class CorpusRun:
    """A corpus folder: its settings and its entries (read back with `CorpusRun.load`).

    Attributes:
        out: The folder.
        settings: What the traces were made with (model, dtype, config, mode, max_tokens).
        entries: One `TraceEntry` per input, in input order.
    """

    out: Path
    settings: dict
    entries: tuple[TraceEntry, ...] = field(default=())

    @property
    def done(self) -> list[TraceEntry]:
        return [e for e in self.entries if e.status == "done"]

    @property
    def failed(self) -> list[TraceEntry]:
        return [e for e in self.entries if e.status == "failed"]

    @property
    def pending(self) -> list[TraceEntry]:
        return [e for e in self.entries if e.status == "pending"]

    def path(self, entry: TraceEntry | str) -> Path:
        """The trace file of an entry (or id)."""
        return self.out / self.entry(entry).file

    def entry(self, entry: TraceEntry | str) -> TraceEntry:
        if isinstance(entry, TraceEntry):
            return entry
        for candidate in self.entries:
            if candidate.id == entry:
                return candidate
        raise KeyError(f"no trace {entry!r} in {self.out / MANIFEST}")

    def load(self, entry: TraceEntry | str):
        """The `Trace` of an entry (or id); `Trace.load` checks it."""
        from stream_widgets.traces import Trace

        return Trace.load(self.path(entry))

    def labels(self, entry: TraceEntry | str):
        """The `InputLabels` of an entry (or id), or None when its input had none."""
        from stream_widgets.corpus.inputs import InputLabels

        entry = self.entry(entry)
        if entry.labels is None:
            return None
        path = self.out / entry.labels
        try:
            return InputLabels.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"cannot read the labels {path} ({error}): run the corpus command again"
            ) from None

    def to_dict(self) -> dict:
        done = self.done
        seconds = sum(e.seconds or 0.0 for e in done)
        return {
            "format": FORMAT,
            "version": VERSION,
            "settings": self.settings,
            "summary": {
                "traces": len(self.entries),
                "done": len(done),
                "failed": len(self.failed),
                "pending": len(self.pending),
                "tokens": sum(e.tokens or 0 for e in done),
                "seconds": seconds,
                "traces_per_minute": 60.0 * len(done) / seconds if seconds > 0 else None,
            },
            "traces": [asdict(e) for e in self.entries],
            "failures": [{"id": e.id, "error": e.error} for e in self.failed],
        }

    @classmethod
    def load_manifest(cls, out: str | os.PathLike) -> CorpusRun:
        """Read ``out/corpus.json``.

        Raises:
            FileNotFoundError: If there is none.
            ValueError: If it is not a corpus manifest this version reads.
        """
        out = Path(out)
        path = out / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"no {MANIFEST} in {out}: run `stream-widgets corpus INPUTS --out {out}` first"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"its format is {data.get('format')!r}, not {FORMAT!r}")
            if int(data.get("version", 0)) > VERSION:
                raise ValueError(f"it was written by a newer stream-widgets (version {data['version']})")
            entries = tuple(TraceEntry.from_dict(e) for e in data["traces"])
            settings = dict(data["settings"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{path} is not a corpus manifest this version can read ({error}); remove it to start over"
            ) from None
        return cls(out, settings, entries)

    def save(self) -> Path:
        from stream_widgets.storage import json_safe, write_file

        text = json.dumps(json_safe(self.to_dict()), indent=1, ensure_ascii=False, allow_nan=False)
        return write_file(self.out / MANIFEST, text + "\n")


def content_hash(text: str, settings: dict) -> str:
    """``sha256:<hex>`` of a text and the settings that make its trace."""
    keys = ("model", "dtype", "config", "mode", "max_tokens", "trace_format")
    document = json.dumps({"text": text, **{k: settings[k] for k in keys}}, sort_keys=True)
    return "sha256:" + hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()
