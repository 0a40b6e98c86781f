"""RULER cases, scoring and needle routes: generator properties, shapes on a tiny model, one real case."""

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.decoding import sparse_step_attention
from stream_widgets.routes import AttentionCapture, Route, RouteEdge, _best_paths, find_route, needle_mass
from stream_widgets.ruler import KINDS, NEEDLES, RulerCase, make_cases
from stream_widgets.ruler_scoring import is_correct, run_ruler, score_case, summarize
from stream_widgets.tracer import tokenize
from tests.tiny_models import tiny_model, tiny_tokenizer

SMALL = StreamConfig(q_block=16, k_block=8, top_k=4, sink=8, window=16)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _text(tokenizer, case: RulerCase, span: tuple[int, int]) -> str:
    ids = tokenize(tokenizer, case.prompt)[0][0]
    return tokenizer.decode(ids[span[0] : span[1]])


# ----------------------------------------------------------------- generator
@pytest.mark.parametrize("kind", KINDS)
def test_cases_are_seeded_and_spans_point_at_the_needles(tok, kind):
    cases = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=3, value_digits=4)
    again = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=3, value_digits=4)
    other = make_cases(kind, n=2, length_tokens=900, tokenizer=tok, seed=4, value_digits=4)
    assert cases == again
    assert cases[0].prompt != cases[1].prompt and cases[0].prompt != other[0].prompt
    for case in cases:
        assert 900 - 24 <= case.length <= 900
        assert tokenize(tok, case.prompt)[0].shape[1] == case.length
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


def test_is_correct_needs_every_number():
    assert is_correct(" 1234.", ("1234",)) and not is_correct(" 12345.", ("1234",))
    assert is_correct("5, 7 and 9", ("9", "5", "7")) and not is_correct("5, 7", ("5", "7", "9"))


# ----------------------------------------------------------------- scoring and routes, tiny model
def _capture(t=70, heads=4, kv=2, d=8, layers=3, seed=0):
    from stream_widgets.estimator import estimate_mask

    g = torch.Generator().manual_seed(seed)
    cap = AttentionCapture(scale=d**-0.5)
    for _ in range(layers):
        q, k = torch.randn(heads, t, d, generator=g) * 2, torch.randn(kv, t, d, generator=g) * 2
        cap.queries.append(q)
        cap.keys.append(k)
        cap.masks.append(estimate_mask(q[None], k[None], SMALL))
    return cap


def test_rows_and_needle_mass_match_dense_reference():
    cap = _capture()
    positions, needle = [60, 69], [5, 6, 30]
    dense, kept = needle_mass(cap, positions, needle)
    assert dense.shape == kept.shape == (3, 4) and (kept <= dense + 1e-6).all()
    for layer in range(3):
        k = cap.keys[layer].repeat_interleave(2, dim=0)
        logits = torch.einsum("htd,hsd->hts", cap.queries[layer], k) * cap.scale
        probs = torch.softmax(
            logits.masked_fill(~torch.ones(70, 70, dtype=torch.bool).tril(), float("-inf")), -1
        )
        keep = cap.masks[layer].to_dense()[0]
        want = probs[:, positions][..., needle].sum(dim=(1, 2))
        want_kept = (probs * keep)[:, positions][..., needle].sum(dim=(1, 2))
        torch.testing.assert_close(dense[layer], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kept[layer], want_kept, atol=1e-5, rtol=1e-5)


def test_best_paths_chain_through_layers():
    e = RouteEdge
    per_layer = [
        [e(0, 0, 10, 2, 0.9, True), e(0, 1, 12, 40, 0.9, True)],  # 40 is no needle: ignored
        [e(1, 0, 20, 10, 0.5, True), e(1, 2, 20, 11, 0.9, True)],  # 11 carries nothing
        [e(2, 1, 30, 20, 0.8, True), e(2, 0, 30, 2, 0.1, True), e(2, 0, 30, 12, 0.9, True)],
    ]
    route = _best_paths(per_layer, [2], 30, num_paths=1)
    assert [(x.layer, x.query, x.key) for x in route] == [(0, 10, 2), (1, 20, 10), (2, 30, 20)]
    assert len(_best_paths(per_layer, [2], 30, num_paths=5)) == 4  # plus the direct edge 2 -> 30


def test_find_route_on_random_capture_is_consistent():
    cap = _capture()
    route = find_route(cap, [5, 6], 69, min_weight=0.01)
    assert route.reaches_output and all(e.retained for e in route.edges)
    assert all(not e.retained for e in route.pruned)
    assert all(e.key <= e.query and e.weight >= 0.01 for e in route.edges)
    back = Route.from_dict(route.to_dict())
    assert back == route and set(back.heads()) <= set(range(3))


def test_sparse_step_keeps_all_equals_dense():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(1, 4, 1, 8, generator=g),
        torch.randn(1, 2, 50, 8, generator=g),
        torch.randn(1, 2, 50, 8, generator=g),
    )
    keep_all = StreamConfig(q_block=16, k_block=8, top_k=64, sink=8, window=16)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    )
    torch.testing.assert_close(sparse_step_attention(q, k, v, 8**-0.5, keep_all), dense, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(
        sparse_step_attention(q, k * 3, v, 8**-0.5, StreamConfig(k_block=8, top_k=1, sink=8, window=0)),
        dense,
        atol=1e-3,
    )


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


# ----------------------------------------------------------------- real model
@pytest.mark.slow
def test_real_model_single_needle_512_tokens(default_model):
    model, tokenizer = default_model
    case = make_cases("single", n=1, length_tokens=512, depth=0.5, tokenizer=tokenizer, seed=0)[0]
    result = score_case(model, tokenizer, case)
    assert result.dense_correct, f"SmolLM2 should find one needle in 512 tokens: {result}"
    assert result.needle_mass_kept > 0.9
    assert result.route.reaches_output


def test_route_view_from_plain_data(tmp_path):
    from stream_widgets.views.routes import route_data, route_figure, write_route_html

    route = find_route(_capture(), [5, 6], 69, min_weight=0.01)
    route = Route.from_dict(
        {
            **route.to_dict(),
            "pruned": [{**route.edges[0].__dict__, "retained": False}],
            "spans": {"needle": [[4, 8]], "distractor": [[20, 24]]},
        }
    )
    cols = route_data(route.to_dict())
    assert len(cols["x0"]) == len(route.edges) + 1 and cols["status"][-1] == "pruned"
    assert all(y1 == y0 + 1 for y0, y1 in zip(cols["y0"], cols["y1"], strict=True))
    fig = route_figure(route)
    assert "kept edges" in fig.title.text
    html = write_route_html(route, tmp_path / "route.html").read_text()
    assert "<script" in html and "http" not in html.split("<body")[0].split("<script")[0]
    with pytest.raises(ValueError, match="lacks"):
        route_figure({"edges": []})
