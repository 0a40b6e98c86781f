"""Tests for `stream_widgets.sentences` (both rule sets) and the bundled-trace loader."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_widgets import data as bundled
from stream_widgets.data import list_bundled_traces, load_bundled_trace
from stream_widgets.sentences import (
    DEFAULT_SENTENCE_RULES,
    MIN_SENTENCE_CHARS,
    SENTENCE_RULES,
    Sentence,
    split_sentences,
    think_region,
    token_spans,
)

MATH_TRACES = [name for name in list_bundled_traces() if "/problem_" in name]
DEMO_TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_2189"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_bundled_traces_found():
    assert len(MATH_TRACES) >= 30
    assert all(name.startswith("deepseek-r1-distill-") for name in MATH_TRACES)


@pytest.mark.parametrize("name", MATH_TRACES)
def test_reproduces_thought_anchors_chunks(name):
    trace = load_bundled_trace(name)
    sentences = split_sentences(trace.full_cot, rules="thought-anchors")
    assert [_squash(s.text) for s in sentences] == [_squash(c) for c in trace.chunks]
    for s in sentences:
        assert trace.full_cot[s.char_start : s.char_end] == s.text


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_reference_example(rules):
    text = "Prompt <think>\nOk. So we have x.\n\nWait, is it 2? Yes! Done</think> answer"
    sentences = split_sentences(text, rules)
    # "Ok." (3 chars) merges into the next piece; "Yes!" merges into "Done" -> "Yes! Done" (9) is
    # last and short, so it merges into the previous one.
    assert [s.text for s in sentences] == ["Ok. So we have x.", "Wait, is it 2? Yes! Done"]
    assert [s.index for s in sentences] == [0, 1]
    assert all(text[s.char_start : s.char_end] == s.text for s in sentences)


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_blank_line_and_punctuation_rules(rules):
    text = "First line without stop\n\nSecond sentence here.Third one stays glued?\nFourth piece here"
    assert [s.text for s in split_sentences(text, rules)] == [
        "First line without stop",
        "Second sentence here.Third one stays glued?",
        "Fourth piece here",
    ]


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_no_think_tag_and_unclosed_think(rules):
    assert split_sentences("Plain text. No tags at all.", rules)[1].text == "No tags at all."
    text = "p <think> Reasoning goes on. And never closes"
    assert [s.text for s in split_sentences(text, rules)] == ["Reasoning goes on.", "And never closes"]


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_empty_and_blank_give_nothing(rules):
    assert split_sentences("", rules) == []
    assert split_sentences("  \n\n ", rules) == []
    assert split_sentences("prompt <think>\n\n</think> answer", rules) == []


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_lone_short_sentence_kept(rules):
    assert [s.text for s in split_sentences("Hi.", rules)] == ["Hi."]


def test_non_str_raises_value_error():
    with pytest.raises(ValueError, match="expects a str"):
        split_sentences(b"bytes")  # type: ignore[arg-type]


def test_rule_set_names():
    assert SENTENCE_RULES == ("default", "thought-anchors")
    assert DEFAULT_SENTENCE_RULES == "default"
    text = "The total is 9! / (5! * 2! * 2! * 1!) arrangements."
    assert split_sentences(text) == split_sentences(text, rules="default")
    with pytest.raises(ValueError, match="unknown sentence rules 'ta'; choose one of default, thought-anchors"):
        split_sentences(text, rules="ta")


def test_think_region_strips():
    text = "a<think>  body  </think>"
    start, end = think_region(text)
    assert text[start:end] == "body"


@pytest.mark.parametrize("rules", SENTENCE_RULES)
def test_long_input_is_fast_and_covers_text(rules):
    text = "This is one sentence of a long trace. " * 3000  # ~114k characters
    sentences = split_sentences(text, rules)
    assert len(sentences) == 3000
    assert sentences[-1].char_end == len(text.rstrip())


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .?!\n\t\u00e9\u4e2d")), max_size=200))
def test_properties(text):
    sentences = split_sentences(text, rules="thought-anchors")
    previous_end = 0
    for i, s in enumerate(sentences):
        assert s.index == i
        assert text[s.char_start : s.char_end] == s.text
        assert s.text == s.text.strip() and s.text
        assert s.char_start >= previous_end
        assert text[previous_end : s.char_start].strip() == "" or i == 0
        previous_end = s.char_end
    if len(sentences) > 1:
        assert all(len(s.text) >= 10 for s in sentences)
    # nothing but whitespace is lost
    assert _squash("".join(s.text for s in sentences)) == _squash(text)


def _whitespace_offsets(text: str) -> list[tuple[int, int]]:
    """A toy tokenizer: a token is optional leading whitespace plus a run of non-space characters."""
    return [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]


def test_token_spans_cover_every_sentence():
    text = "<think>\nFirst we add. Then we check!\n\nDone with it now.</think>"
    sentences = split_sentences(text)
    offsets = [(0, 0), *_whitespace_offsets(text)]  # a special token, "<think>", "\\nFirst", ...
    spanned = token_spans(sentences, offsets, text)
    assert [(s.token_start, s.token_end) for s in spanned] == [(2, 5), (5, 8), (8, 12)]
    # without the text the leading-space tokens resolve the same way
    assert token_spans(sentences, offsets) == spanned
    assert spanned[0].n_tokens == 3 and sentences[0].n_tokens is None


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .?!\n")), max_size=120))
def test_token_spans_properties(text):
    sentences = split_sentences(text)
    offsets = _whitespace_offsets(text)
    spanned = token_spans(sentences, offsets, text)
    end = 0
    for s in spanned:
        assert s.token_start >= end and s.token_end > s.token_start
        first_lo = offsets[s.token_start][0]
        last_hi = offsets[s.token_end - 1][1]
        assert first_lo < s.char_end and last_hi > s.char_start
        end = s.token_end


def test_token_spans_rejects_bad_offsets():
    sentences = split_sentences("One sentence here.")
    with pytest.raises(ValueError, match="pair"):
        token_spans(sentences, [(0, 1, 2)])
    with pytest.raises(ValueError, match="backwards"):
        token_spans(sentences, [(5, 6), (1, 2)])


def test_sentence_is_frozen():
    s = Sentence(0, "x", 0, 1)
    with pytest.raises(AttributeError):
        s.index = 1  # type: ignore[misc]


def test_load_bundled_trace_fields():
    trace = load_bundled_trace(MATH_TRACES[0])
    assert trace.is_math and trace.problem_id.startswith("problem_")
    assert len(trace.chunks) == len(trace.function_tags) == len(trace.labels)
    assert set(bundled.IMPORTANCE_COLUMNS) == set(trace.importance)
    assert all(len(v) == len(trace.chunks) for v in trace.importance.values())
    assert load_bundled_trace(0) == load_bundled_trace(list_bundled_traces()[0])
    scenario = load_bundled_trace("scenario_0")  # a unique last path part is enough
    assert not scenario.is_math and scenario.name.endswith("/scenario_0")


def test_load_bundled_trace_errors(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="no bundled trace"):
        load_bundled_trace("nope")
    with pytest.raises(KeyError, match="out of range"):
        load_bundled_trace(10_000)
    directory = tmp_path / "m" / "c" / "problem_1"
    directory.mkdir(parents=True)
    (directory / "chunks_labeled.json").write_text("[{", encoding="utf-8")
    (directory / "base_solution.json").write_text(json.dumps({"full_cot": "x"}), encoding="utf-8")
    monkeypatch.setattr(bundled, "TRACES_DIR", tmp_path)
    bundled.list_bundled_traces.cache_clear()
    try:
        with pytest.raises(ValueError, match="corrupt"):
            load_bundled_trace("m/c/problem_1")
        (directory / "base_solution.json").unlink()
        with pytest.raises(ValueError, match="missing"):
            load_bundled_trace("m/c/problem_1")
    finally:
        monkeypatch.undo()
        bundled.list_bundled_traces.cache_clear()
