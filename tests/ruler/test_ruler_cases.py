"""RULER cases: seeded, the needle spans point at the needles, the kinds differ, arguments are checked."""

import pytest

from stream_widgets.ruler.cases import KINDS, NEEDLES, RulerCase, make_cases
from stream_widgets.tokens import tokenize
from tests.tiny_models import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _text(tokenizer, case: RulerCase, span: tuple[int, int]) -> str:
    ids = tokenize(tokenizer, case.prompt).input_ids[0]
    return tokenizer.decode(ids[span[0] : span[1]])


@pytest.mark.parametrize("kind", KINDS)
def test_cases_are_seeded_and_spans_point_at_the_needles(tok, kind):
    cases = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=3, value_digits=4)
    again = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=3, value_digits=4)
    other = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=4, value_digits=4)
    assert cases == again
    assert cases[0].prompt != cases[1].prompt and cases[0].prompt != other[0].prompt
    for case in cases:
        assert 900 - 24 <= case.length <= 900
        assert tokenize(tok, case.prompt).num_tokens == case.length
        for key, value, span, value_span in zip(
            case.keys if kind != "multivalue" else case.keys * NEEDLES,
            case.answers,
            case.needle_spans,
            case.value_spans,
            strict=True,
        ):
            assert _text(tok, case, span).strip() == f"The special magic number for {key} is {value}."
            assert _text(tok, case, value_span).strip() == value
            assert span[0] <= value_span[0] < value_span[1] <= span[1]
        for value in case.answers:
            assert len(value) == 4 and case.prompt.count(f" is {value}.") == 1


def test_kinds_differ_as_they_should(tok):
    single, mk, mv, mq = (make_cases(k, n=1, length_tokens=900, tokenizer=tok, seed=0)[0] for k in KINDS)
    assert len(single.answers) == 1 and not single.distractor_spans
    assert len(mk.answers) == 1 and len(mk.distractor_spans) == NEEDLES - 1
    assert (
        len(mv.answers) == NEEDLES
        and len(mv.keys) == 1
        and mv.prompt.count(f"number for {mv.keys[0]} is") == NEEDLES
    )
    assert len(mq.answers) == NEEDLES and len(set(mq.keys)) == NEEDLES
    assert "What are all" in mv.prompt and all(k in mq.prompt.rsplit("\n", 3)[-1] for k in mq.keys)


def test_depth_places_the_needle(tok):
    early, late = make_cases("single", n=2, length_tokens=1500, depth=[0.1, 0.9], tokenizer=tok, seed=0)
    assert early.needle_spans[0][0] < 0.35 * early.length < 0.65 * late.length < late.needle_spans[0][0]


def test_traces_haystack_uses_real_text(tok):
    case = make_cases("single", n=1, length_tokens=900, haystack="traces", tokenizer=tok, seed=0)[0]
    assert "The grass is green." not in case.prompt and 876 <= case.length <= 900


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"kind": "nope"}, "kind"),
        ({"haystack": "web"}, "haystack"),
        ({"depth": 1.5}, "depth"),
        ({"length_tokens": 200}, "room"),
        ({"n": 0}, "n must"),
        ({"depth": [0.1]}, "depth has"),
    ],
)
def test_bad_arguments_name_the_problem(tok, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_cases(**{"n": 2, "length_tokens": 900, "tokenizer": tok, **kwargs})
