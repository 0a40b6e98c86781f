"""The standalone report: files, their content, no remote resources, size bound."""

import csv
import json
import re

import numpy as np
import pytest

from stream_widgets.views import synthetic_example
from stream_widgets.views.report_files import REPORT_FILES, write_report


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
    order = [
        i
        for i in np.argsort(-np.nan_to_num(data.anchor_scores, nan=-np.inf), kind="stable")
        if data.scored[i]
    ]
    assert [a["index"] for a in summary["top_anchors"]] == [int(i) for i in order[:10]]
    assert summary["n_scored"] == int(data.scored.sum()) < data.n_sentences
    first = summary["top_anchors"][0]
    assert first["anchor_score"] == pytest.approx(float(np.nanmax(data.anchor_scores)))
    assert first["tag"] == data.tags[first["index"]]
    assert first["char_span"] == list(data.char_spans[first["index"]])
    assert summary["tag_counts"] == {t: data.tags.count(t) for t in data.tags_present()}
    for tag, mean in summary["mean_anchor_score_per_tag"].items():
        scored = [
            s for s, t in zip(data.anchor_scores, data.tags, strict=True) if t == tag and np.isfinite(s)
        ]
        assert mean == (pytest.approx(np.mean(scored)) if scored else None)
    assert sum(r["scored"] for r in summary["tag_table"]) == summary["n_scored"]
    assert summary["top_anchors"][0]["evidence"]["position baseline"] == pytest.approx(
        data.evidence["position baseline"][first["index"]]
    )
    assert set(summary["evidence_spearman"]) == {"position baseline"}
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
        "tagger_tag",
        "tag_confidence",
        "anchor_score",
        "position baseline",
        "char_start",
        "char_end",
    ]
    for i, row in enumerate(rows):
        assert int(row["index"]) == i
        assert row["sentence"] == data.sentences[i]
        assert row["tag"] == data.tags[i] == row["tagger_tag"]
        assert float(row["tag_confidence"]) == data.tag_confidence[i]
        if data.scored[i]:
            assert float(row["anchor_score"]) == data.anchor_scores[i]
        else:
            assert row["anchor_score"] == ""  # not scored: empty, never 0
        assert float(row["position baseline"]) == data.evidence["position baseline"][i]
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
    # every (layer, head) is reachable: the receiver average, every layer's mean, every head
    assert len(summary["heatmap_matrices"]) == 1 + 30 + 30 * 9 and summary["heatmap_matrices_left_out"] == []
    assert summary["heatmap_bins"][0] == 200 and min(summary["heatmap_bins"]) >= 16


def test_matrix_budget_leaves_matrices_out_and_says_so(tmp_path):
    data = synthetic_example(S=60, L=6, H=2, seed=0)
    page = write_report(data, tmp_path, max_matrix_bytes=0).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["heatmap_matrices"]) == 1  # the receiver-head average is always in
    assert len(summary["heatmap_matrices_left_out"]) == 6 + 6 * 2
    assert "matrices are left out (file budget)" in page


def test_matrix_budget_pools_single_heads_and_says_so(tmp_path):
    data = synthetic_example(S=120, L=6, H=4, seed=0)
    page = write_report(data, tmp_path, max_matrix_bytes=200_000).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["heatmap_matrices_left_out"] == []
    bins = dict(zip(summary["heatmap_matrices"], summary["heatmap_bins"], strict=True))
    assert bins[summary["heatmap_matrices"][0]] == 120
    assert min(bins.values()) < 120
    assert "matrices are stored pooled" in page


def test_a_short_trace_gets_a_report_with_nothing_scored(tmp_path):
    data = synthetic_example(S=7, L=2, H=2, seed=0)
    assert data.scored.sum() == 0
    write_report(data, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_scored"] == 0 and summary["top_anchors"] == []
    assert all(r["mean_anchor_score"] is None for r in summary["tag_table"])


def test_corrections_are_re_applied_when_rebuilt_into_the_same_folder(tmp_path):
    from stream_widgets.views.corrections import corrections_document, save_corrections

    data = synthetic_example(S=20, L=2, H=2, seed=0)
    write_report(data, tmp_path)
    assert not (tmp_path / "tag_corrections.json").exists()
    document = corrections_document(data)
    document["corrections"] = [
        {
            "index": 3,
            "char_start": data.char_spans[3][0],
            "char_end": data.char_spans[3][1],
            "sentence": data.sentences[3],
            "tag": "self_checking",
            "tagger_tag": data.tags[3],
        }
    ]
    save_corrections(document, tmp_path)  # what the page's download button saves, put into the folder
    write_report(data, tmp_path)
    with open(tmp_path / "sentences.csv", newline="", encoding="utf-8") as f:
        row = list(csv.DictReader(f))[3]
    assert row["tag"] == "self_checking" and row["tagger_tag"] == data.tags[3]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tag_corrections"] == 1
    assert (
        json.loads((tmp_path / "tag_corrections.json").read_text())["corrections"][0]["tag"]
        == "self_checking"
    )


def test_corrections_for_other_sentences_are_skipped_with_a_warning(tmp_path):
    from stream_widgets.views.corrections import apply_corrections, corrections_document

    data = synthetic_example(S=10, L=1, H=1)
    document = corrections_document(data)
    document["corrections"] = [
        {
            "index": 0,
            "char_start": 0,
            "char_end": 3,
            "sentence": data.sentences[0],
            "tag": "x",
            "tagger_tag": "y",
        }
    ]
    with pytest.warns(UserWarning, match="1 of 1 tag corrections match no sentence"):
        again = apply_corrections(data, document)
    assert again.tags == data.tags


def test_a_bad_corrections_file_is_refused(tmp_path):
    (tmp_path / "tag_corrections.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a tag corrections file"):
        write_report(synthetic_example(S=6, L=1, H=1), tmp_path)


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
    from tests.views.route_example import with_route

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
    from stream_widgets.views import report
    from tests.views.route_example import with_route

    data = synthetic_example(S=12, L=3, H=2)
    route = with_route(data).route
    report(data, tmp_path, route=route)
    assert '"sw_route"' in (tmp_path / "report.html").read_text()


def test_size_bound_with_a_route(tmp_path):
    from tests.views.route_example import with_route

    data = with_route(synthetic_example(S=200, L=30, H=9, seed=0))
    size = write_report(data, tmp_path).stat().st_size
    assert size <= 3_000_000, f"report.html is {size / 1e6:.2f} MB"


_REPORT_WRITER = """
import sys
from stream_widgets.views import synthetic_example, write_report
data = [synthetic_example(S=60, L=3, H=3, seed=s) for s in (0, 1)]
for i, d in enumerate(data):
    d.meta["title"] = f"generation {i}"
print("ready", flush=True)
while True:
    for d in data:
        write_report(d, sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_write_report_leaves_the_old_report_or_the_new_one(tmp_path):
    import json
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from stream_widgets.views import synthetic_example, write_report

    folder = tmp_path / "report"
    first = synthetic_example(S=60, L=3, H=3, seed=0)
    first.meta["title"] = "generation 0"
    write_report(first, folder)
    rng = random.Random(3)
    for kill in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", _REPORT_WRITER, str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.5, 3.0))
        child.send_signal(signal.SIGTERM if kill % 3 == 2 else signal.SIGKILL)
        child.wait()
        summary = json.loads((folder / "summary.json").read_text())
        generation = summary["meta"]["title"]
        # the HTML, the summary and the CSV are always of one generation
        assert f"<title>{generation}</title>" in (folder / "report.html").read_text()
        csv_rows = (folder / "sentences.csv").read_text().splitlines()
        assert len(csv_rows) == 61 and summary["n_sentences"] == 60
        write_report(first, folder)
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "report"]
        assert leftovers == [], leftovers  # the next write removed what the killed one left
