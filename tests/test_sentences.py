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
    with pytest.raises(
        ValueError, match="unknown sentence rules 'ta'; choose one of default, thought-anchors"
    ):
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
    monkeypatch.setitem(bundled.CORPORA, "thought-anchors", tmp_path)
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


# --- the "default" rules: no cut inside a formula ---------------------------------------------------------


def _texts(text: str, rules: str = "default") -> list[str]:
    return [s.text for s in split_sentences(text, rules)]


def test_factorial_formula_is_one_sentence():
    text = "The total is 9! / (5! * 2! * 2! * 1!) arrangements. Then we divide."
    assert _texts(text) == ["The total is 9! / (5! * 2! * 2! * 1!) arrangements.", "Then we divide."]
    assert _texts(text, "thought-anchors") == [
        "The total is 9!",
        "/ (5! * 2!",
        "* 2! * 1!) arrangements.",
        "Then we divide.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "So the count is (n-1)! because one position is fixed.",
        "It would be (10-1)! = 9! ways in all.",
        "First, 9! is 362880 and 5! is 120.",
        "We get (k+1)! / k! which is k + 1.",
        "Then 9!\n= 362880 is the count.",
        "Here \\( 2014! \\cdot 2013! \\) appears twice.",
        "The value 4! (24) is small.",
        "The product 5! 2 is not a typo.",
        "We check that a != b and n! = 120 hold.",
        "The rate is 0.05 per month and 0.06 per year.",
    ],
)
def test_no_cut_inside_formula(text):
    assert _texts(text) == [text]


def test_factorial_then_capital_or_list_is_still_cut():
    assert _texts("We need 5! Then we stop here.") == ["We need 5!", "Then we stop here."]
    assert _texts("That is great! so we go on.") == ["That is great!", "so we go on."]  # no factorial


@pytest.mark.parametrize(
    "text",
    [
        "We use a rule, e.g. the product rule, here.",
        "It works, i.e. it converges fast enough.",
        "E.g. this works fine here too.",
        "Compare A vs. B to see which one wins.",
        "Dr. Fu Manchu has a bank account.",
        "The result is approx. 6.17 percent.",
        "See Eq. 3 for the form of it.",
        "See eq. (3) for the form of it.",
        "Item No. 5 is the one we want.",
        "Apples, pears, etc. and more fruit here.",
    ],
)
def test_no_cut_after_abbreviation(text):
    assert _texts(text) == [text]


def test_abbreviation_can_end_a_sentence_before_a_capital():
    assert _texts("Apples, pears, etc. Then we eat them all.") == [
        "Apples, pears, etc.",
        "Then we eat them all.",
    ]
    assert _texts("No. That is wrong, try again.") == ["No. That is wrong, try again."]  # "No." is short
    assert _texts("Is it 5? No. That is wrong, try again.") == ["Is it 5? No.", "That is wrong, try again."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We get $x = 5. y$ done. Next one here.", ["We get $x = 5. y$ done.", "Next one here."]),
        ("We get $$x = 5. y$$ done. Next one here.", ["We get $$x = 5. y$$ done.", "Next one here."]),
        ("We get \\( x = 5. y \\) done. Next one here.", ["We get \\( x = 5. y \\) done.", "Next one here."]),
        ("Then \\[\nx = 5. y\n\\]\nNext one here.", ["Then \\[\nx = 5. y\n\\]\nNext one here."]),
        # no math: the first `$` after `$5` follows a space, and a blank line ends a formula
        ("It costs $5 and $10. Then we pay it.", ["It costs $5 and $10.", "Then we pay it."]),
        ("So \\[ x = 5.\n\nThen y \\] holds here.", ["So \\[ x = 5.", "Then y \\] holds here."]),
        ("It costs \\$5. Then $y$ is paid.", ["It costs \\$5.", "Then $y$ is paid."]),
    ],
)
def test_math_delimiters(text, expected):
    assert _texts(text) == expected


def test_formula_tails_and_markup():
    # an operator or a closing bracket goes on with the formula, on the same line or the next
    assert _texts("Then 4 + 4 = 8.\n= 2 * 4 as well.") == ["Then 4 + 4 = 8.\n= 2 * 4 as well."]
    assert _texts("It is (about 5. ) in the end.") == ["It is (about 5. ) in the end."]
    assert _texts("So e ≈ 1 - x + x^2 / 2\n\n≈ 0.9998 in the end.") == [
        "So e ≈ 1 - x + x^2 / 2\n\n≈ 0.9998 in the end."
    ]
    # list items, bold text and signs that open a line still start a sentence
    assert _texts("The facts are these.\n- One fact here.\n- Two facts here.") == [
        "The facts are these.",
        "- One fact here.",
        "- Two facts here.",
    ]
    assert _texts("So the answer is 6.\n**Final Answer** is 6.") == [
        "So the answer is 6.",
        "**Final Answer** is 6.",
    ]
    assert _texts("Compute the numerator:\n\n-3125 + 5950 = 2825") == [
        "Compute the numerator:",
        "-3125 + 5950 = 2825",
    ]


def test_ellipsis_and_list_numbers():
    assert _texts("So it equals... let me do that division.") == ["So it equals... let me do that division."]
    assert _texts("So it equals... Let me do that division.") == [
        "So it equals...",
        "Let me do that division.",
    ]
    text = "Starting from the innermost:\n\n1. Compute 1 + 3 = 4.\n2. The next layer is 13."
    assert _texts(text) == [
        "Starting from the innermost:",
        "1. Compute 1 + 3 = 4.",
        "2. The next layer is 13.",
    ]
    # Thought Anchors leaves the item number at the end of the previous item when it has no full stop
    text = "Starting from the innermost:\n\n1. Compute 1 + 3 = 4\n2. The next layer is 13."
    assert _texts(text, "thought-anchors") == [
        "Starting from the innermost:",
        "1. Compute 1 + 3 = 4\n2.",
        "The next layer is 13.",
    ]
    assert _texts(text) == ["Starting from the innermost:", "1. Compute 1 + 3 = 4\n2. The next layer is 13."]


def test_default_boundary_need_not_be_a_chunk_boundary():
    """The documented example: the 10-character merge makes the two rule sets disagree on a boundary."""
    text = "We have 5! = 120. Then we stop."
    assert _texts(text, "thought-anchors") == ["We have 5!", "= 120. Then we stop."]
    assert _texts(text) == ["We have 5! = 120.", "Then we stop."]


# --- properties of both rule sets: random texts and all bundled traces -----------------------------------

_OPERATOR_START = re.compile(r"[/*+\-=×·÷^<>≤≥≈≠±−⇒→]|\\(?:cdot|times|div|leq|geq|pm)(?![A-Za-z])")
_CLOSING_START = re.compile(r"[)\]}]|\\[)\]]")


def _check_tiling(text: str, sentences: list[Sentence]) -> None:
    """In order, no overlap, whitespace between, and together they cover the reasoning region."""
    start, end = think_region(text)
    if start == end:
        assert sentences == []
        return
    assert sentences[0].char_start == start and sentences[-1].char_end == end
    for i, s in enumerate(sentences):
        assert s.index == i
        assert s.text == text[s.char_start : s.char_end] and s.text == s.text.strip() and s.text
        if i:
            assert sentences[i - 1].char_end <= s.char_start
            assert text[sentences[i - 1].char_end : s.char_start].strip() == ""
    if len(sentences) > 1:
        assert all(len(s.text) >= MIN_SENTENCE_CHARS for s in sentences)
    assert _squash("".join(s.text for s in sentences)) == _squash(text[start:end])


def _check_starts(text: str, sentences: list[Sentence]) -> None:
    """No default sentence but the first starts with an operator or a closing bracket, except Markdown
    bold and, on a new line, a list item or a sign."""
    for previous, s in zip(sentences, sentences[1:], strict=False):
        assert not _CLOSING_START.match(s.text), (text, s)
        if not _OPERATOR_START.match(s.text) or re.match(r"\*\*\S", s.text):
            continue
        new_line = "\n" in text[previous.char_end : s.char_start]
        assert new_line and re.match(r"[-*+•][ \t]|[-+−±]", s.text), (text, s)


def _reference_pieces(text: str) -> tuple[set[int], set[int]]:
    """Starts and ends of the Thought Anchors pieces (step 2 of the rules, before merging), computed
    independently of the module: cut after `.?!` + space/newline and after the first character of a
    blank line, strip the pieces."""
    start, end = think_region(text)
    region = text[start:end]
    cuts = {m.end() for m in re.finditer(r"[.?!](?=[ \n])", region)}
    cuts |= {m.start() + 1 for m in re.finditer(r"\n\n|\r\n\r\n", region)}
    bounds = [0, *sorted(cuts), len(region)]
    starts, ends = set(), set()
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        piece = region[lo:hi]
        if piece.strip():
            starts.add(start + lo + len(piece) - len(piece.lstrip()))
            ends.add(start + lo + len(piece.rstrip()))
    return starts, ends


def _check_coarsening(text: str, sentences: list[Sentence]) -> None:
    starts, ends = _reference_pieces(text)
    assert {s.char_start for s in sentences} <= starts
    assert {s.char_end for s in sentences} <= ends


_TOKENS = [
    *["9!", "n!", "(k+1)!", "5!", "!", "!=", ".", "?", "...", " ", " ", " ", "\n", "\n\n", "\r\n\r\n", "\t"],
    *["= ", "/ ", "* ", "- ", "+ ", "≈ ", "× ", "^", "<", "≥", "-3", "**Bold**", "• "],
    *["(", ")", "[", "]", "{", "}", "\\(", "\\)", "\\[", "\\]", "$", "$$", "\\$", "\\cdot ", "\\times"],
    *["e.g.", "i.e.", "etc.", "No.", "Dr.", "Eq.", "vs.", "2.", "12.", "0.05", "3.14"],
    *["The", "So", "Wait", "word", "ways", "is", "x", "a", "b", "5", "12", "é", "中"],
    *["<think>", "</think>"],
]
_RANDOM_TEXT = st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join),
    st.text(alphabet=st.sampled_from(list("ab A.?!\n\t=+-*/()[]$\\9!é中")), max_size=200),
)


@settings(max_examples=400, deadline=None)
@given(_RANDOM_TEXT)
def test_properties_on_random_formula_text(text):
    default = split_sentences(text)
    thought_anchors = split_sentences(text, rules="thought-anchors")
    _check_tiling(text, default)
    _check_tiling(text, thought_anchors)
    _check_starts(text, default)
    _check_coarsening(text, default)
    _check_coarsening(text, thought_anchors)


@pytest.mark.parametrize("name", list_bundled_traces())
def test_properties_on_bundled_traces(name):
    text = load_bundled_trace(name).full_cot
    default = split_sentences(text)
    _check_tiling(text, default)
    _check_tiling(text, split_sentences(text, rules="thought-anchors"))
    _check_starts(text, default)
    _check_coarsening(text, default)
    for s in default:
        # no sentence ends with the number of the next list item, none is the tail of a factorial
        assert not re.search(r"\n[ \t]*\d{1,3}\.$", s.text), s.text
        assert not re.match(r"(arrangements|ways|is|divided|for|because|where)\b", s.text), s.text


def test_fragments_of_the_bundled_traces_are_gone():
    demo = load_bundled_trace(DEMO_TRACE).full_cot
    sentences = _texts(demo)
    assert "arrangements." in _texts(demo, "thought-anchors")
    assert "arrangements." not in sentences
    assert any(s.endswith("leading to 8! arrangements.") for s in sentences)
    other = load_bundled_trace("deepseek-r1-distill-qwen-14b/incorrect_base_solution/problem_2189").full_cot
    assert "= 8! as I did." in _texts(other, "thought-anchors")
    assert any(s.endswith("it's (9-1)! = 8! as I did.") for s in _texts(other))
    assert not any(s.startswith(("= 8!", "as I did")) for s in _texts(other))


def test_start_check_catches_thought_anchors_fragments():
    """The start property is not vacuous: the Thought Anchors chunks of a formula break it."""
    text = "The total is 9! / (5! * 2! * 2! * 1!) arrangements. Then we divide."
    _check_starts(text, split_sentences(text))
    with pytest.raises(AssertionError):
        _check_starts(text, split_sentences(text, rules="thought-anchors"))
