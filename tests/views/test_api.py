"""From a real trace to the views: explore_data, explore(), report() and the CLI report command."""

import json

import numpy as np
import pytest

import stream_widgets as sw
from stream_widgets.anchors import anchor_scores, sentence_attention, vertical_scores
from stream_widgets.cli import main
from stream_widgets.views import explore_data
from tests.views.evidence_example import bundled_importance

pytestmark = pytest.mark.slow


def test_explore_data_of_a_real_trace(real_trace, real_explore_data):
    data = real_explore_data
    s = len(real_trace.sentences)
    assert data.n_sentences == s and data.sentence_attention.shape == (30, 9, s, s)
    assert data.vertical_scores.shape == (30, 9, s)
    # the default model ships corpus receiver heads: they are the default
    assert len(data.receiver_heads) == 20 and data.meta["receiver_heads_source"] == "corpus"
    # The anchor scores are the anchors API's, NaN (not 0) where a sentence cannot be scored.
    expected = anchor_scores(real_trace, data.receiver_heads)
    np.testing.assert_allclose(data.anchor_scores, expected, equal_nan=True)
    assert np.isnan(data.anchor_scores[-4:]).all() and np.isfinite(data.anchor_scores[:-4]).all()
    np.testing.assert_allclose(
        data.vertical_scores, vertical_scores(sentence_attention(real_trace)), equal_nan=True
    )
    assert data.meta["score_variant"] == "raw" and 0 <= data.meta["sparsity"] < 1
    assert list(data.evidence) == ["position baseline"]
    own = explore_data(real_trace, receiver_heads="trace")
    assert own.meta["receiver_heads_source"] == "trace" and own.receiver_heads != data.receiver_heads
    # Tags come from the tagger run on the trace's own sentences, with their confidences.
    assert np.isfinite(data.tag_confidence).all() and (data.tag_confidence > 0).all()
    assert data.tag_vocabulary[-1] == "unknown" and len(data.tag_vocabulary) == 9


def test_explicit_tags_and_heads_are_used(real_trace):
    s = len(real_trace.sentences)
    heads = [(0, 0), (29, 8)]
    data = explore_data(real_trace, tags=["unknown"] * s, receiver_heads=heads, variant="raw")
    # given tags carry no tagger confidence; given heads make the anchor score
    assert np.isnan(data.tag_confidence).all() and data.meta["receiver_heads_source"] == "given"
    expected = anchor_scores(real_trace, heads, variant="raw")
    np.testing.assert_allclose(data.anchor_scores, expected, equal_nan=True)
    assert not np.allclose(np.nan_to_num(expected), np.nan_to_num(anchor_scores(real_trace, variant="raw")))
    with pytest.raises(ValueError, match="tags"):
        explore_data(real_trace, tags=["unknown"])


def test_evidence_and_suppression_pass_through_to_the_files(real_trace, tmp_path):
    evidence = bundled_importance([sentence.text for sentence in real_trace.sentences])
    assert np.isfinite(evidence["counterfactual_importance_kl"]).sum() >= 10
    s = len(real_trace.sentences)
    suppression = np.tril(np.random.default_rng(0).random((s, s)), k=-1)
    data = explore_data(real_trace, evidence=evidence, suppression=suppression)
    assert set(data.evidence) == {*evidence, "position baseline", "suppression importance"}
    sw.report(data, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["evidence_spearman"]["counterfactual_importance_kl"]["n"] >= 10
    assert np.allclose(np.array(summary["suppression"], dtype=float), suppression)
    header = (tmp_path / "sentences.csv").read_text().splitlines()[0]
    assert "counterfactual_importance_kl" in header and "resampling_importance_accuracy" in header


def test_token_view_of_recorded_heads(default_model):
    from stream_widgets.tracer import trace

    model, tokenizer = default_model
    text = (
        "<think>Okay, I need the sum of 3 and 4. Adding them gives 7. Let me check: 7 - 4 = 3. Yes.</think>"
    )
    result = trace(model, tokenizer, text, layers=[2], heads=[0, 5], progress=False)
    data = explore_data(result)
    view = data.token_view
    assert view.heads == [(2, 0), (2, 5)] and len(view.tokens) == result.seq_len
    dense = result.token_attention(2, 5).numpy()
    np.testing.assert_allclose(view.values[1].sum(axis=1), dense.sum(axis=1), rtol=1e-5)
    explorer = sw.explore(data)
    explorer.select(1)
    start, end = data.token_spans[1]
    assert explorer.views.tokens.data["image"][0].shape == (end - start, view.n_bins)


def test_think_right_after_the_last_sentence_and_a_short_trace_still_get_views(default_model, tmp_path):
    # The README's tagger example: `</think>` directly follows the last sentence, and only 4 sentences:
    # nothing can be scored; for a model without corpus heads receiver heads cannot be picked: the views
    # still render and say why.
    import dataclasses

    from stream_widgets.tracer import trace

    model, tokenizer = default_model
    text = "<think>Okay, I need the sum. 3 + 4 = 7. Wait, let me check that. So the answer is \\boxed{7}.</think>"
    result = dataclasses.replace(
        trace(model, tokenizer, text, progress=False), model_id="a/model-without-corpus-heads"
    )
    data = explore_data(result)
    assert data.n_sentences == len(result.sentences) and data.scored.sum() == 0
    assert data.meta["receiver_heads_source"] == "all heads" and len(data.receiver_heads) == 30 * 9
    html = sw.report(result, tmp_path)
    assert html.is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_scored"] == 0 and summary["receiver_heads_source"] == "all heads"
    assert sw.explore(result).selected is None


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
