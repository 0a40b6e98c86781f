"""The needle route view, from plain route data."""

import pytest

from stream_widgets.ruler.routes import Route, find_route
from tests.ruler.captures import random_capture as _capture


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
