"""The standalone report: files, their content, no remote resources, size bound."""

import csv
import json
import re

import numpy as np
import pytest

from stream_widgets.html_report import REPORT_FILES, write_report
from stream_widgets.widgets import synthetic_example


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    data = synthetic_example(S=30, L=3, H=2, seed=2)
    data.sentences[4] = 'A sentence with "quotes", commas, a $5 price and $x^2$ math.'
    out = tmp_path_factory.mktemp("report")
    return data, write_report(data, out / "nested" / "dir")


def test_writes_all_files_and_returns_the_html(small_report):
    _, html_path = small_report
    assert html_path.name == "report.html"
    assert sorted(p.name for p in html_path.parent.iterdir()) == sorted(REPORT_FILES)


def test_html_loads_no_remote_resource(small_report):
    _, html_path = small_report
    page = html_path.read_text()
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, flags=re.IGNORECASE)
    assert tags, "expected inline <script> tags"
    for tag in tags:
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", tag, flags=re.IGNORECASE), tag
    assert "Bokeh.embed" in page or "embed_items" in page
    assert len(page) > 1_000_000  # BokehJS is inlined, not linked


def test_summary_json(small_report):
    data, html_path = small_report
    summary = json.loads((html_path.parent / "summary.json").read_text())
    order = np.argsort(-data.anchor_scores, kind="stable")
    assert [a["index"] for a in summary["top_anchors"]] == [int(i) for i in order[:10]]
    first = summary["top_anchors"][0]
    assert first["anchor_score"] == pytest.approx(float(data.anchor_scores.max()))
    assert first["tag"] == data.tags[first["index"]]
    assert first["char_span"] == list(data.char_spans[first["index"]])
    assert summary["tag_counts"] == {t: data.tags.count(t) for t in data.tags_present()}
    for tag, mean in summary["mean_anchor_score_per_tag"].items():
        expected = np.mean([s for s, t in zip(data.anchor_scores, data.tags, strict=True) if t == tag])
        assert mean == pytest.approx(expected)
    assert summary["meta"]["synthetic"] is True
    assert summary["heatmap_matrices"][0].startswith("receiver-head average")
    assert summary["n_sentences"] == 30 and summary["n_layers"] == 3 and summary["n_heads"] == 2


def test_sentences_csv_round_trips(small_report):
    data, html_path = small_report
    with open(html_path.parent / "sentences.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == data.n_sentences
    assert list(rows[0]) == [
        "index",
        "sentence",
        "tag",
        "anchor_score",
        "vertical_score",
        "char_start",
        "char_end",
    ]
    for i, row in enumerate(rows):
        assert int(row["index"]) == i
        assert row["sentence"] == data.sentences[i]
        assert row["tag"] == data.tags[i]
        assert float(row["anchor_score"]) == data.anchor_scores[i]
        assert float(row["vertical_score"]) == data.vertical_scores[i]
        assert (int(row["char_start"]), int(row["char_end"])) == data.char_spans[i]


def test_rewrite_is_atomic_and_leaves_no_temp_files(small_report, tmp_path):
    data, _ = small_report
    write_report(data, tmp_path)
    write_report(data, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="ExploreData"):
        write_report({"text": ""}, tmp_path)
    with pytest.raises(ValueError, match="max_size"):
        write_report(synthetic_example(S=5, L=1, H=1), tmp_path, max_size=1)


def test_size_bound_for_a_200_sentence_trace(tmp_path):
    # About a 6k-token trace with the default model's 30 layers and 9 heads.
    data = synthetic_example(S=200, L=30, H=9, seed=0)
    html_path = write_report(data, tmp_path)
    size = html_path.stat().st_size
    assert size <= 3_000_000, f"report.html is {size / 1e6:.2f} MB"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["heatmap_matrices"]) >= 1 + 30  # receiver average and every layer's head mean


def test_matrix_budget_leaves_matrices_out_and_says_so(tmp_path):
    data = synthetic_example(S=60, L=6, H=2, seed=0)
    write_report(data, tmp_path, max_matrix_bytes=0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["heatmap_matrices"]) == 1  # the receiver-head average is always in
    assert len(summary["heatmap_matrices_left_out"]) == 6 + len(data.receiver_heads)


def test_long_trace_heatmap_is_pooled(tmp_path):
    data = synthetic_example(S=450, L=2, H=2, seed=0)
    write_report(data, tmp_path, max_size=120)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["heatmap_size"] == 120
    assert (tmp_path / "report.html").stat().st_size < 3_000_000


# ---------------------------------------------------------------------------- needle route panel


def _remote_refs(page):
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, flags=re.IGNORECASE)
    return [t for t in tags if re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", t, flags=re.IGNORECASE)]


def test_route_panel_only_with_a_route(small_report, tmp_path):
    from tests.widgets.route_example import with_route

    data, html_path = small_report
    assert '"sw_route"' not in html_path.read_text()
    assert json.loads((html_path.parent / "summary.json").read_text())["route"] is None

    routed = with_route(data)
    page = write_report(routed, tmp_path).read_text()
    assert '"sw_route"' in page and '"sw_route_edges"' in page
    assert _remote_refs(page) == []
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["route"] == json.loads(json.dumps(routed.route.to_dict()))


def test_report_takes_a_route_argument(tmp_path):
    from stream_widgets.explore import report
    from tests.widgets.route_example import with_route

    data = synthetic_example(S=12, L=3, H=2)
    route = with_route(data).route
    report(data, tmp_path, route=route)
    assert '"sw_route"' in (tmp_path / "report.html").read_text()


def test_size_bound_with_a_route(tmp_path):
    from tests.widgets.route_example import with_route

    data = with_route(synthetic_example(S=200, L=30, H=9, seed=0))
    size = write_report(data, tmp_path).stat().st_size
    assert size <= 3_000_000, f"report.html is {size / 1e6:.2f} MB"
