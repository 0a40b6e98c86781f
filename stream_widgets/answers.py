"""The answer a continuation gives, normalised, and how answer distributions compare (after Thought Anchors).

* **Answers**: the first non-empty ``\\boxed{...}`` (balanced braces) of a continuation, else its last
  number (a continuation cut by ``max_new_tokens`` may never box its answer), else none. Normalised as
  Thought Anchors' ``normalize_latex`` (lower case, no spaces, ``dfrac`` -> ``frac``, no ``\\%``,
  ``\\times`` -> ``*``, simple braces dropped, ``\\text{...}`` unwrapped) plus: ``$``/``%`` dropped,
  thousands separators read as such (Thought Anchors' rule turns ``1,000`` into ``1.000``), a trailing
  unit word dropped (``9 dollars``), and numbers compared by value (``9.00`` = ``9``). An answer is
  correct when its normalised form equals the reference's (no sympy equivalence).
* **KL of two answer distributions** (Thought Anchors' ``calculate_kl_divergence`` with
  ``use_prob_true=False``, the default): counts (or probability mass) of normalised answers, smoothed
  with alpha = 1e-9 over the V answers seen in either set, ``sum_a p(a) log(p(a) / q(a))``, clipped at
  0; 0 when either set is empty.

Plain Python (no torch): `stream_widgets.importance` scores sentences with these, and the own-model
corpus grades its traces with `is_correct`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

__all__ = [
    "ALPHA",
    "answer_accuracy",
    "answer_kl",
    "braced",
    "extract_answer",
    "is_correct",
    "normalize_answer",
]

ALPHA = 1e-9
"""Additive smoothing of answer distributions in the KL (Thought Anchors' default)."""

_BOXED = "\\boxed{"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_UNIT = re.compile(r"^(-?[\d.,]+)([a-z]{2,})$")


def braced(text: str, start: int) -> tuple[str, bool]:
    """The text from `start` up to the brace that closes an already open one; and whether it closed."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i], True
    return text[start:], False


def extract_answer(text: str) -> str | None:
    """The answer a continuation gives: its first non-empty ``\\boxed{...}``, else its last number.

    Args:
        text: A continuation (decoded tokens).

    Returns:
        The raw answer string (not normalised), or None if the text has neither.
    """
    position = text.find(_BOXED)
    while position >= 0:
        inside, _ = braced(text, position + len(_BOXED))
        if inside.strip():
            return inside.strip()
        position = text.find(_BOXED, position + 1)
    numbers = _NUMBER.findall(text)
    return numbers[-1].rstrip(".,") if numbers else None


def normalize_answer(answer: str) -> str:
    """Thought Anchors' ``normalize_latex`` plus number handling (module docstring).

    >>> normalize_answer("\\\\$9.00"), normalize_answer("1,000"), normalize_answer("\\\\dfrac{1}{2}")
    ('9', '1000', '\\\\frac12')
    """
    s = answer.strip().lower()
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    s = re.sub(r"\s+", "", s)
    for junk in ("\\%", "%", "\\$", "$", "{,}", "\\!", "\\,", "\\;"):
        s = s.replace(junk, "")
    s = s.replace("\\times", "*").replace("\\cdot", "*").replace("\\pi", "pi")
    s = s.rstrip(".")
    s = re.sub(r"{([^{}]+)}", r"\1", s)
    unit = _UNIT.match(s)
    if unit and _PLAIN_NUMBER.fullmatch(unit.group(1)):
        s = unit.group(1)
    if _PLAIN_NUMBER.fullmatch(s):
        try:
            value = Decimal(s.replace(",", "")).normalize()
        except InvalidOperation:
            return s
        s = format(value, "f")
        if s == "-0":
            s = "0"
    return s


def is_correct(answer: str | None, reference: str | None) -> bool | None:
    """Whether `answer` equals `reference` once both are normalised; None without a reference."""
    if reference is None:
        return None
    return answer is not None and normalize_answer(answer) == normalize_answer(reference)


def answer_kl(p: Mapping[str, float], q: Mapping[str, float], alpha: float = ALPHA) -> float:
    """KL(P || Q) of two answer distributions, as Thought Anchors' ``calculate_kl_divergence``.

    Args:
        p, q: Answer -> count (or probability mass); answers with weight 0 count as unseen.
        alpha: Additive smoothing over the V answers seen in either distribution.

    Returns:
        ``sum_a P(a) log(P(a) / Q(a))`` with ``P(a) = (p(a) + alpha) / (|p| + alpha V)``, clipped at 0;
        0.0 when either distribution is empty.
    """
    total_p = sum(v for v in p.values() if v > 0)
    total_q = sum(v for v in q.values() if v > 0)
    if total_p <= 0 or total_q <= 0:
        return 0.0
    answers = {a for a, v in p.items() if v > 0} | {a for a, v in q.items() if v > 0}
    v = len(answers)
    kl = 0.0
    for a in answers:
        pa = (max(p.get(a, 0.0), 0.0) + alpha) / (total_p + alpha * v)
        qa = (max(q.get(a, 0.0), 0.0) + alpha) / (total_q + alpha * v)
        kl += pa * math.log(pa / qa)
    return max(0.0, kl)


def answer_accuracy(weights: Mapping[str, float], reference: str | None) -> float:
    """Share of the weight on answers equal to `reference` (NaN without a reference or any weight)."""
    total = sum(weights.values())
    if reference is None or total <= 0:
        return math.nan
    target = normalize_answer(reference)
    return sum(w for a, w in weights.items() if a == target) / total
