"""The notebook explorer's Bokeh document and widget state, driven in plain pytest (no browser).

The explorer only feeds data; the HTML is rendered by the shared browser-side callbacks, which
tests/views/test_report_browser.py checks in Chromium. So these tests assert on the sources.
"""

import dataclasses
import json

import numpy as np
import pytest

from stream_widgets.views import build_explorer, synthetic_example
from stream_widgets.views.matrices import downsample, select_matrix


@pytest.fixture
def explorer():
    return build_explorer(synthetic_example(S=30, L=3, H=2, seed=3, tokens=True))


def _assert_selected_everywhere(explorer, i):
    views = explorer.views
    assert explorer.selected == i
    assert list(views.sentences.selected.indices) == [i]
    assert explorer.anchor_list.value == i
    assert explorer.tag_editor.value == explorer.data.tags[i] and not explorer.tag_editor.disabled
    assert views.token_state.data["sentence"] == [i]


def test_explorer_is_an_ipywidget_holding_a_bokeh_model(explorer):
    import ipywidgets
    from jupyter_bokeh import BokehModel

    assert isinstance(explorer, ipywidgets.Widget)
    assert isinstance(explorer.bokeh_widget, BokehModel)
    assert explorer.bokeh_widget in explorer.children
    assert explorer.selected is None and explorer.layer_head == (None, None)


def test_the_first_render_runs_on_document_ready_in_the_notebook_bundle(explorer):
    # jupyter_bokeh ships the document with its callbacks: the same first render as the report's.
    bundle = json.dumps(explorer.bokeh_widget.render_bundle)
    assert "document_ready" in bundle and "renderAll()" in bundle


def test_python_renders_no_html(explorer):
    # The text view and the info panel are rendered in the browser from the sources, never in Python.
    assert explorer.views.text_div.text == "" and explorer.views.info_div.text == ""
    explorer.select(4)
    assert explorer.views.text_div.text == ""


def test_a_selection_from_the_browser_selects_everywhere(explorer):
    # A tap on a bar, a heatmap cell or a sentence in the browser arrives as this change.
    explorer.views.sentences.selected.indices = [7]
    _assert_selected_everywhere(explorer, 7)


def test_anchor_list_selects_everywhere(explorer):
    explorer.anchor_list.value = 12
    _assert_selected_everywhere(explorer, 12)
    explorer.anchor_list.value = -1
    assert explorer.selected is None
    assert list(explorer.views.sentences.selected.indices) == []
    assert explorer.tag_editor.disabled


def test_anchor_list_ranks_scored_sentences_and_marks_the_others(explorer):
    data = explorer.data
    labels = [label for label, value in explorer.anchor_list.options if value != -1]
    order = data.top_anchors(data.n_sentences)
    assert [v for _, v in explorer.anchor_list.options[1 : len(order) + 1]] == order
    assert sum("not scored" in label for label in labels) == int((~data.scored).sum())


def test_select_from_code_and_bad_index(explorer):
    explorer.select(3)
    _assert_selected_everywhere(explorer, 3)
    with pytest.raises(ValueError, match="out of range"):
        explorer.select(30)


def test_links_source_holds_the_strongest_links_of_the_shown_matrix(explorer):
    matrix = explorer.matrix
    links = explorer.views.links.data
    k = 3
    i = 20
    assert links["to"][i * k] == int(np.argmax(matrix[i, :i]))
    assert links["by"][i * k] == i + 1 + int(np.argmax(matrix[i + 1 :, i]))
    assert links["to_w"][i * k] == pytest.approx(matrix[i, :i].max())


def test_layer_head_pickers_swap_the_matrix_links_bars_and_state(explorer):
    data = explorer.data
    explorer.layer_picker.value = 2
    assert explorer.layer_head == (2, None)
    assert not explorer.head_picker.disabled
    image = explorer.views.heat.data["image"][0]
    np.testing.assert_allclose(np.tril(image), np.tril(data.sentence_attention[2].mean(0)), rtol=1e-6)
    assert np.isnan(image[0, 1])
    np.testing.assert_allclose(explorer.views.sentences.data["bar"], data.vertical_scores[2].mean(0))
    assert "layer 2: mean 'raw' vertical score of its 2 heads" in explorer.views.state.data["bars_title"][0]
    explorer.head_picker.value = 1
    assert explorer.layer_head == (2, 1)
    np.testing.assert_array_equal(
        np.tril(explorer.views.heat.data["image"][0]), data.sentence_attention[2, 1]
    )
    assert explorer.views.state.data["label"] == ["layer 2, head 1"]
    np.testing.assert_array_equal(explorer.views.sentences.data["bar"], data.vertical_scores[2, 1])
    assert explorer.views.links.data["to"][20 * 3] == int(np.argmax(data.sentence_attention[2, 1, 20, :20]))
    explorer.set_layer_head(None)
    assert explorer.layer_picker.value == -1 and explorer.head_picker.disabled
    np.testing.assert_allclose(explorer.matrix, select_matrix(data, None, None))
    np.testing.assert_array_equal(explorer.views.sentences.data["bar"], data.anchor_scores)
    assert explorer.views.state.data["bars_title"][0].startswith(
        "anchor score: mean 'raw' vertical score over"
    )


def test_colour_scale_state_counts_the_clipped_cells(explorer):
    state = explorer.views.state.data
    matrix = explorer.matrix
    assert state["high"][0] == pytest.approx(np.percentile(matrix[np.tril_indices(30, -1)], 99))
    assert state["clipped"][0] == int((matrix[np.tril_indices(30)] > state["high"][0]).sum()) > 0
    assert explorer.views.heat_mapper.high_color is not None


def test_unscored_sentences_are_nan_in_the_bars_not_zero(explorer):
    bar = np.asarray(explorer.views.sentences.data["bar"])
    assert np.isnan(bar[~explorer.data.scored]).all() and np.isfinite(bar[explorer.data.scored]).all()


def test_tag_filter_dims_other_tags(explorer):
    data = explorer.data
    keep = data.tags_present()[:2]
    explorer.tag_filter.value = tuple(keep)
    columns = explorer.views.sentences.data
    for tag, shown, alpha, strength in zip(
        data.tags, columns["shown"], columns["alpha"], columns["fade"], strict=True
    ):
        assert bool(shown) == (tag in keep)
        assert alpha == pytest.approx(strength if tag in keep else 0.2 * strength)
    with pytest.raises(ValueError, match="no sentence has"):
        explorer.set_tag_filter(["bogus"])


def test_tag_confidence_fades_the_colour(explorer):
    columns = explorer.views.sentences.data
    confidence = explorer.data.tag_confidence
    np.testing.assert_allclose(columns["fade"], 0.25 + 0.75 * confidence)
    np.testing.assert_allclose(columns["confidence"], confidence)


def test_tag_correction_from_the_dropdown_is_kept_and_saved(explorer, tmp_path):
    explorer.select(5)
    old = explorer.data.tags[5]
    new = next(t for t in explorer.data.tag_vocabulary if t != old)
    explorer.tag_editor.value = new
    columns = explorer.views.sentences.data
    assert columns["tag"][5] == new and columns["tagger_tag"][5] == old and columns["corrected"][5] == 1
    assert columns["color"][5] == explorer.data.tag_color(new) and columns["fade"][5] == 1.0
    assert explorer.corrections["corrections"] == [
        {
            "index": 5,
            "char_start": explorer.data.char_spans[5][0],
            "char_end": explorer.data.char_spans[5][1],
            "sentence": explorer.data.sentences[5],
            "tag": new,
            "tagger_tag": old,
        }
    ]
    path = explorer.save_corrections(tmp_path)
    assert path == tmp_path / "tag_corrections.json"
    assert json.loads(path.read_text())["corrections"][0]["tag"] == new
    with pytest.raises(ValueError, match="vocabulary"):
        explorer.correct_tag(5, "bogus")


def test_token_view_sends_only_the_selected_sentence_rows(explorer):
    data = explorer.data
    explorer.select(4)
    start, end = data.token_spans[4]
    image = explorer.views.tokens.data["image"][0]
    assert image.shape == (end - start, data.token_view.n_bins)
    np.testing.assert_array_equal(image, data.token_view.values[0, start:end])
    explorer.token_head_picker.value = 1
    np.testing.assert_array_equal(
        explorer.views.tokens.data["image"][0], data.token_view.values[1, start:end]
    )
    assert "sentence #4" in explorer.views.token_state.data["title"][0]


def test_long_traces_send_only_a_pooled_matrix():
    data = synthetic_example(S=420, L=2, H=2, seed=0)
    explorer = build_explorer(data, max_size=150)
    image = explorer.views.heat.data["image"][0]
    assert image.shape == (150, 150)
    np.testing.assert_allclose(
        np.tril(image), np.tril(downsample(select_matrix(data, None, None), 150)), rtol=1e-5
    )
    assert explorer.views.state.data["bins"] == [150]


def _document_bytes(explorer):
    from bokeh.core.json_encoder import serialize_json

    return len(serialize_json(explorer.bokeh_widget.render_bundle))


def test_document_size_does_not_grow_with_layers_and_heads():
    # Only the current pooled matrix is in the document, never L*H*S*S (vertical scores stay in Python).
    small = build_explorer(synthetic_example(S=120, L=1, H=1, seed=0))
    large = build_explorer(synthetic_example(S=120, L=6, H=4, seed=0))
    assert abs(_document_bytes(large) - _document_bytes(small)) < 0.05 * _document_bytes(small)
    assert _document_bytes(large) < 6 * 4 * 120 * 120 * 4 / 4


def test_svg_backend_for_svg_export():
    explorer = build_explorer(synthetic_example(S=12, L=2, H=2), output_backend="svg")
    assert (
        explorer.views.heat_figure.output_backend == "svg"
        and explorer.views.bars_figure.output_backend == "svg"
    )
    with pytest.raises(ValueError, match="output_backend"):
        build_explorer(synthetic_example(S=12, L=2, H=2), output_backend="pdf")


# ------------------------------------------------------------------ needle route panel


def test_no_route_no_route_panel(explorer):
    assert explorer.views.route_figure is None and explorer.views.route_edges is None
    assert explorer.views.layout.select_one({"name": "sw_route"}) is None


def test_route_panel_below_the_views_and_a_tapped_edge_selects_its_sentence():
    from bokeh.models import CustomJS, TapTool

    from tests.views.route_example import with_route

    explorer = build_explorer(with_route(synthetic_example(S=30, L=3, H=2, seed=3)))
    views = explorer.views
    assert views.layout.children[-1] is views.route_figure
    assert views.layout.select_one({"name": "sw_route"}) is views.route_figure
    # Edges: needle (sentence 2) -> sentence 5, sentence 5 -> output (29), pruned needle -> output.
    assert list(views.route_edges.data["sentence"]) == [2, 5, 2]
    assert any(isinstance(t, TapTool) for t in views.route_figure.tools)
    assert isinstance(views.route_edges.selected.js_property_callbacks["change:indices"][0], CustomJS)
    # In the browser the tap callback sets the shared selection, which comes back as this change:
    views.sentences.selected.indices = [5]
    assert explorer.selected == 5


def test_route_without_token_spans_is_shown_unlinked():
    from tests.views.route_example import with_route

    explorer = build_explorer(with_route(synthetic_example(S=12, L=3, H=2), token_spans=False))
    assert "not linked" in explorer.views.route_figure.title.text
    assert list(explorer.views.route_edges.data["sentence"]) == [-1, -1, -1]


def test_explore_takes_a_route_for_ready_data():
    from stream_widgets.views import explore
    from tests.views.route_example import with_route

    data = synthetic_example(S=12, L=3, H=2)
    route = with_route(data).route
    short = dataclasses.replace(data, meta={**data.meta, "tokens": 100})
    with pytest.raises(ValueError, match="outside"):
        explore(short, route=route)  # the output position (114) is past the text's 100 tokens
    explorer = explore(dataclasses.replace(data, meta={**data.meta, "tokens": 120}), route=route)
    assert explorer.data.route == route and explorer.views.route_figure is not None
    assert explore(data).views.route_figure is None
