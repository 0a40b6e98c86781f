"""The notebook explorer's Bokeh document and widget state, driven in plain pytest (no browser)."""

import dataclasses
import sys

import numpy as np
import pytest
from bokeh.events import Tap

from stream_widgets.widgets import build_explorer, synthetic_example
from stream_widgets.widgets.matrices import downsample, select_matrix


@pytest.fixture
def explorer():
    return build_explorer(synthetic_example(S=30, L=3, H=2, seed=3))


def _selected_spans(explorer):
    return [
        int(p.split('data-sw-index="')[1].split('"')[0])
        for p in explorer.views.text_div.text.split("sw-sentence sw-selected")[1:]
    ]


def _assert_selected_everywhere(explorer, i):
    views = explorer.views
    assert explorer.selected == i
    assert list(views.sentences.selected.indices) == [i]
    assert explorer.anchor_list.value == i
    assert views.highlight.data["x"][0] == pytest.approx(i + 0.5)
    assert views.highlight.data["y"][1] == pytest.approx(i + 0.5)
    assert _selected_spans(explorer) == [i]
    assert f"data-sw-index='{i}'" in views.info_div.text
    assert explorer.data.sentences[i] in views.info_div.text


def test_importing_the_package_does_not_import_bokeh():
    import subprocess

    code = "import sys, stream_widgets.widgets; assert 'bokeh' not in sys.modules and 'ipywidgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_explorer_is_an_ipywidget_holding_a_bokeh_model(explorer):
    import ipywidgets
    from jupyter_bokeh import BokehModel

    assert isinstance(explorer, ipywidgets.Widget)
    assert isinstance(explorer.bokeh_widget, BokehModel)
    assert explorer.bokeh_widget in explorer.children
    assert explorer.selected is None and explorer.layer_head == (None, None)


def test_tapping_a_bar_selects_everywhere(explorer):
    # A tap on a bar in the browser arrives as a change of the shared source's selection.
    explorer.views.sentences.selected.indices = [7]
    _assert_selected_everywhere(explorer, 7)


def test_anchor_list_selects_everywhere(explorer):
    explorer.anchor_list.value = 12
    _assert_selected_everywhere(explorer, 12)
    explorer.anchor_list.value = -1
    assert explorer.selected is None
    assert list(explorer.views.sentences.selected.indices) == []
    assert _selected_spans(explorer) == []


def test_heatmap_tap_selects_the_attended_sentence(explorer):
    fig = explorer.views.heat_figure
    fig._trigger_event(Tap(model=fig, x=4.6, y=20.3))
    _assert_selected_everywhere(explorer, 4)


def test_select_from_code_and_bad_index(explorer):
    explorer.select(3)
    _assert_selected_everywhere(explorer, 3)
    with pytest.raises(ValueError, match="out of range"):
        explorer.select(30)


def test_info_panel_lists_the_strongest_links(explorer):
    explorer.select(20)
    matrix = explorer.matrix
    strongest_earlier = int(np.argmax(matrix[20, :20]))
    strongest_later = 21 + int(np.argmax(matrix[21:, 20]))
    text = explorer.views.info_div.text
    assert f"#{strongest_earlier}</b>" in text.split("Attended to most by")[0]
    assert f"#{strongest_later}</b>" in text.split("Attended to most by")[1]


def test_layer_head_pickers_swap_the_one_matrix(explorer):
    data = explorer.data
    explorer.layer_picker.value = 2
    assert explorer.layer_head == (2, None)
    assert not explorer.head_picker.disabled
    image = explorer.views.heat.data["image"][0]
    np.testing.assert_allclose(np.tril(image), np.tril(data.sentence_attention[2].mean(0)), rtol=1e-6)
    assert np.isnan(image[0, 1])
    explorer.head_picker.value = 1
    assert explorer.layer_head == (2, 1)
    np.testing.assert_array_equal(
        np.tril(explorer.views.heat.data["image"][0]), data.sentence_attention[2, 1]
    )
    assert "layer 2, head 1" in explorer.views.heat_figure.title.text
    explorer.set_layer_head(None)
    assert explorer.layer_picker.value == -1 and explorer.head_picker.disabled
    np.testing.assert_allclose(explorer.matrix, select_matrix(data, None, None))


def test_layer_change_updates_the_info_panel_of_the_selection(explorer):
    explorer.select(10)
    before = explorer.views.info_div.text
    explorer.set_layer_head(1, 0)
    assert explorer.selected == 10
    assert explorer.views.info_div.text != before
    assert "layer 1, head 0" in explorer.views.info_div.text


def test_tag_filter_dims_other_tags_in_bars_and_text(explorer):
    data = explorer.data
    keep = data.tags_present()[:2]
    explorer.tag_filter.value = tuple(keep)
    alpha = explorer.views.sentences.data["alpha"]
    for tag, a in zip(data.tags, alpha, strict=True):
        assert (a == 1.0) == (tag in keep)
    dimmed = [i for i, t in enumerate(data.tags) if t not in keep][0]
    span = explorer.views.text_div.text.split(f'data-sw-index="{dimmed}"')[1].split(">")[0]
    assert "opacity:" in span
    with pytest.raises(ValueError, match="no sentence has"):
        explorer.set_tag_filter(["unknown"] if "unknown" not in data.tags else ["bogus"])


def test_long_traces_send_only_a_pooled_matrix():
    data = synthetic_example(S=420, L=2, H=2, seed=0)
    explorer = build_explorer(data, max_size=150)
    image = explorer.views.heat.data["image"][0]
    assert image.shape == (150, 150)
    np.testing.assert_allclose(
        np.tril(image), np.tril(downsample(select_matrix(data, None, None), 150)), rtol=1e-5
    )
    # Tap coordinates stay in sentence units.
    explorer.views.heat_figure._trigger_event(Tap(model=explorer.views.heat_figure, x=333.2, y=400.0))
    assert explorer.selected == 333


def _document_bytes(explorer):
    from bokeh.core.json_encoder import serialize_json

    return len(serialize_json(explorer.bokeh_widget.render_bundle))


def test_document_size_does_not_grow_with_layers_and_heads():
    # Only the current pooled matrix is in the document, never L*H*S*S.
    small = build_explorer(synthetic_example(S=120, L=1, H=1, seed=0))
    large = build_explorer(synthetic_example(S=120, L=6, H=4, seed=0))
    assert abs(_document_bytes(large) - _document_bytes(small)) < 0.05 * _document_bytes(small)
    assert _document_bytes(large) < 6 * 4 * 120 * 120 * 4 / 4


# ------------------------------------------------------------------ needle route panel


def test_no_route_no_route_panel(explorer):
    assert explorer.views.route_figure is None and explorer.views.route_edges is None
    assert explorer.views.layout.select_one({"name": "sw_route"}) is None


def test_route_panel_below_the_views_and_a_tapped_edge_selects_its_sentence():
    from bokeh.models import CustomJS, TapTool

    from tests.widgets.route_example import with_route

    explorer = build_explorer(with_route(synthetic_example(S=30, L=3, H=2, seed=3)))
    views = explorer.views
    assert views.layout.children[-1] is views.route_figure
    assert views.layout.select_one({"name": "sw_route"}) is views.route_figure
    # Edges: needle (sentence 2) -> sentence 5, sentence 5 -> output (29), pruned needle -> output.
    assert list(views.route_edges.data["sentence"]) == [2, 5, 2]
    assert any(isinstance(t, TapTool) for t in views.route_figure.tools)
    assert isinstance(views.route_edges.selected.js_property_callbacks["change:indices"][0], CustomJS)
    views.route_edges.selected.indices = [1]  # what a tap in the browser sends back
    _assert_selected_everywhere(explorer, 5)
    views.route_edges.selected.indices = [0]
    _assert_selected_everywhere(explorer, 2)


def test_route_without_token_spans_is_shown_unlinked():
    from tests.widgets.route_example import with_route

    explorer = build_explorer(with_route(synthetic_example(S=12, L=3, H=2), token_spans=False))
    assert "not linked" in explorer.views.route_figure.title.text
    assert list(explorer.views.route_edges.data["sentence"]) == [-1, -1, -1]
    explorer.views.route_edges.selected.indices = [0]
    assert explorer.selected is None


def test_explore_takes_a_route_for_ready_data():
    from stream_widgets.explore import explore
    from tests.widgets.route_example import with_route

    data = synthetic_example(S=12, L=3, H=2)
    route = with_route(data).route
    short = dataclasses.replace(data, meta={**data.meta, "tokens": 100})
    with pytest.raises(ValueError, match="outside"):
        explore(short, route=route)  # the output position (114) is past the text's 100 tokens
    explorer = explore(dataclasses.replace(data, meta={**data.meta, "tokens": 120}), route=route)
    assert explorer.data.route == route and explorer.views.route_figure is not None
    assert explore(data).views.route_figure is None
