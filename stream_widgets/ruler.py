"""RULER-style needle-in-a-haystack cases, and scoring them under dense and Stream-sparse attention.

A case hides one or more needles ("The special magic number for apple is 4827193.") in a haystack of
filler sentences (RULER's "The grass is green. ...") or of real reasoning text (the bundled Thought
Anchors traces), then asks for the number(s). Four kinds, as in RULER's NIAH tasks:

* ``single``: one needle, asked for.
* ``multikey``: one needle asked for among `NEEDLES` - 1 distractor needles with other keys.
* ``multivalue``: `NEEDLES` needles with the same key; all their numbers are asked for.
* ``multiquery``: `NEEDLES` needles with different keys; all of them are asked for.

The prompt uses the tokenizer's chat template when it has one and ends with the start of the answer
("The special magic number for apple mentioned in the provided text is"), as RULER's answer prefix
does, so the model only has to emit the digits. A case stores the needles' token spans (of the same
tokenisation the tracer uses), the expected answers, the depth and the length.

`score_case` answers a case greedily twice -- with the model's own (dense) attention and with Stream
``sparse`` attention -- and measures, in ``observe`` mode, how much of the attention the final query
positions pay to the needle tokens the Stream mask keeps (`stream_widgets.routes`).

Cost of `score_case`: two forward passes over the prompt (observe with the dense model's KV cache, and
sparse) plus a few cached decoding steps; the observe pass keeps every layer's queries and keys
(L x (H + Hkv) x T x D floats: ~0.75 GB for SmolLM2 at 8k tokens) for the needle mass and the route.
"""

from __future__ import annotations

import contextlib
import random
import re
from dataclasses import asdict, dataclass, field

__all__ = [
    "FILLER",
    "HAYSTACKS",
    "KINDS",
    "NEEDLES",
    "RulerCase",
    "RulerResult",
    "format_table",
    "make_cases",
    "run_ruler",
    "score_case",
    "summarize",
]

KINDS = ("single", "multikey", "multivalue", "multiquery")
HAYSTACKS = ("filler", "traces")
#: Needles per case for the multi-needle kinds (RULER uses 4 as well).
NEEDLES = 4
#: RULER's noise haystack, repeated.
FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
_KEYS = (
    "apple",
    "river",
    "candle",
    "forest",
    "violin",
    "harbor",
    "pepper",
    "glacier",
    "lantern",
    "meadow",
    "rocket",
    "saddle",
    "tunnel",
    "walnut",
    "zebra",
    "anchor",
    "bishop",
    "copper",
    "dolphin",
    "ember",
    "falcon",
    "garnet",
    "hammer",
    "island",
    "jasmine",
    "kettle",
    "lemon",
    "marble",
    "nectar",
    "orchid",
)
_INSTRUCTION = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize them. "
    "I will quiz you about the numbers afterwards."
)
# Length tolerance of a case: the prompt is within this many tokens below the requested length.
_SLACK = 24


@dataclass(frozen=True)
class RulerCase:
    """One needle-in-a-haystack prompt and what it should be answered with.

    Attributes:
        kind: One of `KINDS`.
        haystack: ``"filler"`` or ``"traces"``.
        prompt: The full text given to the model, ending with the answer prefix.
        answers: The expected numbers, in needle order (``multiquery``: in question order).
        keys: The keys asked about (one, except for ``multiquery``).
        needle_spans: ``[start, end)`` token spans of the needles that are asked about.
        value_spans: ``[start, end)`` token spans of their numbers (inside `needle_spans`).
        distractor_spans: ``[start, end)`` token spans of needles not asked about (``multikey``).
        depth: Where the first asked-about needle sits, as a share of the haystack (0 = start, 1 = end).
        length: T, tokens of `prompt` (as `stream_widgets.tracer.tokenize` counts them).
        seed: The seed the case was drawn with.
    """

    kind: str
    haystack: str
    prompt: str
    answers: tuple[str, ...]
    keys: tuple[str, ...]
    needle_spans: tuple[tuple[int, int], ...]
    value_spans: tuple[tuple[int, int], ...]
    distractor_spans: tuple[tuple[int, int], ...]
    depth: float
    length: int
    seed: int

    def to_dict(self, prompt: bool = False) -> dict:
        """JSON-ready dict; the prompt text only if `prompt` is True (it is long)."""
        data = asdict(self)
        if not prompt:
            del data["prompt"]
        return data

    def __repr__(self) -> str:
        return (
            f"RulerCase(kind={self.kind!r}, haystack={self.haystack!r}, T={self.length}, depth={self.depth:.2f}, "
            f"keys={self.keys}, answers={self.answers})"
        )


# ----------------------------------------------------------------- generator
def _check_args(kind, n, length_tokens, depth, haystack, value_digits) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if haystack not in HAYSTACKS:
        raise ValueError(f"haystack must be one of {HAYSTACKS}, got {haystack!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(length_tokens, int) or length_tokens < 128:
        raise ValueError(
            f"length_tokens must be an int >= 128 (room for the question and needles), got {length_tokens!r}"
        )
    depths = depth if isinstance(depth, list | tuple) else [depth]
    for d in depths:
        if d is not None and not 0.0 <= float(d) <= 1.0:
            raise ValueError(f"depth must be in [0, 1] (or None for random depths), got {d!r}")
    if not isinstance(value_digits, int) or not 1 <= value_digits <= 12:
        raise ValueError(f"value_digits must be an int in [1, 12], got {value_digits!r}")


def _sentence_pool(haystack: str, rng: random.Random) -> list[str]:
    if haystack == "filler":
        return list(FILLER)
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    names = list(list_bundled_traces())
    rng.shuffle(names)
    pool: list[str] = []
    for name in names:
        pool.extend(c.strip().replace("\n", " ") for c in load_bundled_trace(name).chunks if c.strip())
    return pool


def _questions(kind: str, keys: list[str]) -> tuple[str, str]:
    """``(question, answer prefix)`` for the asked-about keys."""
    if kind in ("single", "multikey"):
        return (
            f"What is the special magic number for {keys[0]} mentioned in the provided text?",
            f"The special magic number for {keys[0]} mentioned in the provided text is",
        )
    if kind == "multivalue":
        return (
            f"What are all the special magic numbers for {keys[0]} mentioned in the provided text?",
            f"The special magic numbers for {keys[0]} mentioned in the provided text are",
        )
    listed = ", ".join(keys[:-1]) + f" and {keys[-1]}"
    return (
        f"What are the special magic numbers for {listed} mentioned in the provided text?",
        f"The special magic numbers for {listed} mentioned in the provided text are",
    )


def _wrap(tokenizer, context: str, question: str, prefix: str) -> str:
    user = f"{_INSTRUCTION}\n\n{context}\n\n{question}"
    if getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return head + prefix
    return f"{user}\nAnswer: {prefix}"


def _token_span(offsets, start: int, end: int) -> tuple[int, int]:
    """Tokens overlapping the characters ``[start, end)``."""
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    assert inside, "needle characters map to no token"
    return inside[0], inside[-1] + 1


def _one_case(kind, haystack, length_tokens, depth, tokenizer, rng, seed, value_digits) -> RulerCase:
    from stream_widgets.tracer import tokenize

    count = 1 if kind == "single" else NEEDLES
    key_list = rng.sample(_KEYS, count if kind != "multivalue" else 1)
    lo, hi = 10 ** (value_digits - 1), 10**value_digits - 1
    values = [str(rng.randint(lo, hi)) for _ in range(count)]
    needle_keys = key_list * count if kind == "multivalue" else key_list
    needles = [f"The special magic number for {k} is {v}." for k, v in zip(needle_keys, values, strict=True)]
    asked = [0] if kind == "multikey" else list(range(count))
    depth = rng.random() if depth is None else float(depth)
    depths = [depth] + [rng.random() for _ in range(count - 1)]

    asked_keys = [needle_keys[i] for i in asked] if kind != "multivalue" else key_list
    question, prefix = _questions(kind, asked_keys)
    pool = _sentence_pool(haystack, rng)
    start = rng.randrange(len(pool))

    def build(n_sentences: int, words: int = 0) -> tuple[str, list[int]]:
        sentences = [pool[(start + i) % len(pool)] for i in range(n_sentences)]
        if words:  # a cut-off piece of the next sentence fills the last few tokens
            sentences.append(" ".join(pool[(start + n_sentences) % len(pool)].split()[:words]))
        n = len(sentences)
        # Needles go between sentences at their depth (by sentence count: sentences are short).
        slots = sorted(range(count), key=lambda i: (round(depths[i] * n), i))
        pieces, placed = [], 0
        for s in range(n + 1):
            while placed < count and round(depths[slots[placed]] * n) <= s:
                pieces.append(needles[slots[placed]])
                placed += 1
            if s < n:
                pieces.append(sentences[s])
        context = " ".join(pieces)
        text = _wrap(tokenizer, context, question, prefix)
        offset = text.index(context)
        return text, [offset + context.index(needle) for needle in needles]

    def length(n_sentences: int, words: int = 0) -> int:
        return tokenize(tokenizer, build(n_sentences, words)[0])[0].shape[1]

    base = length(0)
    if base + _SLACK >= length_tokens:
        raise ValueError(
            f"length_tokens={length_tokens} leaves no room for a haystack: the question and "
            f"needles alone take {base} tokens"
        )
    # The most whole sentences that fit (binary search; lengths grow with n), then part of the next one.
    lo, hi = 0, 1
    while length(hi) <= length_tokens:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if length(mid) <= length_tokens else (lo, mid)
    words = 0
    next_words = len(pool[(start + lo) % len(pool)].split())
    while words < next_words and length(lo, words + 1) <= length_tokens:
        words += 1
    text, starts = build(lo, words)
    ids, offsets = tokenize(tokenizer, text)
    t = ids.shape[1]
    if t < length_tokens - _SLACK:
        raise AssertionError(f"could not fit the haystack to {length_tokens} tokens (got {t})")

    offsets = offsets.tolist()
    spans = [_token_span(offsets, s, s + len(n)) for s, n in zip(starts, needles, strict=True)]
    value_spans = [
        _token_span(offsets, s + len(n) - 1 - len(v), s + len(n) - 1)
        for s, n, v in zip(starts, needles, values, strict=True)
    ]
    return RulerCase(
        kind=kind,
        haystack=haystack,
        prompt=text,
        answers=tuple(values[i] for i in asked),
        keys=tuple(asked_keys),
        needle_spans=tuple(spans[i] for i in asked),
        value_spans=tuple(value_spans[i] for i in asked),
        distractor_spans=tuple(spans[i] for i in range(count) if i not in asked),
        depth=depth,
        length=t,
        seed=seed,
    )


def make_cases(
    kind: str = "single",
    n: int = 1,
    length_tokens: int = 1024,
    depth: float | list[float] | None = None,
    haystack: str = "filler",
    tokenizer=None,
    seed: int = 0,
    value_digits: int = 7,
) -> list[RulerCase]:
    """Draw `n` RULER-style cases, reproducibly.

    Args:
        kind: ``"single"``, ``"multikey"``, ``"multivalue"`` or ``"multiquery"`` (module docstring).
        n: Number of cases.
        length_tokens: Target prompt length T in tokens; each case is within 24 tokens below it.
        depth: Depth of the (first) asked-about needle in [0, 1]: one value for all cases, one per case,
            or None for uniform random depths. Other needles get random depths.
        haystack: ``"filler"`` (RULER's repeated noise sentences) or ``"traces"`` (the bundled reasoning
            traces, real text).
        tokenizer: The model's fast tokenizer (lengths and spans are in its tokens); the default model's
            if None.
        seed: Case i is drawn from ``random.Random(f"{seed}/{i}/{kind}/{haystack}")``: the same arguments
            give the same cases.
        value_digits: Digits of each magic number (RULER uses 7).

    Returns:
        `n` `RulerCase` objects.

    Raises:
        ValueError: For an unknown kind or haystack, a depth outside [0, 1], or a length too short to
            hold the question and needles.
    """
    _check_args(kind, n, length_tokens, depth, haystack, value_digits)
    if isinstance(depth, list | tuple):
        if len(depth) != n:
            raise ValueError(
                f"depth has {len(depth)} values for n={n} cases; give one per case or one for all"
            )
        depths = list(depth)
    else:
        depths = [depth] * n
    if tokenizer is None:
        from stream_widgets.models import load_model

        tokenizer = load_model()[1]
    return [
        _one_case(
            kind,
            haystack,
            length_tokens,
            depths[i],
            tokenizer,
            random.Random(f"{seed}/{i}/{kind}/{haystack}"),
            seed,
            value_digits,
        )
        for i in range(n)
    ]


# ----------------------------------------------------------------- scoring
@dataclass(frozen=True)
class RulerResult:
    """How the model did on one case, dense vs Stream-sparse.

    Attributes:
        case: The case (without its prompt in `to_dict`).
        dense_answer: Greedy answer with the model's own attention (text after the answer prefix).
        sparse_answer: Greedy answer with Stream ``sparse`` attention.
        dense_correct: Every expected number appears among the numbers of `dense_answer` (RULER's
            string-match-all; for one needle: the number was given).
        sparse_correct: The same for `sparse_answer`.
        sparsity: Mean share of causal pairs the sparse pass's masks drop (over layers and heads).
        needle_mass_dense: float ``[L][H]``: attention the final query positions pay to the asked-about
            needle tokens, summed over those positions (true dense probabilities).
        needle_mass_retained: float ``[L][H]``: the part of it at entries the Stream mask keeps.
        query_positions: The final query positions measured.
        route: The needle route (`stream_widgets.routes.Route`), or None if not asked for.
        seconds: Wall-clock time of the scoring.
    """

    case: RulerCase
    dense_answer: str
    sparse_answer: str
    dense_correct: bool
    sparse_correct: bool
    sparsity: float
    needle_mass_dense: list[list[float]]
    needle_mass_retained: list[list[float]]
    query_positions: tuple[int, ...]
    route: object | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def agree(self) -> bool:
        """Dense and sparse answers are the same text."""
        return self.dense_answer.strip() == self.sparse_answer.strip()

    @property
    def needle_mass_kept(self) -> float:
        """Share of the needle attention the mask keeps, over all layers and heads (mass-weighted)."""
        dense = sum(map(sum, self.needle_mass_dense))
        return sum(map(sum, self.needle_mass_retained)) / dense if dense > 0 else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready dict (the case without its prompt; the route as its own dict)."""
        return {
            "case": self.case.to_dict(),
            "dense_answer": self.dense_answer,
            "sparse_answer": self.sparse_answer,
            "dense_correct": self.dense_correct,
            "sparse_correct": self.sparse_correct,
            "agree": self.agree,
            "sparsity": self.sparsity,
            "needle_mass_kept": self.needle_mass_kept,
            "needle_mass_dense": self.needle_mass_dense,
            "needle_mass_retained": self.needle_mass_retained,
            "query_positions": list(self.query_positions),
            "route": None if self.route is None else self.route.to_dict(),
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        mark = {True: "ok", False: "wrong"}
        return (
            f"{self.case.kind:<10} T={self.case.length:<5} depth={self.case.depth:.2f}  "
            f"dense {mark[self.dense_correct]:<5} sparse {mark[self.sparse_correct]:<5} "
            f"sparsity {self.sparsity:.1%}  needle mass kept {self.needle_mass_kept:.3f}  "
            f"expected {','.join(self.case.answers)}  dense {self.dense_answer.strip()[:40]!r}  "
            f"sparse {self.sparse_answer.strip()[:40]!r}"
        )


def is_correct(answer: str, expected: tuple[str, ...]) -> bool:
    """Every expected number appears among the whole numbers in `answer`."""
    found = set(re.findall(r"\d+", answer))
    return all(value in found for value in expected)


def score_case(
    model,
    tokenizer,
    case: RulerCase,
    config=None,
    *,
    route: bool = True,
    num_query_positions: int = 8,
    max_new_tokens: int | None = None,
) -> RulerResult:
    """Answer a case with dense and with Stream-sparse attention; measure the needle mass the mask keeps.

    Args:
        model: A transformers causal LM (see `stream_widgets.load_model`).
        tokenizer: Its fast tokenizer (the one the case was made with).
        case: The case.
        config: Estimator settings; `StreamConfig()` if None.
        route: Also find the needle route (`stream_widgets.routes.find_route`).
        num_query_positions: The final prompt positions whose needle attention is measured (the answer
            prefix, which names the key).
        max_new_tokens: Greedy decoding budget; by default enough for the expected numbers.

    Returns:
        The `RulerResult`.

    Decoding: dense = the observe pass (the model's own attention) fills the KV cache, then the usual
    cached steps; sparse = a Stream ``sparse`` prefill fills the cache with the sparse model's keys and
    values, then each new token attends to the sink, the local window and the `top_k` key blocks with the
    highest max q.k (the exact block top-k for that one query). Cost: two prompt passes + O(T) per step.
    """
    import time

    from stream_widgets.config import StreamConfig
    from stream_widgets.decoding import decode_attention, greedy_tokens
    from stream_widgets.models import check_context_length
    from stream_widgets.routes import capture_attention, find_route, needle_mass
    from stream_widgets.tracer import stream_attention, tokenize

    config = config or StreamConfig()
    started = time.perf_counter()
    input_ids, _ = tokenize(tokenizer, case.prompt)
    if input_ids.shape[1] != case.length:
        raise ValueError(
            f"the case has {case.length} tokens but this tokenizer gives {input_ids.shape[1]}: "
            "score a case with the tokenizer it was made with"
        )
    digits = max(len(a) for a in case.answers)
    # Room for list formatting (":\n\n1. 1234567\n2. ..." or "* key: 1234567"), which SmolLM2 uses for several numbers.
    budget = max_new_tokens or len(case.answers) * (digits + 8) + 8
    check_context_length(model, case.length + budget)
    stop = {
        i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if i is not None
    }
    stop.discard(tokenizer.unk_token_id)

    captured, sparse_run = [], []

    def observe_prefill():
        return _Keep(capture_attention(model, config), captured)

    def sparse_prefill():
        return _Keep(stream_attention(model, config, "sparse"), sparse_run)

    dense_ids = greedy_tokens(model, input_ids, budget, observe_prefill, contextlib.nullcontext, stop)
    sparse_ids = greedy_tokens(
        model, input_ids, budget, sparse_prefill, lambda: decode_attention(model, config), stop
    )
    capture = captured[0]
    sparse_masks = sparse_run[0].stacked()["masks"]
    positions = tuple(range(max(0, case.length - num_query_positions), case.length))
    needle = [p for a, b in case.needle_spans for p in range(a, b)]
    dense_mass, kept_mass = needle_mass(capture, positions, needle)
    found = None
    if route:
        sources = [p for a, b in case.value_spans for p in range(a, b)]
        found = find_route(capture, sources, case.length - 1).labelled(
            tokenizer.convert_ids_to_tokens(input_ids[0].tolist()),
            {"needle": case.needle_spans, "distractor": case.distractor_spans},
        )
    dense_answer = tokenizer.decode(dense_ids, skip_special_tokens=True)
    sparse_answer = tokenizer.decode(sparse_ids, skip_special_tokens=True)
    sparsity = sum(float(m.sparsity()) for m in sparse_masks) / len(sparse_masks)
    return RulerResult(
        case=case,
        dense_answer=dense_answer,
        sparse_answer=sparse_answer,
        dense_correct=is_correct(dense_answer, case.answers),
        sparse_correct=is_correct(sparse_answer, case.answers),
        sparsity=sparsity,
        needle_mass_dense=dense_mass.tolist(),
        needle_mass_retained=kept_mass.tolist(),
        query_positions=positions,
        route=found,
        seconds=time.perf_counter() - started,
    )


def run_ruler(
    model,
    tokenizer,
    lengths: list[int],
    kinds: tuple[str, ...] | list[str] = KINDS,
    cases: int = 1,
    *,
    haystack: str = "filler",
    config=None,
    seed: int = 0,
    route: bool = False,
    progress: bool = True,
) -> list[RulerResult]:
    """Score `cases` cases of every (length, kind); depths spread evenly over [0.1, 0.9].

    Returns:
        The results, length-major then kind.
    """
    todo = [(length, kind) for length in lengths for kind in kinds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo) * cases, desc="RULER cases", unit="case")
    results = []
    depths = [0.1 + 0.8 * i / max(1, cases - 1) for i in range(cases)] if cases > 1 else [0.5]
    for length, kind in todo:
        for case in make_cases(kind, cases, length, depths, haystack, tokenizer, seed):
            results.append(score_case(model, tokenizer, case, config, route=route))
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(str(results[-1])[:60])
    if bar is not None:
        bar.close()
    return results


def summarize(results: list[RulerResult]) -> list[dict]:
    """One row per (length, kind): cases, dense and sparse accuracy, agreement, sparsity, needle mass kept.

    Length is the requested length bucket (the largest power of two >= the case length, for grouping).
    """
    groups: dict[tuple[int, str], list[RulerResult]] = {}
    for r in results:
        bucket = 1 << max(0, (r.case.length - 1).bit_length())
        groups.setdefault((bucket, r.case.kind), []).append(r)
    rows = []
    for (length, kind), rs in sorted(groups.items(), key=lambda g: (g[0][0], KINDS.index(g[0][1]))):
        n = len(rs)
        rows.append(
            {
                "length": length,
                "kind": kind,
                "cases": n,
                "dense_accuracy": sum(r.dense_correct for r in rs) / n,
                "sparse_accuracy": sum(r.sparse_correct for r in rs) / n,
                "agreement": sum(r.agree for r in rs) / n,
                "sparsity": sum(r.sparsity for r in rs) / n,
                "needle_mass_kept": sum(r.needle_mass_kept for r in rs) / n,
                "seconds": sum(r.seconds for r in rs),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of `summarize` as a Markdown table."""
    lines = [
        "| length | kind | cases | dense acc | sparse acc | agreement | sparsity | needle mass kept | s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length']} | {r['kind']} | {r['cases']} | {r['dense_accuracy']:.2f} | {r['sparse_accuracy']:.2f} "
            f"| {r['agreement']:.2f} | {r['sparsity']:.1%} | {r['needle_mass_kept']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


class _Keep(contextlib.AbstractContextManager):
    """Enters a context manager and appends what it yields to a list (to get it out of `greedy_tokens`)."""

    def __init__(self, context, into: list) -> None:
        self.context, self.into = context, into

    def __enter__(self):
        value = self.context.__enter__()
        self.into.append(value)
        return value

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)
