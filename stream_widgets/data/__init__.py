"""The bundled Thought Anchors traces (MIT, see `thought_anchors/LICENSE.md`) and their loader.

Each trace directory holds `base_solution.json` (the prompt and the full chain of thought, `full_cot`)
and `chunks_labeled.json` (one record per chunk: its text, its GPT-4o function tags and black-box
importance measures). Names are paths relative to `thought_anchors/`, e.g.
`"deepseek-r1-distill-llama-8b/correct_base_solution/problem_1591"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = [
    "IMPORTANCE_COLUMNS",
    "TRACES_DIR",
    "BundledTrace",
    "list_bundled_traces",
    "load_bundled_trace",
]

TRACES_DIR = Path(__file__).resolve().parent / "thought_anchors"
"""Root of the bundled traces."""

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
class BundledTrace:
    """One labelled trace.

    Attributes:
        name: Path relative to `TRACES_DIR`,
            e.g. `"deepseek-r1-distill-qwen-14b/correct_base_solution/problem_330"`.
        model: The model that wrote it (first path part).
        problem_id: Last path part (`"problem_330"`, `"scenario_0"`); traces of one problem share it.
        is_math: True for the math problems (chunked by `split_sentences`'s rules), False for scenarios.
        full_cot: Prompt plus `<think>` reasoning, the input of `split_sentences`.
        chunks: `[S]` chunk texts as labelled.
        function_tags: `[S]` tuples of function tags (every bundled chunk has exactly one).
        importance: Column name -> `[S]` floats (NaN where missing).
    """

    name: str
    model: str
    problem_id: str
    is_math: bool
    full_cot: str
    chunks: tuple[str, ...]
    function_tags: tuple[tuple[str, ...], ...]
    importance: dict[str, tuple[float, ...]] = field(hash=False)

    @property
    def labels(self) -> list[str]:
        """First function tag of every chunk (`"unknown"` when a chunk has none)."""
        return [tags[0] if tags else "unknown" for tags in self.function_tags]

    def __repr__(self) -> str:
        return f"BundledTrace({self.name!r}, chunks={len(self.chunks)}, chars={len(self.full_cot)})"


@cache
def list_bundled_traces() -> tuple[str, ...]:
    """Return the names of all bundled traces, sorted (math problems and scenarios)."""
    return tuple(
        sorted(p.parent.relative_to(TRACES_DIR).as_posix() for p in TRACES_DIR.rglob("chunks_labeled.json"))
    )


def load_bundled_trace(name_or_index: str | int) -> BundledTrace:
    """Load one bundled trace by name (see `list_bundled_traces`) or by index into that list.

    Raises:
        KeyError: For an unknown name or an index out of range (the message lists what exists).
        ValueError: For a missing, unreadable or malformed file in the trace directory.
    """
    names = list_bundled_traces()
    if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
        if not -len(names) <= name_or_index < len(names):
            raise KeyError(f"trace index {name_or_index} out of range: {len(names)} bundled traces")
        name = names[name_or_index]
    elif isinstance(name_or_index, str):
        name = name_or_index.strip("/")
        if name not in names:
            matches = [n for n in names if n.endswith("/" + name)]
            if len(matches) != 1:
                raise KeyError(
                    f"no bundled trace {name_or_index!r} (or it is ambiguous); "
                    f"choose one of list_bundled_traces(), e.g. {names[0]!r}"
                )
            name = matches[0]
    else:
        raise KeyError(f"expected a trace name or index, got {type(name_or_index).__name__}")
    return _load(TRACES_DIR / name, name)


def _read_json(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise ValueError(f"bundled trace file missing: {path}; reinstall stream-widgets") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"bundled trace file is corrupt ({error}): {path}; reinstall it") from error


def _load(directory: Path, name: str) -> BundledTrace:
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
    )
