"""The function tags of Thought Anchors (Bogdan et al., 2025), in a fixed order."""

from __future__ import annotations

__all__ = ["ALL_TAGS", "FUNCTION_TAGS", "UNKNOWN_TAG"]

FUNCTION_TAGS: tuple[str, ...] = (
    "problem_setup",
    "plan_generation",
    "fact_retrieval",
    "active_computation",
    "result_consolidation",
    "uncertainty_management",
    "final_answer_emission",
    "self_checking",
)
"""The 8 tags a sentence can get."""

UNKNOWN_TAG = "unknown"
"""The tag of a sentence the tagger cannot place (empty text, or below the confidence threshold)."""

ALL_TAGS: tuple[str, ...] = (*FUNCTION_TAGS, UNKNOWN_TAG)
"""`FUNCTION_TAGS` plus `UNKNOWN_TAG`: the keys of `Span._.function_tag_scores`."""
