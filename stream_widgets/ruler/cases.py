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

Scoring the cases (dense vs sparse answers, needle mass, routes) is `stream_widgets.ruler.scoring`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

__all__ = [
    "FILLER",
    "HAYSTACKS",
    "KINDS",
    "NEEDLES",
    "RulerCase",
    "make_cases",
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
        length: T, tokens of `prompt` (as `stream_widgets.tokens.tokenize` counts them).
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
    from stream_widgets.tokens import tokenize

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
        return tokenize(tokenizer, build(n_sentences, words)[0]).num_tokens

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
    tokens = tokenize(tokenizer, text)
    t, offsets = tokens.num_tokens, tokens.offsets
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
