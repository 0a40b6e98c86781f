"""Plain data behind the explorer widget and the standalone report.

`ExploreData` holds everything the views show, as numpy arrays, strings and tags: the trace text, its
sentences and their character spans, one function tag per sentence, anchor and vertical scores, and the
sentence x sentence attention of every (layer, head). It never holds a model or token-level attention,
so the widgets and the report stay independent of how the numbers were computed.

Importing this module imports numpy and the tag list only (no Bokeh, no ipywidgets, no spaCy, no torch:
`stream_widgets.ruler.routes` is imported only to check a route that is given).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tagging.tags import ALL_TAGS

if TYPE_CHECKING:
    from stream_widgets.ruler.routes import Route

__all__ = [
    "FUNCTION_TAGS",
    "TAG_COLORS",
    "ExploreData",
    "synthetic_example",
]

#: The 8 Thought Anchors function tags, in reasoning order, plus "unknown" when nothing fits: the
#: tagger's vocabulary (`tagging.tags`; importing it loads no spaCy).
FUNCTION_TAGS: tuple[str, ...] = ALL_TAGS

#: One colour per function tag (Okabe-Ito hues, wine instead of black so text stays readable; grey
#: for "unknown").
TAG_COLORS: dict[str, str] = {
    "problem_setup": "#0072B2",
    "plan_generation": "#E69F00",
    "fact_retrieval": "#56B4E9",
    "active_computation": "#009E73",
    "result_consolidation": "#CC79A7",
    "uncertainty_management": "#D55E00",
    "final_answer_emission": "#882255",
    "self_checking": "#F0E442",
    "unknown": "#999999",
}


@dataclass
class ExploreData:
    """Sentence-level results of one trace, ready to view.

    Shapes use `S` sentences, `L` layers, `H` heads. Memory: `sentence_attention` is `4 * L * H * S * S`
    bytes (30 layers x 9 heads x 200 sentences: 43 MB); the views send at most one `S x S` matrix
    (downsampled to at most a few hundred per axis) to the browser at a time.

    Attributes:
        text: The trace text the character spans index into.
        sentences: `S` sentence strings (the Thought Anchors chunks).
        char_spans: `S` half-open `(start, end)` character spans into `text`, in order, not overlapping.
        tags: `S` function tags, each one of `FUNCTION_TAGS`.
        anchor_scores: `[S]` anchor score per sentence (mean vertical score over receiver heads).
        vertical_scores: `[S]` vertical score per sentence (shown beside the anchor score; which
            variant is described by `meta["score_variant"]` when given).
        sentence_attention: `[L, H, S, S]` float32; cell `(l, h, i, j)` is the mean token attention from
            sentence `i` to sentence `j` at layer `l`, head `h`. Lower-triangular (causal).
        receiver_heads: `(layer, head)` pairs of the receiver heads, at least one, indexing the first
            two axes of `sentence_attention`.
        layer_head_labels: Optional `(layer_labels, head_labels)` with `L` and `H` display names, e.g.
            the model's layer numbers when only some layers were traced. Defaults to "layer 0", "head 0".
        meta: Free-form facts shown in titles and written to the report summary. Keys the views read:
            `model`, `sparsity`, `score_variant`, `title`; `tokens` (the text's token count T), when
            given, bounds `token_spans` and the route's positions.
        token_spans: Optional `S` half-open `(start, end)` token spans of the sentences, in order, not
            overlapping; they let the route view find the sentence holding a token position.
        route: Optional needle route (`stream_widgets.ruler.routes.Route`, or its `to_dict()`) over the same
            text: its positions are token positions, its layers index the first axis of
            `sentence_attention`. When given, the explorer and the report add the route view.
    """

    text: str
    sentences: list[str]
    char_spans: list[tuple[int, int]]
    tags: list[str]
    anchor_scores: np.ndarray
    vertical_scores: np.ndarray
    sentence_attention: np.ndarray
    receiver_heads: list[tuple[int, int]]
    layer_head_labels: tuple[Sequence[str], Sequence[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    token_spans: list[tuple[int, int]] | None = None
    route: Route | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"ExploreData.text must be str, got {type(self.text).__name__}")
        self.sentences = [str(s) for s in self.sentences]
        n = len(self.sentences)
        if n == 0:
            raise ValueError("ExploreData.sentences is empty: a trace needs at least one sentence to view")
        self._check_spans(n)
        self._check_tags(n)
        self.anchor_scores = self._vector("anchor_scores", self.anchor_scores, n)
        self.vertical_scores = self._vector("vertical_scores", self.vertical_scores, n)
        self._check_attention(n)
        self._check_receiver_heads()
        self._check_labels()
        if not isinstance(self.meta, dict):
            raise TypeError(f"ExploreData.meta must be a dict, got {type(self.meta).__name__}")
        self._check_token_spans(n)
        self._check_route()

    # ------------------------------------------------------------------ validation

    def _check_spans(self, n: int) -> None:
        self.char_spans = _ordered_spans(
            "char_spans", self.char_spans, n, len(self.text), f"the text (length {len(self.text)})"
        )

    def _check_tags(self, n: int) -> None:
        self.tags = [str(t) for t in self.tags]
        if len(self.tags) != n:
            raise ValueError(f"ExploreData.tags has {len(self.tags)} tags for {n} sentences")
        bad = sorted({t for t in self.tags if t not in TAG_COLORS})
        if bad:
            raise ValueError(
                f"ExploreData.tags has unknown function tags {bad}; allowed: {list(FUNCTION_TAGS)} "
                "(use 'unknown' for untagged sentences)"
            )

    @staticmethod
    def _vector(name: str, values: Any, n: int) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"ExploreData.{name} must have shape [S] = ({n},), got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"ExploreData.{name} has NaN or infinite values; give finite scores")
        return array

    def _check_attention(self, n: int) -> None:
        attention = np.asarray(self.sentence_attention)
        if attention.ndim != 4 or attention.shape[2:] != (n, n) or 0 in attention.shape[:2]:
            raise ValueError(
                f"ExploreData.sentence_attention must have shape [L, H, S, S] with S = {n} and L, H >= 1, "
                f"got {attention.shape}"
            )
        attention = attention.astype(np.float32, copy=False)
        if not np.isfinite(attention).all():
            raise ValueError("ExploreData.sentence_attention has NaN or infinite values")
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        if np.abs(attention[..., upper]).max(initial=0.0) > 0:
            raise ValueError(
                "ExploreData.sentence_attention has non-zero entries above the diagonal; sentence i can "
                "only attend to sentences j <= i (pass the causal, lower-triangular matrices)"
            )
        self.sentence_attention = attention

    def _check_receiver_heads(self) -> None:
        n_layers, n_heads = self.sentence_attention.shape[:2]
        heads = [(int(layer), int(head)) for layer, head in self.receiver_heads]
        if not heads:
            raise ValueError("ExploreData.receiver_heads is empty; give at least one (layer, head) pair")
        for layer, head in heads:
            if not (0 <= layer < n_layers and 0 <= head < n_heads):
                raise ValueError(
                    f"ExploreData.receiver_heads has ({layer}, {head}) outside L={n_layers}, H={n_heads}"
                )
        self.receiver_heads = heads

    def _check_labels(self) -> None:
        n_layers, n_heads = self.sentence_attention.shape[:2]
        if self.layer_head_labels is None:
            self.layer_head_labels = (
                [f"layer {i}" for i in range(n_layers)],
                [f"head {i}" for i in range(n_heads)],
            )
            return
        layers, heads = (list(map(str, x)) for x in self.layer_head_labels)
        if len(layers) != n_layers or len(heads) != n_heads:
            raise ValueError(
                f"ExploreData.layer_head_labels must be ({n_layers} layer labels, {n_heads} head labels), "
                f"got ({len(layers)}, {len(heads)})"
            )
        self.layer_head_labels = (layers, heads)

    def _token_count(self) -> int | None:
        tokens = self.meta.get("tokens")
        return None if tokens is None else int(tokens)

    def _check_token_spans(self, n: int) -> None:
        if self.token_spans is not None:
            self.token_spans = _ordered_spans(
                "token_spans",
                self.token_spans,
                n,
                self._token_count(),
                f"meta['tokens'] = {self._token_count()}",
            )

    def _check_route(self) -> None:
        if self.route is None:
            return
        # Imported only when a route is given: stream_widgets.ruler.routes loads torch.
        from stream_widgets.ruler.routes import Route

        if isinstance(self.route, dict):
            self.route = Route.from_dict(self.route)
        if not isinstance(self.route, Route):
            raise TypeError(
                f"ExploreData.route must be a stream_widgets.ruler.routes.Route, its to_dict() or None, "
                f"got {type(self.route).__name__}"
            )
        route, n_layers, limit = self.route, self.n_layers, self._token_count()
        for e in route.edges + route.pruned:
            if not 0 <= e.layer < n_layers:
                raise ValueError(
                    f"ExploreData.route has an edge at layer {e.layer} outside L={n_layers} "
                    "(the layers of sentence_attention); pass the route of the same model"
                )
        positions = [p for e in route.edges + route.pruned for p in (e.query, e.key)]
        positions += [*route.sources, route.output]
        bad = sorted({p for p in positions if p < 0 or (limit is not None and p >= limit)})
        if bad:
            raise ValueError(
                f"ExploreData.route has token positions {bad[:5]} outside [0, {limit}) (meta['tokens']); "
                "pass the route of this text"
            )

    # ------------------------------------------------------------------ accessors

    @property
    def n_sentences(self) -> int:
        """S, the number of sentences."""
        return len(self.sentences)

    @property
    def n_layers(self) -> int:
        """L, the number of layers in `sentence_attention`."""
        return int(self.sentence_attention.shape[0])

    @property
    def n_heads(self) -> int:
        """H, the number of heads per layer in `sentence_attention`."""
        return int(self.sentence_attention.shape[1])

    @property
    def layer_labels(self) -> list[str]:
        """`L` layer display names."""
        return list(self.layer_head_labels[0])

    @property
    def head_labels(self) -> list[str]:
        """`H` head display names."""
        return list(self.layer_head_labels[1])

    def tags_present(self) -> list[str]:
        """The function tags used by at least one sentence, in `FUNCTION_TAGS` order."""
        used = set(self.tags)
        return [t for t in FUNCTION_TAGS if t in used]

    def sentence_of(self, position: int) -> int | None:
        """Index of the sentence whose token span holds token `position` (None: no such span, or no spans)."""
        if self.token_spans is None:
            return None
        starts = [start for start, _ in self.token_spans]
        i = bisect.bisect_right(starts, int(position)) - 1
        if i >= 0 and position < self.token_spans[i][1]:
            return i
        return None

    def top_anchors(self, k: int = 5) -> list[int]:
        """Indices of the `k` sentences with the highest anchor score, best first (ties: earlier first)."""
        order = np.argsort(-self.anchor_scores, kind="stable")
        return [int(i) for i in order[:k]]

    def __repr__(self) -> str:
        return (
            f"ExploreData(S={self.n_sentences}, L={self.n_layers}, H={self.n_heads}, "
            f"receiver_heads={len(self.receiver_heads)}, tags={len(self.tags_present())} used, "
            f"route={'yes' if self.route is not None else 'no'}, meta keys={sorted(self.meta)})"
        )


def _ordered_spans(
    field_name: str, spans, n: int, limit: int | None, limit_name: str
) -> list[tuple[int, int]]:
    """`spans` as int pairs after checking: one per sentence, half-open, in order, not overlapping, and
    ending at or before `limit` (when known). Errors name `ExploreData.<field_name>`."""
    if len(spans) != n:
        raise ValueError(
            f"ExploreData.{field_name} has {len(spans)} spans for {n} sentences; give one (start, end) span "
            "per sentence"
        )
    checked, previous_end = [], 0
    for i, span in enumerate(spans):
        start, end = (int(v) for v in span)
        if start < previous_end or end < start or (limit is not None and end > limit):
            raise ValueError(
                f"ExploreData.{field_name}[{i}] = {span} overlaps the previous span (ending at {previous_end}), "
                f"has end < start, or is outside {limit_name}; spans must be in order and inside"
            )
        checked.append((start, end))
        previous_end = end
    return checked


def synthetic_example(S: int = 40, L: int = 4, H: int = 3, seed: int = 0) -> ExploreData:
    """A random, valid `ExploreData` for tests and API examples; not a real trace.

    Sentences are numbered filler text; attention rows are random causal distributions with a recency
    bump and a few "anchor" columns that many later sentences attend to. Never use it for figures that
    claim to show a model.

    Args:
        S: Number of sentences.
        L: Number of layers.
        H: Number of heads per layer.
        seed: Seed of the numpy generator.

    Returns:
        An `ExploreData` with `meta["synthetic"] = True`.
    """
    rng = np.random.default_rng(seed)
    sentences = [f"Sentence {i}: step {i} of a made-up chain of thought." for i in range(S)]
    pieces, spans, pos = [], [], 0
    for i, sentence in enumerate(sentences):
        spans.append((pos, pos + len(sentence)))
        separator = "\n\n" if i % 7 == 6 else " "
        pieces.append(sentence + separator)
        pos += len(sentence) + len(separator)
    text = "".join(pieces)
    tag_cycle = list(FUNCTION_TAGS[:8])
    tags = [
        tag_cycle[min(i * 8 // S, 7)] if rng.random() > 0.15 else str(rng.choice(tag_cycle)) for i in range(S)
    ]
    anchors = rng.choice(S, size=max(1, S // 10), replace=False)
    logits = rng.normal(0.0, 1.0, size=(L, H, S, S)).astype(np.float32)
    distance = np.arange(S)[:, None] - np.arange(S)[None, :]
    logits += np.where(distance >= 0, 2.0 * np.exp(-distance / 3.0), 0.0).astype(np.float32)
    logits[..., anchors] += rng.uniform(1.0, 3.0, size=(L, H, 1, len(anchors))).astype(np.float32)
    logits = np.where(distance >= 0, logits, -np.inf)
    attention = np.exp(logits - logits.max(axis=-1, keepdims=True))
    attention /= attention.sum(axis=-1, keepdims=True)
    vertical = np.array(
        [attention[:, :, j + 4 :, j].mean() if j + 4 < S else 0.0 for j in range(S)], dtype=np.float64
    )
    receiver = [
        (int(layer), int(h)) for layer, h in zip(rng.integers(0, L, 3), rng.integers(0, H, 3), strict=True)
    ]
    receiver = sorted(set(receiver))
    anchor_scores = np.array(
        [
            np.mean([attention[layer, h, j + 4 :, j].mean() if j + 4 < S else 0.0 for layer, h in receiver])
            for j in range(S)
        ]
    )
    return ExploreData(
        text=text,
        sentences=sentences,
        char_spans=spans,
        tags=tags,
        anchor_scores=anchor_scores,
        vertical_scores=vertical,
        sentence_attention=attention.astype(np.float32),
        receiver_heads=receiver,
        meta={"synthetic": True, "model": "synthetic", "score_variant": "raw"},
    )
