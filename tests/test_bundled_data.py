"""Tests for `BundledTrace.labels_for`: the bundled chunk labels carried over to other sentences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream_widgets.data import (
    IMPORTANCE_COLUMNS,
    BundledTrace,
    SentenceLabels,
    list_bundled_traces,
    load_bundled_trace,
)
from stream_widgets.sentences import Sentence, split_sentences

MATH_TRACES = [name for name in list_bundled_traces() if "/problem_" in name]
DEMO_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"


def _same(a, b) -> bool:
    """Equal sequences of floats, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("name", MATH_TRACES)
def test_identity_on_the_chunks(name):
    trace = load_bundled_trace(name)
    labels = trace.labels_for(split_sentences(trace.full_cot, rules="thought-anchors"))
    assert isinstance(labels, SentenceLabels)
    assert list(labels.function_tags) == trace.labels
    assert labels.chunk_index == tuple(range(len(trace.chunks)))
    assert set(labels.importance) == set(IMPORTANCE_COLUMNS)
    for column in IMPORTANCE_COLUMNS:
        assert _same(labels.importance[column], trace.importance[column]), column


def _expected(trace, sentence: Sentence) -> tuple[str, dict[str, float]]:
    """The documented rule, written out with numpy: the tag of the longest overlap (first on ties), the
    overlap-weighted mean of each column over the chunks where it is defined."""
    shared = np.array(
        [
            max(0, min(end, sentence.char_end) - max(start, sentence.char_start))
            for start, end in trace.chunk_spans
        ]
    )
    tag = trace.labels[int(np.argmax(shared))] if shared.any() else "unknown"
    scores = {}
    for column in IMPORTANCE_COLUMNS:
        values = np.array(trace.importance[column])
        keep = (shared > 0) & ~np.isnan(values)
        scores[column] = float(np.average(values[keep], weights=shared[keep])) if keep.any() else math.nan
    return tag, scores


def test_merged_formula_sentence_of_the_demo_trace():
    trace = load_bundled_trace(DEMO_TRACE)
    sentences = split_sentences(trace.full_cot)
    labels = trace.labels_for(sentences)
    (i,) = [i for i, s in enumerate(sentences) if s.text.endswith("leading to 8! arrangements.")]
    chunks = [
        k
        for k, (a, b) in enumerate(trace.chunk_spans)
        if a < sentences[i].char_end and b > sentences[i].char_start
    ]
    assert [trace.chunks[k] for k in chunks][-1] == "arrangements."  # the fragment is merged in
    longest = max(chunks, key=lambda k: trace.chunk_spans[k][1] - trace.chunk_spans[k][0])
    assert labels.chunk_index[i] == longest and labels.function_tags[i] == trace.labels[longest]
    tag, scores = _expected(trace, sentences[i])
    assert labels.function_tags[i] == tag
    for column in IMPORTANCE_COLUMNS:
        assert math.isclose(labels.importance[column][i], scores[column], rel_tol=1e-12), column
    # the weighted mean lies strictly between the two chunk values (0.007 and 0.252 here)
    kl = [trace.importance["counterfactual_importance_kl"][k] for k in chunks]
    assert min(kl) < labels.importance["counterfactual_importance_kl"][i] < max(kl)


@pytest.mark.parametrize("name", list_bundled_traces())
def test_default_sentences_follow_the_rule(name):
    trace = load_bundled_trace(name)
    sentences = split_sentences(trace.full_cot)
    labels = trace.labels_for(sentences)
    assert len(labels.function_tags) == len(sentences) and -1 not in labels.chunk_index
    for i, sentence in enumerate(sentences):
        tag, scores = _expected(trace, sentence)
        assert labels.function_tags[i] == tag
        for column in IMPORTANCE_COLUMNS:
            found = labels.importance[column][i]
            assert (math.isnan(found) and math.isnan(scores[column])) or math.isclose(
                found, scores[column], rel_tol=1e-12, abs_tol=1e-15
            )


def test_ties_go_to_the_earlier_chunk_and_nan_is_skipped():
    trace = load_bundled_trace(MATH_TRACES[0])
    spans = trace.chunk_spans
    k = next(k for k in range(len(spans) - 1) if trace.labels[k] != trace.labels[k + 1])
    m = min(5, spans[k][1] - spans[k][0], spans[k + 1][1] - spans[k + 1][0])
    start, end = spans[k][1] - m, spans[k + 1][0] + m
    labels = trace.labels_for([Sentence(0, trace.full_cot[start:end], start, end)])
    assert labels.function_tags == (trace.labels[k],) and labels.chunk_index == (k,)
    # equal overlaps: the plain mean; a chunk where the column is NaN is left out; NaN only if both are
    for column in IMPORTANCE_COLUMNS:
        a, b = trace.importance[column][k], trace.importance[column][k + 1]
        defined = [v for v in (a, b) if not math.isnan(v)]
        found = labels.importance[column][0]
        if defined:
            assert found == pytest.approx(sum(defined) / len(defined), rel=1e-12), column
        else:
            assert math.isnan(found), column


def test_nan_only_when_every_overlapping_chunk_is_nan():
    """A small hand-made trace (the bundled math traces have no NaN scores)."""
    text = "Prompt <think>We add 2 and 3. The sum is 5! Then we stop here.</think>"
    chunks = tuple(s.text for s in split_sentences(text, rules="thought-anchors"))
    assert chunks == ("We add 2 and 3.", "The sum is 5!", "Then we stop here.")
    nan = math.nan
    columns = {c: (0.0, 0.0, 0.0) for c in IMPORTANCE_COLUMNS}
    columns["accuracy"] = (nan, 0.5, 1.0)
    columns["forced_importance_kl"] = (nan, nan, 2.0)
    trace = BundledTrace(
        name="m/c/problem_0",
        model="m",
        problem_id="problem_0",
        is_math=True,
        full_cot=text,
        chunks=chunks,
        function_tags=(("active_computation",), ("result_consolidation",), ("final_answer_emission",)),
        importance=columns,
    )
    merged = text.index("We add"), text.index(" Then")  # the first two chunks as one sentence
    labels = trace.labels_for([Sentence(0, text[merged[0] : merged[1]], *merged)])
    assert labels.function_tags == ("active_computation",)  # 15 shared characters against 13
    assert labels.importance["accuracy"] == (0.5,)  # the NaN chunk is left out
    assert math.isnan(labels.importance["forced_importance_kl"][0])  # NaN in both chunks
    every = trace.labels_for(split_sentences(text))  # "5! Then" is cut: a capital follows
    assert every.importance["forced_importance_kl"][2] == 2.0


def test_prefix_and_outside_sentences():
    trace = load_bundled_trace(DEMO_TRACE)
    full = split_sentences(trace.full_cot)
    prefix = split_sentences(trace.full_cot[: full[20].char_end])
    assert [s.text for s in prefix] == [s.text for s in full[:21]]
    assert trace.labels_for(prefix).function_tags == trace.labels_for(full).function_tags[:21]
    prompt = Sentence(0, trace.full_cot[:10], 0, 10)  # before <think>: no chunk there
    outside = trace.labels_for([prompt])
    assert outside.function_tags == ("unknown",) and outside.chunk_index == (-1,)
    assert all(math.isnan(v[0]) for v in outside.importance.values())
    assert trace.labels_for([]).function_tags == ()


def test_scenario_chunks_are_found_in_the_text():
    trace = load_bundled_trace("scenario_0")
    assert not trace.is_math and len(trace.chunk_spans) == len(trace.chunks)
    assert all(trace.full_cot[a:b] == c for (a, b), c in zip(trace.chunk_spans, trace.chunks, strict=True))
    labels = trace.labels_for(split_sentences(trace.full_cot))
    assert -1 not in labels.chunk_index


def test_sentences_of_another_text_are_rejected():
    trace = load_bundled_trace(DEMO_TRACE)
    other = split_sentences(load_bundled_trace(MATH_TRACES[0]).full_cot)
    with pytest.raises(ValueError, match="not a span of"):
        trace.labels_for(other)
