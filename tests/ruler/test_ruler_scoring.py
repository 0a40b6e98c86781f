"""Scoring RULER cases: answers, needle mass and routes on a tiny model; one real case."""

import pytest

from stream_widgets.ruler.cases import make_cases
from stream_widgets.ruler.routes import Route
from stream_widgets.ruler.scoring import format_table, is_correct, run_ruler, score_case, summarize
from tests.ruler.captures import SMALL
from tests.tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_is_correct_needs_every_number():
    assert is_correct(" 1234.", ("1234",)) and not is_correct(" 12345.", ("1234",))
    assert is_correct("5, 7 and 9", ("9", "5", "7")) and not is_correct("5, 7", ("5", "7", "9"))


def test_score_case_on_tiny_model(tok):
    model = tiny_model(max_positions=1024)
    case = make_cases("multikey", n=1, length_tokens=700, tokenizer=tok, seed=0, value_digits=3)[0]
    result = score_case(model, tok, case, SMALL, max_new_tokens=4)
    assert len(result.needle_mass_dense) == 2 and len(result.needle_mass_dense[0]) == 4
    assert 0.0 <= result.needle_mass_kept <= 1.0 + 1e-6 and 0.0 < result.sparsity < 1.0
    assert len(result.query_positions) == 8 and result.query_positions[-1] == case.length - 1
    assert isinstance(result.route, Route) and result.route.output == case.length - 1
    assert result.to_dict()["case"]["kind"] == "multikey" and "prompt" not in result.to_dict()["case"]
    with pytest.raises(ValueError, match="tokenizer"):
        score_case(
            model,
            tok,
            make_cases("single", n=1, length_tokens=700, tokenizer=tok)[0].__class__(
                **{**case.__dict__, "length": 5}
            ),
            SMALL,
        )


def test_run_ruler_reports_each_result_as_it_is_scored(tok):
    model = tiny_model(max_positions=1024)
    seen = []
    results = run_ruler(
        model, tok, [700], ["single", "multikey"], 2, config=SMALL, progress=False, on_result=seen.append
    )
    assert seen == results and len(results) == 4
    assert [r.case.kind for r in results] == ["single", "single", "multikey", "multikey"]
    assert [r.case.depth for r in results[:2]] == pytest.approx([0.1, 0.9])
    rows = summarize(results)
    assert [(row["kind"], row["cases"]) for row in rows] == [("single", 2), ("multikey", 2)]
    for row, pair in zip(rows, (results[:2], results[2:]), strict=True):  # two cases: median = mean
        kept = [r.needle_mass_kept for r in pair]
        assert row["needle_mass_kept_median"] == pytest.approx(sum(kept) / 2)
        assert row["needle_mass_kept"] == pytest.approx(sum(kept) / 2)
    assert "| median kept |" in format_table(rows).splitlines()[0]


@pytest.mark.slow
def test_real_model_single_needle_512_tokens(default_model):
    model, tokenizer = default_model
    case = make_cases("single", n=1, length_tokens=512, depth=0.5, tokenizer=tokenizer, seed=0)[0]
    result = score_case(model, tokenizer, case)
    assert result.dense_correct, f"SmolLM2 should find one needle in 512 tokens: {result}"
    assert result.needle_mass_kept > 0.9
    assert result.route.reaches_output
