"""The bundled traces and their loader: two corpora in one layout.

* ``"thought-anchors"`` (the default): real traces from the Thought Anchors visualiser (MIT, see
  `thought_anchors/LICENSE.md`), written by DeepSeek-R1 distills, with GPT-4o function tags and
  black-box importance measured by the models that wrote them.
* ``"own-model"``: traces written by the opt-in Qwen2.5-Coder-0.5B-Instruct with importance computed by
  the same model (`stream_widgets.importance`, `benchmarks/own_model_corpus.py`; see
  `own_model/README.md`), so that the model that reads a trace also wrote it and measured it.

Each trace directory holds `base_solution.json` (the prompt and the full chain of thought, `full_cot`)
and `chunks_labeled.json` (one record per chunk: its text, its GPT-4o function tags and black-box
importance measures). Names are paths relative to `thought_anchors/`, e.g.
`"deepseek-r1-distill-llama-8b/correct_base_solution/problem_1591"`.

The chunks are the sentences of `split_sentences(full_cot, rules="thought-anchors")` (math traces), which
is not the default segmentation. `BundledTrace.labels_for` carries the chunk labels over to any sentences
of `full_cot` (the default ones, or those of a prefix of it) by character overlap:

- a sentence's function tag is that of the chunk it shares the most characters with (ties: the earlier
  chunk);
- each importance score is the mean over the chunks it overlaps, weighted by the number of shared
  characters, over the chunks where the score is defined (NaN only if it is NaN for all of them);
- a sentence that overlaps no chunk gets `"unknown"` and NaN.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_widgets.sentences import Sentence

__all__ = [
    "CORPORA",
    "IMPORTANCE_COLUMNS",
    "OWN_MODEL_DIR",
    "TRACES_DIR",
    "BundledTrace",
    "SentenceLabels",
    "list_bundled_traces",
    "load_bundled_trace",
]

TRACES_DIR = Path(__file__).resolve().parent / "thought_anchors"
"""Root of the bundled Thought Anchors traces (the default corpus)."""
OWN_MODEL_DIR = Path(__file__).resolve().parent / "own_model"
"""Root of the own-model corpus (traces written and measured by the reading model)."""
CORPORA = {"thought-anchors": TRACES_DIR, "own-model": OWN_MODEL_DIR}
"""Corpus name -> root folder; every function here takes ``corpus=`` one of these names."""

IMPORTANCE_COLUMNS = (
    "accuracy",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "forced_importance_accuracy",
    "forced_importance_kl",
    "different_trajectories_fraction",
    "overdeterminedness",
)
"""Per-chunk numeric columns of `chunks_labeled.json`; a column a trace lacks loads as NaN."""


@dataclass(frozen=True)
class SentenceLabels:
    """Bundled labels carried over to a list of sentences (`BundledTrace.labels_for`).

    Attributes:
        function_tags: `[S]` function tag per sentence: the first tag of the chunk with the largest
            character overlap (ties: the earlier chunk); `"unknown"` where no chunk overlaps.
        importance: Column name (`IMPORTANCE_COLUMNS`) -> `[S]` floats: the overlap-weighted mean over
            the overlapping chunks where the column is defined; NaN where none is.
        chunk_index: `[S]` index of the chunk each tag came from (-1 where no chunk overlaps).
    """

    function_tags: tuple[str, ...]
    importance: dict[str, tuple[float, ...]] = field(hash=False)
    chunk_index: tuple[int, ...]


@dataclass(frozen=True)
class BundledTrace:
    """One labelled trace.

    Attributes:
        name: Path relative to `TRACES_DIR`,
            e.g. `"deepseek-r1-distill-qwen-14b/correct_base_solution/problem_330"`.
        model: The model that wrote it (first path part).
        problem_id: Last path part (`"problem_330"`, `"scenario_0"`); traces of one problem share it.
        is_math: True for the math problems (chunked by `split_sentences(..., rules="thought-anchors")`),
            False for scenarios.
        full_cot: Prompt plus `<think>` reasoning, the input of `split_sentences`.
        chunks: `[S]` chunk texts as labelled.
        function_tags: `[S]` tuples of function tags (every bundled chunk has exactly one).
        importance: Column name -> `[S]` floats (NaN where missing).
        corpus: The corpus it belongs to (a key of `CORPORA`).
    """

    name: str
    model: str
    problem_id: str
    is_math: bool
    full_cot: str
    chunks: tuple[str, ...]
    function_tags: tuple[tuple[str, ...], ...]
    importance: dict[str, tuple[float, ...]] = field(hash=False)
    corpus: str = "thought-anchors"

    @property
    def labels(self) -> list[str]:
        """First function tag of every chunk (`"unknown"` when a chunk has none)."""
        return [tags[0] if tags else "unknown" for tags in self.function_tags]

    @cached_property
    def chunk_spans(self) -> tuple[tuple[int, int], ...]:
        """`[S]` half-open character spans of the chunks in `full_cot`.

        Math traces: the spans of `split_sentences(full_cot, rules="thought-anchors")`, which match the
        chunks 1:1 (whitespace aside). Scenario traces (chunked by another splitter): each chunk found
        verbatim in `full_cot`, in order.

        Raises:
            ValueError: If a scenario chunk is not found verbatim after the previous one.
        """
        from stream_widgets.sentences import split_sentences

        if self.is_math:
            sentences = split_sentences(self.full_cot, rules="thought-anchors")
            assert [_squash(s.text) for s in sentences] == [_squash(c) for c in self.chunks], self.name
            return tuple((s.char_start, s.char_end) for s in sentences)
        spans, position = [], 0
        for i, chunk in enumerate(self.chunks):
            start = self.full_cot.find(chunk, position)
            if start < 0:
                raise ValueError(f"{self.name}: chunk {i} is not in full_cot after character {position}")
            position = start + len(chunk)
            spans.append((start, position))
        return tuple(spans)

    def labels_for(self, sentences: Sequence[Sentence]) -> SentenceLabels:
        """Carry the chunk labels over to `sentences` by character overlap (rule in the module docstring).

        Args:
            sentences: Sentences whose spans index `full_cot`: `split_sentences(trace.full_cot)` with any
                rules, those of a prefix of it (`truncate_to_tokens`), or a `Trace`'s `sentences`.

        Returns:
            `SentenceLabels` with one entry per sentence; O(S + chunks) after the first call.

        Raises:
            ValueError: If a sentence's text is not `full_cot[char_start:char_end]`.
        """
        spans = self.chunk_spans
        starts = [start for start, _ in spans]
        tags, index = [], []
        importance: dict[str, list[float]] = {column: [] for column in self.importance}
        for sentence in sentences:
            if self.full_cot[sentence.char_start : sentence.char_end] != sentence.text:
                raise ValueError(
                    f"sentence {sentence.index} is not a span of {self.name}'s full_cot; split "
                    "trace.full_cot (or a prefix of it) to get sentences whose labels can be looked up"
                )
            overlaps = []  # (chunk, shared characters)
            k = max(bisect.bisect_right(starts, sentence.char_start) - 1, 0)
            while k < len(spans) and spans[k][0] < sentence.char_end:
                shared = min(spans[k][1], sentence.char_end) - max(spans[k][0], sentence.char_start)
                if shared > 0:
                    overlaps.append((k, shared))
                k += 1
            if not overlaps:
                tags.append("unknown")
                index.append(-1)
                for values in importance.values():
                    values.append(math.nan)
                continue
            best = max(overlaps, key=lambda pair: pair[1])[0]  # max keeps the first of equal overlaps
            tags.append(self.labels[best])
            index.append(best)
            for column, values in importance.items():
                values.append(_weighted_mean(self.importance[column], overlaps))
        return SentenceLabels(
            function_tags=tuple(tags),
            importance={column: tuple(values) for column, values in importance.items()},
            chunk_index=tuple(index),
        )

    def __repr__(self) -> str:
        return f"BundledTrace({self.name!r}, chunks={len(self.chunks)}, chars={len(self.full_cot)})"


def _squash(text: str) -> str:
    return "".join(text.split())


def _weighted_mean(column: Sequence[float], overlaps: list[tuple[int, int]]) -> float:
    """Mean of `column[k]` weighted by the shared characters, over the chunks where it is not NaN."""
    defined = [(column[k], shared) for k, shared in overlaps if not math.isnan(column[k])]
    if not defined:
        return math.nan
    if len(defined) == 1:
        return defined[0][0]  # exact, so that labels_for of the chunks themselves is the identity
    return sum(value * shared for value, shared in defined) / sum(shared for _, shared in defined)


def _root(corpus: str) -> Path:
    if corpus not in CORPORA:
        raise KeyError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    return CORPORA[corpus]


@cache
def list_bundled_traces(corpus: str = "thought-anchors") -> tuple[str, ...]:
    """Return the names of all traces of a corpus, sorted (for the default: math problems and scenarios).

    Args:
        corpus: ``"thought-anchors"`` (the default) or ``"own-model"`` (`CORPORA`).

    Raises:
        KeyError: For an unknown corpus.
    """
    root = _root(corpus)
    return tuple(sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("chunks_labeled.json")))


def load_bundled_trace(name_or_index: str | int, corpus: str = "thought-anchors") -> BundledTrace:
    """Load one trace by name (see `list_bundled_traces`) or by index into that list.

    Args:
        name_or_index: A name of `list_bundled_traces(corpus)` (or its unambiguous last parts), or an
            index into it.
        corpus: ``"thought-anchors"`` (the default) or ``"own-model"``.

    Raises:
        KeyError: For an unknown corpus, an unknown name or an index out of range (the message lists
            what exists).
        ValueError: For a missing, unreadable or malformed file in the trace directory.
    """
    names = list_bundled_traces(corpus)
    if not names:
        raise KeyError(f"the {corpus!r} corpus holds no traces in {_root(corpus)}")
    if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
        if not -len(names) <= name_or_index < len(names):
            raise KeyError(f"trace index {name_or_index} out of range: {len(names)} traces in {corpus!r}")
        name = names[name_or_index]
    elif isinstance(name_or_index, str):
        name = name_or_index.strip("/")
        if name not in names:
            matches = [n for n in names if n.endswith("/" + name)]
            if len(matches) != 1:
                raise KeyError(
                    f"no bundled trace {name_or_index!r} (or it is ambiguous); "
                    f"choose one of list_bundled_traces({corpus!r}), e.g. {names[0]!r}"
                )
            name = matches[0]
    else:
        raise KeyError(f"expected a trace name or index, got {type(name_or_index).__name__}")
    return _load(_root(corpus) / name, name, corpus)


def _read_json(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise ValueError(f"bundled trace file missing: {path}; reinstall stream-widgets") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"bundled trace file is corrupt ({error}): {path}; reinstall it") from error


def _load(directory: Path, name: str, corpus: str = "thought-anchors") -> BundledTrace:
    base = _read_json(directory / "base_solution.json")
    records = _read_json(directory / "chunks_labeled.json")
    if not isinstance(base, dict) or not isinstance(base.get("full_cot"), str):
        raise ValueError(f"{directory / 'base_solution.json'} has no string field 'full_cot'")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("chunk"), str) for r in records
    ):
        raise ValueError(f"{directory / 'chunks_labeled.json'} should be a list of records with a 'chunk'")
    records = sorted(records, key=lambda r: r.get("chunk_idx", 0))
    importance = {
        column: tuple(float(r[column]) if r.get(column) is not None else float("nan") for r in records)
        for column in IMPORTANCE_COLUMNS
    }
    parts = name.split("/")
    return BundledTrace(
        name=name,
        model=parts[0],
        problem_id=parts[-1],
        is_math=parts[-1].startswith("problem_"),
        full_cot=base["full_cot"],
        chunks=tuple(r["chunk"] for r in records),
        function_tags=tuple(tuple(r.get("function_tags") or ()) for r in records),
        importance=importance,
        corpus=corpus,
    )
