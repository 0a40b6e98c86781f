"""Plain data behind the explorer widget and the standalone report.

`ExploreData` holds everything the views show, as numpy arrays, strings and tags: the trace text, its
sentences and their character spans, one function tag (and its confidence) per sentence, anchor and
per-head vertical scores, the sentence x sentence attention of every (layer, head), optional evidence
scores, an optional suppression matrix and optional token-level rows. It never holds a model, and never
a T x T matrix, so the views stay independent of how the numbers were computed.

The tag vocabulary and colours are data too: `tag_colors` given with the data, or `DEFAULT_TAG_COLORS`
(keyed by tag name; any other tag gets `FALLBACK_TAG_COLOR`). Importing this module imports numpy only
(no Bokeh, no ipywidgets, no spaCy, no torch, no `tagging`: `stream_widgets.ruler.routes` is imported only to
check a route that is given).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stream_widgets.ruler.routes import Route

__all__ = [
    "DEFAULT_TAG_COLORS",
    "FALLBACK_TAG_COLOR",
    "ExploreData",
    "TokenView",
    "synthetic_example",
]

#: Default colour per function tag name (Okabe-Ito hues, wine instead of black so text stays readable;
#: grey for "unknown"). Keyed by the Thought Anchors tag names; the views look tags up by name.
DEFAULT_TAG_COLORS: dict[str, str] = {
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

#: Colour of a tag that `tag_colors` does not name.
FALLBACK_TAG_COLOR = "#666666"

_HEX_COLOR = set("0123456789abcdefABCDEF")


@dataclass
class TokenView:
    """Recorded token-level attention of a few heads, pooled over keys, for the token view.

    Query rows are kept per token (a sentence's rows are `values[r, start:end]` for its token span); keys
    are pooled into `B` contiguous bins over the whole text, so no T x T array exists. Memory:
    `4 * R * T * B` bytes (1 head, 8k tokens, 160 bins: 5 MB); the views send one sentence's rows of one
    head at a time (the report: every sentence's rows, quantised to 8 bits, within its byte budget).

    Attributes:
        heads: `R` recorded `(layer, head)` pairs (layer indexes `ExploreData.sentence_attention`).
        tokens: `T` token strings, for labels and tooltips.
        bin_edges: `[B + 1]` int token positions, from 0 to T, strictly increasing: bin b holds keys
            `bin_edges[b] <= k < bin_edges[b + 1]`.
        values: `[R, T, B]` float32: the attention probability query token t pays to the keys of bin b,
            summed over the bin (0 where the mask pruned), as the trace recorded it.
    """

    heads: list[tuple[int, int]]
    tokens: list[str]
    bin_edges: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.heads = [(int(layer), int(head)) for layer, head in self.heads]
        self.tokens = [str(t) for t in self.tokens]
        self.bin_edges = np.asarray(self.bin_edges, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float32)
        t, edges = len(self.tokens), self.bin_edges
        if not self.heads:
            raise ValueError("TokenView.heads is empty; give the recorded (layer, head) pairs")
        if (
            edges.ndim != 1
            or edges.size < 2
            or edges[0] != 0
            or edges[-1] != t
            or (np.diff(edges) <= 0).any()
        ):
            raise ValueError(
                f"TokenView.bin_edges must increase strictly from 0 to T = {t} (the token count), got {edges[:5]}..."
            )
        shape = (len(self.heads), t, edges.size - 1)
        if self.values.shape != shape:
            raise ValueError(f"TokenView.values must have shape [R, T, B] = {shape}, got {self.values.shape}")
        if not np.isfinite(self.values).all():
            raise ValueError("TokenView.values has NaN or infinite values")

    @property
    def n_bins(self) -> int:
        """B, the number of key bins."""
        return int(self.bin_edges.size - 1)

    def bin_text(self, width: int = 40) -> list[str]:
        """Per key bin, the start of the text of its tokens (at most `width` characters), for tooltips."""
        out = []
        for b in range(self.n_bins):
            piece = " ".join("".join(self.tokens[self.bin_edges[b] : self.bin_edges[b + 1]]).split())
            out.append(piece if len(piece) <= width else piece[: width - 3] + "...")
        return out


@dataclass
class ExploreData:
    """Sentence-level results of one trace, ready to view.

    Shapes use `S` sentences, `L` layers, `H` heads. Memory: `sentence_attention` is `4 * L * H * S * S`
    bytes (30 layers x 9 heads x 200 sentences: 43 MB); the views send at most one `S x S` matrix
    (pooled to at most a few hundred bins per axis) to the notebook at a time.

    Attributes:
        text: The trace text the character spans index into.
        sentences: `S` sentence strings.
        char_spans: `S` half-open `(start, end)` character spans into `text`, in order, not overlapping.
        tags: `S` function tags (any names; colours come from `tag_colors`).
        anchor_scores: `[S]` anchor score per sentence (mean vertical score over the receiver heads);
            NaN for a sentence that cannot be scored (too few later sentences): never drawn as 0.
        vertical_scores: `[L, H, S]` every head's vertical score per sentence (same variant as the
            anchor score, `meta["score_variant"]`), NaN where not scored; the anchor bars show one
            head's row when a single head is picked.
        sentence_attention: `[L, H, S, S]` float32; cell `(l, h, i, j)` is the mean token attention
            probability from sentence `i` to sentence `j` at layer `l`, head `h`. Lower-triangular.
        receiver_heads: `(layer, head)` pairs averaged for the anchor score, at least one.
        tag_confidence: `[S]` the tagger's probability of each sentence's tag, in [0, 1]; NaN where not
            known (e.g. tags given by hand). None: all NaN.
        tagger_tags: The tagger's own tags when some `tags` are a user's corrections
            (`views.corrections`); None when `tags` are the tagger's.
        tag_colors: Tag name -> `#rrggbb` colour; None for `DEFAULT_TAG_COLORS`. Tags it lacks get
            `FALLBACK_TAG_COLOR`.
        tag_vocabulary: The tags a correction may choose from, in display order; None for the keys of
            `tag_colors` (or `DEFAULT_TAG_COLORS`). Tags present in `tags` are always added.
        layer_head_labels: Optional `(layer_labels, head_labels)` with `L` and `H` display names.
        meta: Free-form facts shown in titles and written to the report summary. Keys the views read:
            `model`, `sparsity`, `score_variant`, `min_later`, `proximity_ignore`, `receiver_heads_source`,
            `title`, `synthetic`; `tokens` (the text's token count T) bounds `token_spans` and the route.
        token_spans: Optional `S` half-open `(start, end)` token spans, in order, not overlapping.
        route: Optional needle route (`stream_widgets.ruler.routes.Route` or its `to_dict()`) over the same text.
        evidence: Score name -> `[S]` float per sentence (NaN where not available), shown beside the
            anchor score: e.g. ``"position baseline"``, ``"suppression importance"``,
            ``"counterfactual_importance_kl"``.
        suppression: Optional `[S, S]` causal attention-suppression matrix: cell `(i, j)` is the effect
            (KL) on sentence `i`'s token predictions of masking all attention to sentence `j` (`j < i`).
        token_view: Optional `TokenView` of recorded token-level weights (needs `token_spans`).
    """

    text: str
    sentences: list[str]
    char_spans: list[tuple[int, int]]
    tags: list[str]
    anchor_scores: np.ndarray
    vertical_scores: np.ndarray
    sentence_attention: np.ndarray
    receiver_heads: list[tuple[int, int]]
    tag_confidence: np.ndarray | None = None
    tagger_tags: list[str] | None = None
    tag_colors: Mapping[str, str] | None = None
    tag_vocabulary: Sequence[str] | None = None
    layer_head_labels: tuple[Sequence[str], Sequence[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    token_spans: list[tuple[int, int]] | None = None
    route: Route | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    suppression: np.ndarray | None = None
    token_view: TokenView | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"ExploreData.text must be str, got {type(self.text).__name__}")
        self.sentences = [str(s) for s in self.sentences]
        n = len(self.sentences)
        if n == 0:
            raise ValueError("ExploreData.sentences is empty: a trace needs at least one sentence to view")
        if not isinstance(self.meta, dict):
            raise TypeError(f"ExploreData.meta must be a dict, got {type(self.meta).__name__}")
        self._check_spans(n)
        self._check_tags(n)
        self.anchor_scores = _vector("anchor_scores", self.anchor_scores, n)
        self._check_attention(n)
        self._check_vertical(n)
        self._check_receiver_heads()
        self._check_labels()
        self._check_token_spans(n)
        self._check_route()
        self._check_evidence(n)
        self._check_suppression(n)
        self._check_token_view()

    # ------------------------------------------------------------------ validation

    def _check_spans(self, n: int) -> None:
        self.char_spans = _ordered_spans(
            "char_spans", self.char_spans, n, len(self.text), f"the text (length {len(self.text)})"
        )

    def _check_tags(self, n: int) -> None:
        self.tags = [str(t) for t in self.tags]
        if len(self.tags) != n:
            raise ValueError(f"ExploreData.tags has {len(self.tags)} tags for {n} sentences")
        colors = dict(DEFAULT_TAG_COLORS if self.tag_colors is None else self.tag_colors)
        for tag, color in colors.items():
            if not (
                isinstance(color, str)
                and len(color) == 7
                and color[0] == "#"
                and set(color[1:]) <= _HEX_COLOR
            ):
                raise ValueError(f"ExploreData.tag_colors[{tag!r}] = {color!r}: give a '#rrggbb' colour")
        self.tag_colors = {str(k): v for k, v in colors.items()}
        if self.tagger_tags is not None:
            self.tagger_tags = [str(t) for t in self.tagger_tags]
            if len(self.tagger_tags) != n:
                raise ValueError(
                    f"ExploreData.tagger_tags has {len(self.tagger_tags)} tags for {n} sentences"
                )
        vocabulary = (
            list(self.tag_colors) if self.tag_vocabulary is None else [str(t) for t in self.tag_vocabulary]
        )
        vocabulary += [t for t in dict.fromkeys(self.tags + (self.tagger_tags or [])) if t not in vocabulary]
        self.tag_vocabulary = vocabulary
        if self.tag_confidence is None:
            self.tag_confidence = np.full(n, np.nan)
        confidence = _vector("tag_confidence", self.tag_confidence, n, allow_nan=True)
        if ((confidence < 0) | (confidence > 1)).any():
            raise ValueError("ExploreData.tag_confidence must lie in [0, 1] (NaN where not known)")
        self.tag_confidence = confidence

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

    def _check_vertical(self, n: int) -> None:
        vertical = np.asarray(self.vertical_scores, dtype=np.float64)
        shape = (*self.sentence_attention.shape[:2], n)
        if vertical.shape != shape:
            raise ValueError(
                f"ExploreData.vertical_scores must have shape [L, H, S] = {shape} (every head's vertical "
                f"score), got {vertical.shape}"
            )
        if np.isinf(vertical).any():
            raise ValueError("ExploreData.vertical_scores has infinite values (use NaN for not scored)")
        self.vertical_scores = vertical

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

    def _check_evidence(self, n: int) -> None:
        if not isinstance(self.evidence, Mapping):
            raise TypeError(
                f"ExploreData.evidence must be a dict name -> [S] scores, got {type(self.evidence).__name__}"
            )
        evidence = {}
        for name, values in self.evidence.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"ExploreData.evidence names must be non-empty strings, got {name!r}")
            evidence[name] = _vector(f"evidence[{name!r}]", values, n, allow_nan=True)
        self.evidence = evidence

    def _check_suppression(self, n: int) -> None:
        if self.suppression is None:
            return
        matrix = np.asarray(self.suppression, dtype=np.float64)
        if matrix.shape != (n, n):
            raise ValueError(
                f"ExploreData.suppression must have shape [S, S] = ({n}, {n}), got {matrix.shape}"
            )
        if np.isinf(matrix).any():
            raise ValueError("ExploreData.suppression has infinite values (use NaN for not measured)")
        self.suppression = matrix

    def _check_token_view(self) -> None:
        view = self.token_view
        if view is None:
            return
        if not isinstance(view, TokenView):
            raise TypeError(f"ExploreData.token_view must be a TokenView or None, got {type(view).__name__}")
        if self.token_spans is None:
            raise ValueError(
                "ExploreData.token_view needs token_spans (which tokens belong to which sentence)"
            )
        tokens = self._token_count()
        if tokens is not None and len(view.tokens) != tokens:
            raise ValueError(
                f"ExploreData.token_view has {len(view.tokens)} tokens, meta['tokens'] = {tokens}"
            )
        if self.token_spans[-1][1] > len(view.tokens):
            raise ValueError("ExploreData.token_spans reach past the token view's tokens")
        for layer, head in view.heads:
            if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
                raise ValueError(f"ExploreData.token_view.heads has ({layer}, {head}) outside L, H")

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

    @property
    def scored(self) -> np.ndarray:
        """`[S]` bool: sentences with an anchor score (not NaN)."""
        return ~np.isnan(self.anchor_scores)

    @property
    def corrected(self) -> list[bool]:
        """`S` flags: the tag is a user's correction (differs from `tagger_tags`)."""
        if self.tagger_tags is None:
            return [False] * self.n_sentences
        return [a != b for a, b in zip(self.tags, self.tagger_tags, strict=True)]

    def tag_color(self, tag: str) -> str:
        """The colour of `tag` (`FALLBACK_TAG_COLOR` for a tag `tag_colors` does not name)."""
        return self.tag_colors.get(tag, FALLBACK_TAG_COLOR)

    def tags_present(self) -> list[str]:
        """The tags used by at least one sentence, in `tag_vocabulary` order."""
        used = set(self.tags)
        return [t for t in self.tag_vocabulary if t in used]

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
        """Indices of up to `k` scored sentences with the highest anchor score, best first (ties: earlier
        first); unscored sentences (NaN) never rank."""
        order = np.argsort(-np.nan_to_num(self.anchor_scores, nan=-np.inf), kind="stable")
        return [int(i) for i in order[:k] if self.scored[i]]

    def __repr__(self) -> str:
        return (
            f"ExploreData(S={self.n_sentences}, scored={int(self.scored.sum())}, L={self.n_layers}, "
            f"H={self.n_heads}, receiver_heads={len(self.receiver_heads)}, tags={len(self.tags_present())} used, "
            f"evidence={sorted(self.evidence)}, suppression={'yes' if self.suppression is not None else 'no'}, "
            f"token_view={'yes' if self.token_view is not None else 'no'}, "
            f"route={'yes' if self.route is not None else 'no'}, meta keys={sorted(self.meta)})"
        )


def _vector(name: str, values: Any, n: int, allow_nan: bool = True) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"ExploreData.{name} must have shape [S] = ({n},), got {array.shape}")
    if np.isinf(array).any() or (not allow_nan and np.isnan(array).any()):
        raise ValueError(f"ExploreData.{name} has infinite values; give finite scores (NaN: not scored)")
    return array


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


def synthetic_example(
    S: int = 40, L: int = 4, H: int = 3, seed: int = 0, *, min_later: int = 4, tokens: bool = False
) -> ExploreData:
    """A random, valid `ExploreData` for tests and API examples; not a real trace.

    Sentences are numbered filler text; attention rows are random causal distributions with a recency
    bump and a few "anchor" columns that many later sentences attend to. Vertical scores are the raw
    Thought Anchors score (mean of column j over rows i >= j + 4), NaN for the last sentences with fewer
    than `min_later` such rows. Tag confidences are random in [0.3, 1]; evidence holds a position
    baseline. Never use it for figures that claim to show a model.

    Args:
        S: Number of sentences.
        L: Number of layers.
        H: Number of heads per layer.
        seed: Seed of the numpy generator.
        min_later: Later sentences a sentence needs to be scored.
        tokens: Also give token spans (6 tokens per sentence) and a `TokenView` of two heads.

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
    tag_cycle = list(DEFAULT_TAG_COLORS)[:8]
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
    vertical = np.full((L, H, S), np.nan)
    for j in range(S):
        if S - (j + 4) >= min_later:
            vertical[..., j] = attention[:, :, j + 4 :, j].mean(axis=-1)
    receiver = sorted(
        {(int(layer), int(h)) for layer, h in zip(rng.integers(0, L, 3), rng.integers(0, H, 3), strict=True)}
    )
    layers, heads = zip(*receiver, strict=True)
    anchor_scores = vertical[list(layers), list(heads)].mean(axis=0)
    token_spans, token_view, meta = (
        None,
        None,
        {"synthetic": True, "model": "synthetic", "score_variant": "raw"},
    )
    meta.update(min_later=min_later, proximity_ignore=4)
    if tokens:
        per = 6
        token_spans = [(i * per, (i + 1) * per) for i in range(S)]
        t = S * per
        edges = np.unique(np.linspace(0, t, min(t, 64) + 1).round().astype(np.int64))
        weights = rng.random((2, t, t)).astype(np.float32) * np.tril(np.ones((t, t), np.float32))
        weights /= weights.sum(axis=-1, keepdims=True)
        values = np.add.reduceat(weights, edges[:-1], axis=-1)
        token_view = TokenView(
            heads=[(0, 0), (L - 1, H - 1)], tokens=[f"t{k}" for k in range(t)], bin_edges=edges, values=values
        )
        meta["tokens"] = t
    return ExploreData(
        text=text,
        sentences=sentences,
        char_spans=spans,
        tags=tags,
        anchor_scores=anchor_scores,
        vertical_scores=vertical,
        sentence_attention=attention.astype(np.float32),
        receiver_heads=receiver,
        tag_confidence=rng.uniform(0.3, 1.0, S),
        evidence={"position baseline": 1.0 - np.arange(S, dtype=np.float64) / max(S - 1, 1)},  # earlier first
        token_spans=token_spans,
        token_view=token_view,
        meta=meta,
    )
