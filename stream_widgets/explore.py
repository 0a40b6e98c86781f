"""From a `Trace` to the views: tag its sentences, score anchors, build the explorer or the report.

`explore(trace)` and `report(trace, path)` are the one-call entry points. Both go through
`explore_data`, which turns a trace (or its saved file) into the plain `ExploreData` the widgets take:
sentence texts and spans, function tags, anchor and vertical scores, sentence x sentence attention
means and the receiver heads. The views never see the model or any token x token data.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stream_widgets import anchors
from stream_widgets.traces import Trace

if TYPE_CHECKING:
    from stream_widgets.ruler.routes import Route
    from stream_widgets.widgets.data import ExploreData
    from stream_widgets.widgets.explorer import Explorer

__all__ = ["explore", "explore_data", "report", "tag_sentences"]


def _as_trace(trace: Trace | str | os.PathLike) -> Trace:
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, str | os.PathLike):
        return Trace.load(trace)
    raise TypeError(f"expected a Trace or the path of a saved trace, got {type(trace).__name__}")


def tag_sentences(text: str, sentences: Sequence, nlp=None) -> list[str]:
    """Function tag of every sentence of `text`, from the shipped spaCy tagger (`tagging.load()`).

    The tagger's chunker uses the same `split_sentences` as the tracer, so its sentences are the
    trace's; a mismatch (a trace made with other sentence spans) raises `ValueError`.
    """
    if nlp is None:
        import tagging

        nlp = tagging.load()
    doc = nlp(text)  # spans need their Doc alive
    spans = list(doc.spans["cot"])
    if [(s.start_char, s.end_char) for s in spans] != [(s.char_start, s.char_end) for s in sentences]:
        raise ValueError(
            f"the tagger found {len(spans)} sentences where the trace has {len(sentences)}; "
            "pass tags= explicitly for traces whose sentences were not made by split_sentences"
        )
    return [span._.function_tag for span in spans]


def _token_spans(trace: Trace) -> list[tuple[int, int]] | None:
    spans = [(s.token_start, s.token_end) for s in trace.sentences]
    return None if any(a is None or b is None for a, b in spans) else spans


def explore_data(
    trace: Trace | str | os.PathLike,
    tags: Sequence[str] | None = None,
    *,
    receiver_heads: Sequence[tuple[int, int]] | None = None,
    top_heads: int = 20,
    variant: anchors.Variant | None = None,
    route: Route | None = None,
) -> ExploreData:
    """The plain data the explorer and the report show for one trace.

    Args:
        trace: A `Trace` traced with ``sentences=True``, or the path of one saved with `Trace.save`.
        tags: One function tag per sentence; None tags them with the shipped tagger.
        receiver_heads: ``(layer, head)`` pairs to average for the anchor score (e.g. pooled over many
            traces with `receiver_heads`); None picks the `top_heads` of this trace alone.
        top_heads: Receiver heads to pick when `receiver_heads` is None.
        variant: Vertical-score variant (`anchors.VARIANTS`); None for `anchors.DEFAULT_VARIANT`.
        route: A needle route over the same text (`routes.find_route`) to show beside the sentence
            views; None for none.

    Returns:
        An `ExploreData`. Cost O(L H S^2); the attention means are float32 ``[L, H, S, S]``.
    """
    from stream_widgets.widgets.data import ExploreData

    trace = _as_trace(trace)
    if not trace.sentences:
        raise ValueError("the trace has no sentences: trace a text with sentences=True")
    variant = variant or anchors.DEFAULT_VARIANT
    matrix = anchors.sentence_attention(trace)  # [L, H, S, S]
    num_layers, num_heads, s, _ = matrix.shape
    if receiver_heads is None:
        receiver_heads = anchors.receiver_heads(
            matrix, min(top_heads, num_layers * num_heads), variant=variant
        )
    # Every head's vertical scores once; the anchor score is their mean over the receiver heads.
    vertical = anchors.vertical_scores(matrix.reshape(-1, s, s), variant=variant).reshape(
        num_layers, num_heads, s
    )
    layers, heads = zip(*receiver_heads, strict=True)
    scores = vertical[list(layers), list(heads)].mean(axis=0)
    if tags is None:
        tags = tag_sentences(trace.text, trace.sentences)
    if len(tags) != s:
        raise ValueError(f"got {len(tags)} tags for {s} sentences")
    return ExploreData(
        text=trace.text,
        sentences=[sentence.text for sentence in trace.sentences],
        char_spans=[(sentence.char_start, sentence.char_end) for sentence in trace.sentences],
        tags=list(tags),
        # The last sentences have too few later ones to score (NaN): shown as 0.
        anchor_scores=np.nan_to_num(scores, nan=0.0),
        vertical_scores=np.nan_to_num(vertical, nan=0.0).mean(axis=(0, 1)),  # over all heads
        sentence_attention=matrix.astype(np.float32),
        receiver_heads=[tuple(head) for head in receiver_heads],
        token_spans=_token_spans(trace),
        route=route,
        meta={
            "model": trace.model_id,
            "tokens": trace.seq_len,
            "mode": trace.mode,
            "sparsity": float(trace.sparsity().mean()),
            "config": trace.config.to_dict(),
            "score_variant": variant,
        },
    )


def _data(trace, tags, route, options) -> ExploreData:
    from stream_widgets.widgets.data import ExploreData

    if not isinstance(trace, ExploreData):
        return explore_data(trace, tags, route=route, **options)
    return trace if route is None else dataclasses.replace(trace, route=route)


def explore(
    trace: Trace | str | os.PathLike | ExploreData,
    tags: Sequence[str] | None = None,
    *,
    route: Route | None = None,
    **options,
) -> Explorer:
    """The linked notebook explorer of one trace (an ipywidgets widget; display it in Jupyter).

    Args:
        trace: A `Trace`, a saved trace's path, or ready `ExploreData`.
        tags, route, options: As in `explore_data` (a `route` also replaces that of ready `ExploreData`).
    """
    from stream_widgets.widgets.explorer import build_explorer

    return build_explorer(_data(trace, tags, route, options))


def report(
    trace: Trace | str | os.PathLike | ExploreData,
    path: str | os.PathLike,
    tags: Sequence[str] | None = None,
    *,
    route: Route | None = None,
    **options,
) -> Path:
    """Write the standalone phase-tag report of one trace into the folder `path`.

    Writes ``report.html`` (opens offline: Bokeh inlined, linked views in the browser),
    ``summary.json`` and ``sentences.csv``; returns the HTML file's path. Arguments as in `explore`.
    """
    from stream_widgets.html_report import write_report

    return write_report(_data(trace, tags, route, options), path)
