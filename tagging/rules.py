"""A keyword-rule tagger: the baseline the trained tagger must beat.

The first matching rule wins; a sentence that matches none is `active_computation` (the majority tag).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["RULES", "keyword_tag", "keyword_tags"]

RULES: tuple[tuple[str, str], ...] = (
    ("final_answer_emission", r"\\boxed|final answer|the answer is"),
    ("self_checking", r"let me (check|verify|double|confirm|make sure)|double-check|\bverify\b|\bcheck\b"),
    ("uncertainty_management", r"^(wait|hmm|but wait|hold on|oh)\b|\bnot sure\b|\bmistake\b|\?$"),
    ("result_consolidation", r"^(so|therefore|thus|hence|in total|that means|which means)\b"),
    ("plan_generation", r"^(first|next|now|let me|let's|i need to|i should|maybe i|i think i|to solve)"),
    ("fact_retrieval", r"\b(recall|remember|formula|know that|is defined|by definition|theorem)\b"),
)
"""(tag, case-insensitive pattern), tried in order."""

_COMPILED = tuple((tag, re.compile(pattern, re.IGNORECASE)) for tag, pattern in RULES)


def keyword_tag(text: str, index: int = 1) -> str:
    """Tag one sentence by `RULES`; the first sentence of a trace (`index == 0`) is `problem_setup`."""
    if index == 0:
        return "problem_setup"
    stripped = text.strip()
    for tag, pattern in _COMPILED:
        if pattern.search(stripped):
            return tag
    return "active_computation"


def keyword_tags(trace: Sequence[str]) -> list[str]:
    """`keyword_tag` for every sentence of a trace."""
    return [keyword_tag(text, i) for i, text in enumerate(trace)]
