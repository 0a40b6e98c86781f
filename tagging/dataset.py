"""The labelled training data: the bundled Thought Anchors math traces, sentence by sentence.

Sentences come from `split_sentences(full_cot, rules="thought-anchors")`, which reproduces the labelled
chunks exactly (whitespace aside), so every sentence carries its own GPT-4o label: the chunk's **first**
function tag. (The shipped pipeline splits by the `"default"` rules at inference time, whose sentences
are unions of these pieces: see `stream_widgets.sentences`.) The scenario traces (another splitter,
another domain) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_widgets.data import list_bundled_traces, load_bundled_trace
from stream_widgets.sentences import split_sentences

TRAINING_SENTENCE_RULES = "thought-anchors"
"""The `split_sentences` rule set of the training and evaluation data: the labelled chunks themselves."""

__all__ = ["TRAINING_SENTENCE_RULES", "LabelledTrace", "labelled_traces"]


@dataclass(frozen=True)
class LabelledTrace:
    """One trace's sentences and tags.

    Attributes:
        name: Bundled trace name.
        problem_id: Problem the trace solves (the cross-validation group).
        sentences: `[S]` sentence texts.
        tags: `[S]` first function tags (`"unknown"` for the rare unlabelled chunk).
    """

    name: str
    problem_id: str
    sentences: tuple[str, ...]
    tags: tuple[str, ...]


def labelled_traces() -> list[LabelledTrace]:
    """Load every bundled math trace as a `LabelledTrace` (a few hundred ms)."""
    out = []
    for name in list_bundled_traces():
        trace = load_bundled_trace(name)
        if not trace.is_math:
            continue
        sentences = tuple(s.text for s in split_sentences(trace.full_cot, rules=TRAINING_SENTENCE_RULES))
        assert len(sentences) == len(trace.chunks), name  # guaranteed by tests/test_sentences.py
        out.append(LabelledTrace(name, trace.problem_id, sentences, tuple(trace.labels)))
    return out
