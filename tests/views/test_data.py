"""ExploreData validation and the numpy aggregations behind the views."""

import numpy as np
import pytest

from stream_widgets.views.data import DEFAULT_TAG_COLORS, FALLBACK_TAG_COLOR, ExploreData, synthetic_example
from stream_widgets.views.matrices import (
    color_scale,
    downsample,
    select_matrix,
    select_scores,
    spearman,
    tag_attention,
    tag_table,
    top_links,
)


def _kwargs(S=5, L=2, H=2):
    data = synthetic_example(S=S, L=L, H=H, seed=1)
    return dict(
        text=data.text,
        sentences=data.sentences,
        char_spans=data.char_spans,
        tags=data.tags,
        anchor_scores=data.anchor_scores,
        vertical_scores=data.vertical_scores,
        sentence_attention=data.sentence_attention,
        receiver_heads=data.receiver_heads,
    )


def test_tag_colours_are_data_with_a_fallback():
    data = synthetic_example(S=6, L=1, H=1)
    assert data.tag_color("problem_setup") == DEFAULT_TAG_COLORS["problem_setup"]
    assert data.tag_color("a_tag_of_my_own") == FALLBACK_TAG_COLOR
    mine = ExploreData(**{**_kwargs(S=5), "tags": ["x", "y", "x", "y", "x"], "tag_colors": {"x": "#112233"}})
    assert mine.tag_color("x") == "#112233" and mine.tag_color("y") == FALLBACK_TAG_COLOR
    assert mine.tags_present() == ["x", "y"] and mine.tag_vocabulary == ["x", "y"]
    with pytest.raises(ValueError, match="rrggbb"):
        ExploreData(**{**_kwargs(S=5), "tag_colors": {"x": "red"}})


def test_unscored_sentences_are_nan_and_never_rank():
    data = synthetic_example(S=12, L=2, H=2)
    assert np.isnan(data.anchor_scores[-7:]).all() and np.isfinite(data.anchor_scores[:-7]).all()
    assert data.scored.sum() == 5
    assert all(data.scored[i] for i in data.top_anchors(20)) and len(data.top_anchors(20)) == 5
    table = tag_table(data.tags, data.anchor_scores, data.tags_present())
    assert sum(r["count"] for r in table) == 12 and sum(r["scored"] for r in table) == 5
    for row in table:
        values = [
            s
            for s, t in zip(data.anchor_scores, data.tags, strict=True)
            if t == row["tag"] and np.isfinite(s)
        ]
        if values:
            assert row["mean_anchor_score"] == pytest.approx(np.mean(values))
        else:
            assert row["mean_anchor_score"] is None and row["max_anchor_score"] is None


def test_bars_follow_the_picked_layer_and_head():
    data = synthetic_example(S=15, L=3, H=2)
    np.testing.assert_array_equal(select_scores(data, None, None), data.anchor_scores)
    np.testing.assert_allclose(select_scores(data, 1, None), data.vertical_scores[1].mean(0))
    np.testing.assert_array_equal(select_scores(data, 2, 1), data.vertical_scores[2, 1])


def test_color_scale_counts_what_it_clips():
    matrix = np.tril(np.full((10, 10), 0.01))
    np.fill_diagonal(matrix, 0.5)
    scale = color_scale(matrix)
    assert scale.high == pytest.approx(0.01)
    assert scale.clipped == 10 and scale.cells == 55  # the diagonal, said on the page
    assert "percentile" in scale.rule
    assert color_scale(np.zeros((3, 3))).high == 1.0


def test_spearman_over_finite_pairs():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([2.0, 1.0, 3.0, np.nan, 10.0])
    rho, n = spearman(x, y)
    assert n == 3 and rho == pytest.approx(0.5)
    assert spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == (None, 2)


def test_synthetic_example_is_valid_and_marked():
    data = synthetic_example(S=12, L=3, H=2)
    assert data.sentence_attention.shape == (3, 2, 12, 12)
    assert data.sentence_attention.dtype == np.float32
    assert data.meta["synthetic"] is True
    assert data.layer_labels == ["layer 0", "layer 1", "layer 2"]
    for start, end in data.char_spans:
        assert data.text[start:end] in data.sentences


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tags": ["problem_setup"] * 4}, "4 tags for 5 sentences"),
        ({"anchor_scores": np.zeros(4)}, "anchor_scores must have shape"),
        ({"anchor_scores": np.array([0, 1, np.inf, 0, 0])}, "infinite"),
        ({"vertical_scores": np.zeros(5)}, r"vertical_scores must have shape \[L, H, S\]"),
        ({"tag_confidence": np.full(5, 1.5)}, r"\[0, 1\]"),
        ({"evidence": {"kl": np.zeros(4)}}, r"evidence\['kl'\] must have shape"),
        ({"suppression": np.zeros((4, 4))}, "suppression must have shape"),
        ({"sentence_attention": np.ones((2, 2, 5, 5), np.float32)}, "above the diagonal"),
        ({"sentence_attention": np.zeros((2, 5, 5), np.float32)}, r"\[L, H, S, S\]"),
        ({"receiver_heads": []}, "receiver_heads is empty"),
        ({"receiver_heads": [(2, 0)]}, "outside L=2"),
        ({"char_spans": [(0, 3), (2, 5), (6, 8), (9, 10), (11, 12)]}, "overlap"),
        ({"char_spans": [(0, 1), (1, 2), (2, 3), (3, 4), (4, 10**6)]}, "outside the text"),
        ({"layer_head_labels": (["a"], ["b", "c"])}, "layer_head_labels"),
    ],
)
def test_bad_input_raises_with_the_field_named(change, message):
    kwargs = _kwargs()
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        ExploreData(**kwargs)


def test_select_matrix_receiver_average_and_head_mean():
    data = synthetic_example(S=10, L=3, H=4)
    expected = np.mean([data.sentence_attention[layer, h] for layer, h in data.receiver_heads], axis=0)
    np.testing.assert_allclose(select_matrix(data, None, None), expected, rtol=1e-6)
    np.testing.assert_allclose(select_matrix(data, 2, None), data.sentence_attention[2].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(select_matrix(data, 1, 3), data.sentence_attention[1, 3])
    with pytest.raises(ValueError, match="layer 3 is out of range"):
        select_matrix(data, 3, None)


def test_downsample_matches_a_loop_over_bins():
    rng = np.random.default_rng(0)
    matrix = np.tril(rng.random((23, 23))).astype(np.float32)
    pooled = downsample(matrix, 5)
    edges = np.linspace(0, 23, 6).round().astype(int)
    reference = np.array(
        [
            [matrix[edges[a] : edges[a + 1], edges[b] : edges[b + 1]].mean() for b in range(5)]
            for a in range(5)
        ]
    )
    np.testing.assert_allclose(pooled, reference, rtol=1e-5)
    assert downsample(matrix, 50) is not None and downsample(matrix, 50).shape == (23, 23)


def test_tag_attention_matches_a_loop_over_pairs():
    rng = np.random.default_rng(1)
    matrix = np.tril(rng.random((9, 9)))
    tags = [
        "problem_setup",
        "fact_retrieval",
        "problem_setup",
        "self_checking",
        "fact_retrieval",
        "problem_setup",
        "self_checking",
        "fact_retrieval",
        "problem_setup",
    ]
    order = ["problem_setup", "fact_retrieval", "self_checking", "unknown"]
    result = tag_attention(matrix, tags, order)
    for a, ta in enumerate(order):
        for b, tb in enumerate(order):
            cells = [matrix[i, j] for i in range(9) for j in range(i) if tags[i] == ta and tags[j] == tb]
            if cells:
                assert result[a, b] == pytest.approx(np.mean(cells))
            else:
                assert np.isnan(result[a, b])


def test_top_links_are_causal_and_sorted():
    matrix = np.tril(np.arange(36, dtype=np.float64).reshape(6, 6) % 7)
    attends_to, attended_by = top_links(matrix, 3, k=2)
    assert all(j < 3 for j in attends_to) and all(r > 3 for r in attended_by)
    assert [matrix[3, j] for j in attends_to] == sorted([matrix[3, j] for j in range(3)], reverse=True)[:2]
    assert [matrix[r, 3] for r in attended_by] == sorted([matrix[r, 3] for r in range(4, 6)], reverse=True)[
        :2
    ]


# ------------------------------------------------------------------ route and token spans


def test_route_defaults_to_none_and_a_route_round_trips_as_a_dict():
    from tests.views.route_example import with_route

    assert synthetic_example(S=5, L=2, H=2).route is None
    data = with_route(synthetic_example(S=8, L=3, H=2))
    again = ExploreData(**{**data.__dict__, "route": data.route.to_dict()})
    assert again.route == data.route


def test_sentence_of_uses_the_token_spans():
    from tests.views.route_example import with_route

    data = with_route(synthetic_example(S=8, L=3, H=2))
    assert [data.sentence_of(p) for p in (0, 7, 8, 10, 79)] == [0, 0, None, 1, None]
    assert synthetic_example(S=8, L=3, H=2).sentence_of(0) is None  # no token spans


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layer": 3}, "layer 3 outside L=3"),
        ({"key": -1}, r"token positions \[-1\]"),
        ({"query": 80}, r"token positions \[80\] outside \[0, 80\)"),
    ],
)
def test_bad_route_raises_with_the_field_named(change, message):
    from tests.views.route_example import with_route

    data = with_route(synthetic_example(S=8, L=3, H=2))
    edges = [{**data.route.to_dict()["edges"][0], **change}]
    with pytest.raises(ValueError, match=message):
        ExploreData(**{**data.__dict__, "route": {**data.route.to_dict(), "edges": edges}})


def test_bad_route_type_and_token_spans_raise():
    from tests.views.route_example import with_route

    data = with_route(synthetic_example(S=8, L=3, H=2))
    with pytest.raises(TypeError, match="ExploreData.route must be"):
        ExploreData(**{**data.__dict__, "route": [1, 2]})
    with pytest.raises(ValueError, match="7 spans for 8 sentences"):
        ExploreData(**{**data.__dict__, "token_spans": data.token_spans[:7]})
    with pytest.raises(ValueError, match=r"token_spans\[7\].*meta\['tokens'\] = 80"):
        ExploreData(**{**data.__dict__, "token_spans": [*data.token_spans[:7], (70, 81)]})
    with pytest.raises(ValueError, match=r"token_spans\[1\]"):
        ExploreData(**{**data.__dict__, "token_spans": [(0, 5), (4, 6), *data.token_spans[2:]]})
