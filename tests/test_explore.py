"""From a real trace to the views: explore_data, explore(), report() and the CLI report command."""

import json

import numpy as np
import pytest

import stream_widgets as sw
from stream_widgets.anchors import anchor_scores
from stream_widgets.cli import main
from stream_widgets.explore import explore_data

pytestmark = pytest.mark.slow


def test_explore_data_of_a_real_trace(real_trace, real_explore_data):
    data = real_explore_data
    s = len(real_trace.sentences)
    assert data.n_sentences == s and data.sentence_attention.shape == (30, 9, s, s)
    assert len(data.receiver_heads) == 20
    # The anchor scores are the receiver-head mean of the default variant's vertical scores.
    expected = np.nan_to_num(anchor_scores(real_trace, data.receiver_heads), nan=0.0)
    np.testing.assert_allclose(data.anchor_scores, expected)
    assert data.meta["score_variant"] == "raw" and 0 <= data.meta["sparsity"] < 1


def test_explicit_tags_and_heads_are_used(real_trace):
    s = len(real_trace.sentences)
    data = explore_data(real_trace, tags=["unknown"] * s, receiver_heads=[(0, 0), (29, 8)], variant="raw")
    assert data.tags == ["unknown"] * s and data.receiver_heads == [(0, 0), (29, 8)]
    with pytest.raises(ValueError, match="tags"):
        explore_data(real_trace, tags=["unknown"])


def test_explore_builds_the_linked_widget(real_trace):
    explorer = sw.explore(real_trace)
    explorer.select(2)
    assert explorer.selected == 2


def test_report_and_cli_from_a_saved_trace(real_trace, tmp_path, capsys):
    path = real_trace.save(tmp_path / "trace.safetensors")
    html = sw.report(path, tmp_path / "api")
    assert html.name == "report.html" and html.stat().st_size > 100_000
    assert main(["report", str(path), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "top thought anchors" in out
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "api" / "summary.json").read_text())


def test_cli_report_on_a_missing_or_corrupt_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a trace")
    assert main(["report", str(corrupt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("stream-widgets: error:") == 2
    assert not (tmp_path / "out" / "report.html").exists()
