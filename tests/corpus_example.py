"""Labelled corpus inputs for the tiny test model: different reasoning texts in two groups."""

from __future__ import annotations

import numpy as np

from stream_widgets.sentences import split_sentences
from tests.tiny_models import TEXT

BODY = TEXT.split("<think>\n")[1].split("\n</think>")[0]
WORDS = [w for w in BODY.replace("\n\n", " ").split(" ") if w]
TAGS = ("plan_generation", "active_computation", "self_checking", "result_consolidation")


def text(k: int, repeats: int = 3) -> str:
    """A different reasoning text for every k: the body's words rotated by k, repeated."""
    words = WORDS[k % len(WORDS) :] + WORDS[: k % len(WORDS)]
    return "<think>\n" + "\n\n".join([" ".join(words)] * repeats) + "\n</think>\nThe answer is ten."


def records(n: int = 4) -> list[dict]:
    """`n` JSONL records: ids ``trace-k``, groups ``problem-(k // 2)``, a tag and a random importance per
    default sentence."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        body = text(k)
        s = len(split_sentences(body))
        out.append(
            {
                "id": f"trace-{k}",
                "text": body,
                "group": f"problem-{k // 2}",
                "labels": {
                    "function_tag": [TAGS[(i + k) % len(TAGS)] for i in range(s)],
                    "importance": [float(v) for v in rng.random(s)],
                },
            }
        )
    return out
