"""Corpus receiver heads: every trace's per-head kurtosis pooled over the corpus, with its split-half
reliability, saved beside the corpus and read back.

`pool_heads(run, entries)` reads the traces one at a time (load, compute, drop: memory is that of the
largest trace, ``[L, H, S, S]`` float32 sentence attention) and computes each one's per-head Fisher
kurtosis of its vertical scores (`receivers.trace_kurtosis`, for the variant and ``min_later`` asked),
averaged over the traces (as Thought Anchors does), with the split-half reliability of per-head kurtosis
over the traces' groups (`receivers.split_half_reliability`: each split gives half of the groups, e.g.
problems, to each side). The result is a `receivers.CorpusHeads`.

`save_heads` writes them in the format of the shipped heads (``out/receiver_heads/<model>.json``:
`receivers.corpus_heads(model_id, variant, directory=out / "receiver_heads")` reads it), and
`load_corpus_heads(out)` reads them back for the anchors of any trace of the same model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stream_widgets.corpus.manifest import CorpusRun, TraceEntry

if TYPE_CHECKING:
    from stream_widgets.receivers import CorpusHeads

__all__ = ["HEADS_DIR", "load_corpus_heads", "pool_heads", "save_heads"]

HEADS_DIR = "receiver_heads"


def pool_heads(
    run: CorpusRun,
    entries: Iterable[TraceEntry],
    *,
    variant: str,
    min_later: int,
    splits: int,
    seed: int,
) -> tuple[CorpusHeads, list[TraceEntry], list[dict]]:
    """The corpus receiver heads of the done traces `entries` of `run` (see the module docstring).

    Args:
        run: The corpus run (its manifest).
        entries: The done entries to pool, in corpus order (may be wrapped in a progress bar).
        variant: Vertical-score variant (one of `vertical.VARIANTS`).
        min_later: Later sentences a sentence needs for a score.
        splits: Random splits of the split-half reliability.
        seed: Seed of those splits.

    Returns:
        The `receivers.CorpusHeads`, the entries pooled (in order), and ``{"id", "reason"}`` of every
        entry left out (unreadable, no sentence attention, too short for a kurtosis).

    Raises:
        ValueError: If the traces are of different models or shapes, or none has enough sentences for a
            kurtosis (4 scored sentences).
    """
    from stream_widgets import receivers
    from stream_widgets.vertical import PROXIMITY_IGNORE, sentence_attention, vertical_scores

    kurtosis, used, model_ids, left_out = [], [], set(), []
    for entry in entries:
        try:
            trace = run.load(entry)
        except (OSError, ValueError) as error:
            left_out.append({"id": entry.id, "reason": f"unreadable trace file: {error}"})
            continue
        if not trace.sentences or trace.sentence_attention_sum is None:
            left_out.append({"id": entry.id, "reason": "the trace has no sentence attention"})
            continue
        model_ids.add(trace.model_id)
        scores = vertical_scores(
            sentence_attention(trace), PROXIMITY_IGNORE, variant=variant, min_later=min_later
        )
        k = receivers.score_kurtosis(scores)
        del trace, scores
        if np.isnan(k).all():
            left_out.append(
                {"id": entry.id, "reason": "fewer than 4 sentences with a score: no kurtosis, left out"}
            )
            continue
        kurtosis.append(k)
        used.append(entry)
    if len(model_ids) > 1:
        raise ValueError(
            f"the corpus mixes traces of several models ({sorted(model_ids)}): analyse one at a time"
        )
    if not used:
        raise ValueError(
            f"no trace of {run.out} has 4 or more sentences with a score: receiver heads need longer traces"
        )
    if len({k.shape for k in kurtosis}) > 1:
        raise ValueError(f"the traces disagree on layers x heads: {sorted({k.shape for k in kurtosis})}")
    stacked = np.stack(kurtosis)
    groups = [e.group for e in used]
    if len(set(groups)) >= 2:
        reliability = receivers.split_half_reliability(stacked, groups, splits=splits, seed=seed)
    else:  # one group: no split can be made; the heads are still pooled
        reliability = receivers.SplitHalf(float("nan"), (), len(set(groups)))
    counts = (~np.isnan(stacked)).sum(axis=0)
    pooled = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
    heads = receivers.CorpusHeads(
        model_id=model_ids.pop(),
        variant=variant,
        kurtosis=pooled,
        reliability=reliability,
        traces=tuple(e.id for e in used),
        proximity_ignore=PROXIMITY_IGNORE,
        min_later=min_later,
        notes={
            "source": f"stream-widgets corpus analysis of {run.out}",
            "tokens": [e.tokens for e in used],
            "config": run.settings.get("config"),
            "mode": run.settings.get("mode"),
            "max_tokens": run.settings.get("max_tokens"),
        },
    )
    return heads, used, left_out


def save_heads(heads: CorpusHeads, out: Path) -> Path:
    """Write `heads` into ``out/receiver_heads/<model>.json``, keeping other variants already there."""
    from stream_widgets import receivers

    directory = out / HEADS_DIR
    entries = [heads]
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            kept = [
                receivers.CorpusHeads.from_dict(e)
                for e in json.loads(path.read_text(encoding="utf-8"))["variants"]
            ]
        except (ValueError, KeyError, TypeError):
            continue
        entries += [
            e
            for e in kept
            if e.model_id == heads.model_id
            and (e.variant, e.proximity_ignore, e.min_later)
            != (heads.variant, heads.proximity_ignore, heads.min_later)
        ]
    return receivers.save_corpus_heads(entries, directory)


def load_corpus_heads(out: str | os.PathLike, variant: str | None = None, *, min_later: int | None = None):
    """The receiver heads a corpus analysis found (`corpus_report`), as a `receivers.CorpusHeads`.

    Use them for the anchors of any trace of the same model:
    ``thought_anchors(trace, receiver_heads=load_corpus_heads(out).heads(20))``, ``explore(trace,
    receiver_heads=...)``, or ``stream-widgets anchors TRACE --corpus OUT``.

    Args:
        out: The corpus folder (or its ``receiver_heads`` folder).
        variant: The vertical-score variant the heads were pooled for; `vertical.DEFAULT_VARIANT` if None.
        min_later: Their ``min_later``; `vertical.DEFAULT_MIN_LATER` if None.

    Raises:
        FileNotFoundError: If the folder has no analysed heads.
        ValueError: If there are none for this variant and min_later.
    """
    from stream_widgets import receivers
    from stream_widgets.vertical import DEFAULT_MIN_LATER, DEFAULT_VARIANT

    variant = DEFAULT_VARIANT if variant is None else variant
    min_later = DEFAULT_MIN_LATER if min_later is None else min_later
    out = Path(out)
    directory = out if out.name == HEADS_DIR else out / HEADS_DIR
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no corpus receiver heads in {directory}: run `stream-widgets corpus-report {out}` first"
        )
    found = []
    for path in files:
        try:
            found += [
                receivers.CorpusHeads.from_dict(e)
                for e in json.loads(path.read_text(encoding="utf-8"))["variants"]
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a corpus-heads file ({error})") from None
    for heads in found:
        if (heads.variant, heads.min_later) == (variant, min_later):
            return heads
    have = sorted({(h.variant, h.min_later) for h in found})
    raise ValueError(
        f"{directory} has receiver heads for (variant, min_later) {have}, not ({variant!r}, {min_later}): run "
        f"`stream-widgets corpus-report {out} --variant {variant} --min-later {min_later}`"
    )
