"""From a `Trace` to the views: tag its sentences, score anchors, build the explorer or the report.

`explore(trace)` and `report(trace, path)` are the one-call entry points. Both go through
`explore_data`, which turns a trace (or its saved file) into the plain `ExploreData` the views take:
sentence texts and spans, function tags with their confidence (the shipped tagger, run on the trace's
own sentences), anchor and per-head vertical scores, sentence x sentence attention means, the receiver
heads, and, when given or recorded, evidence scores, a suppression matrix and token-level rows. The views
never see the model; nothing T x T reaches them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stream_widgets.ruler.routes import Route
    from stream_widgets.traces import Trace
    from stream_widgets.views.data import ExploreData, TokenView
    from stream_widgets.views.explorer import Explorer

__all__ = ["TOKEN_BINS", "explore", "explore_data", "report", "token_view"]

#: Key bins of the token view (the text's tokens pooled into this many columns).
TOKEN_BINS = 160


def _as_trace(trace: Trace | str | os.PathLike) -> Trace:
    from stream_widgets.traces import Trace

    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, str | os.PathLike):
        return Trace.load(trace)
    raise TypeError(f"expected a Trace or the path of a saved trace, got {type(trace).__name__}")


def _token_spans(trace: Trace) -> list[tuple[int, int]] | None:
    spans = [(s.token_start, s.token_end) for s in trace.sentences]
    return None if any(a is None or b is None for a, b in spans) else spans


def token_view(trace: Trace, bins: int = TOKEN_BINS) -> TokenView | None:
    """The recorded token-level weights of `trace` (``trace(..., layers=[...], heads=[...])``) as a
    `TokenView`: every query token's attention summed over `bins` key bins; None if none were recorded.

    Cost: `Trace.token_attention` densifies one head at a time (T x T float32, 256 MB at 8k tokens), then
    only the `[T, bins]` pooled rows are kept.
    """
    from stream_widgets.views.data import TokenView

    if not trace.token_weights or not trace.token_heads:
        return None
    t = trace.seq_len
    edges = np.unique(np.linspace(0, t, min(t, bins) + 1).round().astype(np.int64))
    heads, values = [], []
    for layer in sorted(trace.token_weights):
        for head in trace.token_heads:
            dense = trace.token_attention(layer, head).numpy()
            values.append(np.add.reduceat(dense, edges[:-1], axis=1).astype(np.float32))
            heads.append((layer, head))
    offsets = trace.offsets.tolist()
    tokens = [trace.text[a:b] for a, b in offsets]
    return TokenView(heads=heads, tokens=tokens, bin_edges=edges, values=np.stack(values))


def explore_data(
    trace: Trace | str | os.PathLike,
    tags: Sequence[str] | None = None,
    *,
    receiver_heads: Sequence[tuple[int, int]] | str | None = None,
    top_heads: int = 20,
    variant: str | None = None,
    route: Route | None = None,
    evidence: Mapping[str, Any] | None = None,
    suppression: np.ndarray | None = None,
    corrections: str | os.PathLike | dict | None = None,
    nlp=None,
) -> ExploreData:
    """The plain data the explorer and the report show for one trace.

    Args:
        trace: A `Trace` traced with ``sentences=True``, or the path of one saved with `Trace.save`.
        tags: One function tag per sentence; None tags the trace's own sentences with the shipped tagger
            (`tagging.tag_sentences`, which also gives each tag's confidence).
        receiver_heads: As in `anchors.choose_heads`: ``(layer, head)`` pairs, ``"corpus"``, ``"trace"``,
            or None for the model's corpus heads when they ship, else the `top_heads` of this trace
            alone; when neither can be had (a short trace of a model without corpus heads) all heads'
            mean, said in `meta["receiver_heads_source"]` (``"given"``, ``"corpus"``, ``"trace"`` or
            ``"all heads"``).
        top_heads: Receiver heads to pick when `receiver_heads` is None.
        variant: Vertical-score variant (`anchors.VARIANTS`); None for `anchors.DEFAULT_VARIANT`.
        route: A needle route over the same text (`routes.find_route`) to show beside the sentence views.
        evidence: Score name -> `[S]` per-sentence scores (NaN where not available) shown beside the
            anchor score, e.g. black-box importance ``{"counterfactual_importance_kl": ...}``; the
            position baseline (and the suppression importance, with `suppression`) are always added
            (`anchors.anchor_evidence`).
        suppression: `[S, S]` from `suppression.suppression_matrix`, shown as a second sentence x sentence
            view and summarised as the suppression importance.
        corrections: Tag corrections to apply: a corrections JSON file, a report folder holding one,
            or the loaded document (`views.corrections`).
        nlp: A loaded tagging pipeline to use instead of `tagging.load()`.

    Returns:
        An `ExploreData`. Cost O(L H S^2); the attention means are float32 ``[L, H, S, S]``.
    """
    from stream_widgets import anchors
    from stream_widgets.views import corrections as corrections_io
    from stream_widgets.views.data import ExploreData

    trace = _as_trace(trace)
    if not trace.sentences:
        raise ValueError("the trace has no sentences: trace a text with sentences=True")
    variant = variant or anchors.DEFAULT_VARIANT
    matrix = anchors.sentence_attention(trace)  # [L, H, S, S]
    num_layers, num_heads, s, _ = matrix.shape
    vertical = anchors.vertical_scores(matrix, variant=variant)  # [L, H, S], every head once
    try:
        receiver_heads, source = anchors.choose_heads(
            trace, receiver_heads, top_heads=top_heads, variant=variant, matrix=matrix, vertical=vertical
        )
    except ValueError:
        if receiver_heads is not None:
            raise
        # too few scored sentences for the trace's own heads, and no corpus heads for this model
        receiver_heads = [(layer, head) for layer in range(num_layers) for head in range(num_heads)]
        source = "all heads"
    layers, head_ids = zip(*receiver_heads, strict=True)
    scores = vertical[list(layers), list(head_ids)].mean(axis=0)  # anchors.anchor_scores, once
    evidence = anchors.anchor_evidence(s, suppression=suppression, importance=evidence)
    confidence = None
    if tags is None:
        import tagging

        tagged = tagging.tag_sentences([sentence.text for sentence in trace.sentences], nlp=nlp)
        tags = [t.tag for t in tagged]
        confidence = [t.confidence for t in tagged]
        vocabulary = [*tagging.FUNCTION_TAGS, tagging.UNKNOWN_TAG]
    else:
        vocabulary = None
    if len(tags) != s:
        raise ValueError(f"got {len(tags)} tags for {s} sentences")
    data = ExploreData(
        text=trace.text,
        sentences=[sentence.text for sentence in trace.sentences],
        char_spans=[(sentence.char_start, sentence.char_end) for sentence in trace.sentences],
        tags=list(tags),
        tag_confidence=confidence,
        tag_vocabulary=vocabulary,
        anchor_scores=scores,
        vertical_scores=vertical,
        sentence_attention=matrix.astype(np.float32),
        receiver_heads=receiver_heads,
        token_spans=_token_spans(trace),
        token_view=token_view(trace) if _token_spans(trace) is not None else None,
        route=route,
        evidence=evidence,
        suppression=suppression,
        meta={
            "model": trace.model_id,
            "tokens": trace.seq_len,
            "mode": trace.mode,
            "sparsity": float(trace.sparsity().mean()),
            "config": trace.config.to_dict(),
            "score_variant": variant,
            "min_later": anchors.DEFAULT_MIN_LATER,
            "proximity_ignore": anchors.PROXIMITY_IGNORE,
            "receiver_heads_source": source,
        },
    )
    if corrections is not None:
        document = (
            corrections if isinstance(corrections, dict) else corrections_io.load_corrections(corrections)
        )
        data = corrections_io.apply_corrections(data, document)
    return data


def _data(trace, tags, route, options) -> ExploreData:
    from stream_widgets.views.data import ExploreData

    if not isinstance(trace, ExploreData):
        return explore_data(trace, tags, route=route, **options)
    changes = {name: options.pop(name) for name in ("evidence", "suppression") if name in options}
    if options:
        raise TypeError(f"options {sorted(options)} apply to a Trace, not to ready ExploreData")
    if route is not None:
        changes["route"] = route
    return dataclasses.replace(trace, **changes) if changes else trace


def explore(
    trace: Trace | str | os.PathLike | ExploreData,
    tags: Sequence[str] | None = None,
    *,
    route: Route | None = None,
    output_backend: str = "canvas",
    **options,
) -> Explorer:
    """The linked notebook explorer of one trace (an ipywidgets widget; display it in Jupyter).

    Args:
        trace: A `Trace`, a saved trace's path, or ready `ExploreData`.
        tags, route, options: As in `explore_data` (`route`, `evidence` and `suppression` also replace
            those of ready `ExploreData`).
        output_backend: ``"canvas"`` (each figure's save tool writes PNG) or ``"svg"`` (it writes SVG).
    """
    from stream_widgets.views.explorer import build_explorer, load_bokehjs

    load_bokehjs()  # a moment before the widget is displayed (see load_bokehjs)
    return build_explorer(_data(trace, tags, route, options), load=False, output_backend=output_backend)


def report(
    trace: Trace | str | os.PathLike | ExploreData,
    path: str | os.PathLike,
    tags: Sequence[str] | None = None,
    *,
    route: Route | None = None,
    output_backend: str = "canvas",
    **options,
) -> Path:
    """Write the standalone phase-tag report of one trace into the folder `path`.

    Writes ``report.html`` (opens offline: Bokeh inlined, linked views in the browser),
    ``summary.json`` and ``sentences.csv`` (and ``tag_corrections.json`` when there are corrections; one
    already in the folder is re-applied); returns the HTML file's path. Arguments as in `explore`.
    """
    from stream_widgets.views.report_files import write_report

    return write_report(_data(trace, tags, route, options), path, output_backend=output_backend)
