"""Thought anchors: vertical scores, receiver heads and anchors against loop references; Stream vs dense."""

import numpy as np
import pytest
import torch
from scipy.stats import kurtosis, rankdata, spearmanr

from stream_widgets.anchors import (
    Anchor,
    anchor_scores,
    head_kurtosis,
    mean_sentence_attention,
    receiver_heads,
    sentence_attention,
    thought_anchors,
    vertical_scores,
)
from stream_widgets.sentences import Sentence


def _causal_random(rng, *shape):
    """Random ``[..., S, S]`` lower-triangular matrix with a recency bias, like real sentence attention."""
    s = shape[-1]
    a = rng.random(shape) ** 3
    rows, cols = np.indices((s, s))
    a = a / (1.0 + rows - cols).clip(min=1)
    return np.where(rows >= cols, a, 0.0)


# ----------------------------------------------------------------------------------- loop references
def _vertical_loop(a, proximity_ignore=4, variant="raw", min_later=1):
    s = a.shape[0]
    a = a.astype(np.float64).copy()
    if variant == "distance":
        profile = [np.mean([a[i, i - d] for i in range(d, s)]) for d in range(s)]
        b = np.zeros_like(a)
        for i in range(s):
            for j in range(i + 1):
                p = profile[i - j]
                b[i, j] = a[i, j] / p if p > 0 else a[i, j]
        a = b
    elif variant == "depth":
        b = np.zeros_like(a)
        for i in range(s):
            cells = [a[i, j] for j in range(s) if i - j >= proximity_ignore]
            if cells:
                ranks = rankdata(cells)
                for j, r in enumerate(ranks):
                    b[i, j] = r / len(cells)
        a = b
    out = np.full(s, np.nan)
    for j in range(s):
        rows = [a[i, j] for i in range(j + proximity_ignore, s)]
        if len(rows) >= min_later:
            out[j] = sum(rows) / len(rows)
    return out


@pytest.mark.parametrize("variant", ["raw", "depth", "distance"])
@pytest.mark.parametrize("proximity_ignore,min_later", [(4, 1), (1, 1), (4, 3), (2, 5)])
def test_vertical_scores_match_loop(variant, proximity_ignore, min_later):
    rng = np.random.default_rng(0)
    a = _causal_random(rng, 2, 3, 17, 17)
    got = vertical_scores(a, proximity_ignore, variant=variant, min_later=min_later)
    assert got.shape == (2, 3, 17)
    for layer in range(2):
        for head in range(3):
            want = _vertical_loop(a[layer, head], proximity_ignore, variant, min_later)
            np.testing.assert_allclose(got[layer, head], want, rtol=1e-12, equal_nan=True)
    # the last proximity_ignore + min_later - 1 sentences have too few later rows
    assert np.isnan(got[..., 17 - (proximity_ignore + min_later - 1) :]).all()
    assert not np.isnan(got[..., : 17 - (proximity_ignore + min_later - 1)]).any()


def test_vertical_scores_ignore_cells_near_and_above_diagonal():
    rng = np.random.default_rng(1)
    a = _causal_random(rng, 12, 12)
    b = a.copy()
    rows, cols = np.indices(a.shape)
    b[rows - cols < 4] = 99.0  # near the diagonal and above it: never read
    np.testing.assert_array_equal(vertical_scores(a, variant="raw"), vertical_scores(b, variant="raw"))


def test_control_depth_is_the_depth_variant_and_removes_row_scale():
    rng = np.random.default_rng(2)
    a = _causal_random(rng, 15, 15)
    scaled = a * rng.uniform(0.1, 10.0, size=(15, 1))  # every row on its own scale
    np.testing.assert_array_equal(vertical_scores(a, control_depth=True), vertical_scores(a, variant="depth"))
    np.testing.assert_allclose(vertical_scores(scaled, variant="depth"), vertical_scores(a, variant="depth"))
    assert not np.allclose(
        vertical_scores(scaled, variant="raw"), vertical_scores(a, variant="raw"), equal_nan=True
    )
    with pytest.raises(ValueError, match="control_depth"):
        vertical_scores(a, control_depth=True, variant="raw")


def test_distance_variant_flattens_a_pure_recency_profile():
    # attention that depends on distance only: every sentence is equally "anchored" after the control
    s = 20
    rows, cols = np.indices((s, s))
    a = np.where(rows >= cols, 1.0 / (1.0 + np.abs(rows - cols)) ** 2, 0.0)
    raw = vertical_scores(a, variant="raw", min_later=1)
    flat = vertical_scores(a, variant="distance", min_later=1)
    valid = ~np.isnan(flat)
    np.testing.assert_allclose(flat[valid], 1.0)
    assert np.nanargmax(raw) == valid.sum() - 1  # raw favours the latest sentence that has a score
    # one sentence that everyone attends to twice as much stands out after the control
    a[:, 5] *= 2.0
    a = np.where(rows >= cols, a, 0.0)
    assert np.nanargmax(vertical_scores(a, variant="distance", min_later=1)) == 5


def test_vertical_scores_errors():
    with pytest.raises(ValueError, match="variant"):
        vertical_scores(np.zeros((6, 6)), variant="median")
    with pytest.raises(ValueError, match=r"\[\.\.\., S, S\]"):
        vertical_scores(np.zeros((6, 5)))
    with pytest.raises(ValueError, match="proximity_ignore"):
        vertical_scores(np.zeros((6, 6)), proximity_ignore=0)
    with pytest.raises(ValueError, match="min_later"):
        vertical_scores(np.zeros((6, 6)), min_later=0)


def test_mean_sentence_attention_divides_by_token_pairs():
    sums = torch.tensor([[[[2.0, 0.0, 0.0], [3.0, 4.0, 0.0], [6.0, 0.0, 1.0]]]])
    counts = torch.tensor([2, 3, 0])
    got = mean_sentence_attention(sums, counts)
    want = np.array([[[[0.5, 0, 0], [0.5, 4 / 9, 0], [0, 0, 0]]]])
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="token_counts"):
        mean_sentence_attention(sums, counts[:2])


class _FakeTrace:
    """What the anchors code reads from a `Trace`: sentence sums and sentences with token spans."""

    def __init__(self, sums, token_counts):
        self.sentence_attention_sum = torch.as_tensor(sums, dtype=torch.float32)
        starts = np.concatenate([[0], np.cumsum(token_counts)[:-1]])
        self.sentences = [
            Sentence(i, f"sentence {i}.", 20 * i, 20 * i + 12, int(b), int(b + n))
            for i, (b, n) in enumerate(zip(starts, token_counts, strict=True))
        ]

    def sentence_token_counts(self):
        return torch.tensor([s.n_tokens for s in self.sentences])


def _kurtosis_loop(matrices, **kwargs):
    layers, heads = matrices[0].shape[:2]
    out = np.full((layers, heads), np.nan)
    for layer in range(layers):
        for head in range(heads):
            values = []
            for m in matrices:
                v = vertical_scores(m[layer, head], **kwargs)
                v = v[~np.isnan(v)]
                values.append(kurtosis(v, fisher=True))
            out[layer, head] = np.mean(values)
    return out


def test_receiver_heads_pick_highest_mean_kurtosis():
    rng = np.random.default_rng(3)
    matrices = [_causal_random(rng, 4, 5, s, s) for s in (14, 20, 25)]
    kwargs = {"variant": "raw", "min_later": 2}
    want = _kurtosis_loop(matrices, **kwargs)
    np.testing.assert_allclose(head_kurtosis(matrices, **kwargs), want, rtol=1e-10)
    order = sorted(
        ((want[layer, head], layer, head) for layer in range(4) for head in range(5)), reverse=True
    )
    assert receiver_heads(matrices, top=6, **kwargs) == [(layer, head) for _, layer, head in order[:6]]
    with pytest.raises(ValueError, match="only 20 heads"):
        receiver_heads(matrices, top=21, **kwargs)


def test_one_planted_receiver_head_is_found_and_drives_the_anchor():
    rng = np.random.default_rng(4)
    s = 30
    a = _causal_random(rng, 3, 4, s, s) * 0.01
    rows, cols = np.indices((s, s))
    a[1, 2][:, 7] += np.where(rows[:, 7] >= 7, 0.5, 0.0)  # head (1, 2) looks back at sentence 7
    heads = receiver_heads(a, top=1, variant="raw")
    assert heads == [(1, 2)]
    scores = anchor_scores(a, heads, variant="raw")
    assert np.nanargmax(scores) == 7
    np.testing.assert_allclose(scores, vertical_scores(a[1, 2], variant="raw"))


def test_thought_anchors_from_trace_sums():
    rng = np.random.default_rng(5)
    counts = rng.integers(3, 9, size=16)
    means = _causal_random(rng, 2, 3, 16, 16)
    means[:, :, :, 3] += np.where(np.arange(16) >= 3, 0.4, 0.0)
    fake = _FakeTrace(means * np.outer(counts, counts), counts)
    np.testing.assert_allclose(sentence_attention(fake), means, rtol=1e-5)
    anchors = thought_anchors(fake, top=3, variant="raw")
    assert len(anchors) == 3 and all(isinstance(x, Anchor) for x in anchors)
    assert anchors[0].index == 3 and anchors[0].text == "sentence 3."
    assert [x.score for x in anchors] == sorted((x.score for x in anchors), reverse=True)
    assert (anchors[0].sentence.token_start, anchors[0].sentence.token_end) == (
        int(counts[:3].sum()),
        int(counts[:4].sum()),
    )
    # explicit receiver heads and all sentences: at most the scored ones come back
    many = thought_anchors(fake, receiver_heads=[(0, 0)], top=100, variant="raw", min_later=1)
    assert len(many) == 16 - 4
    with pytest.raises(ValueError, match="out of range"):
        thought_anchors(fake, receiver_heads=[(5, 0)])
    fake.sentence_attention_sum = None
    with pytest.raises(ValueError, match="sentences=True"):
        sentence_attention(fake)


# ----------------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def dense_case(default_model):
    """One bundled trace cut to ~1k tokens: its Stream trace (default config) and dense sentence attention."""
    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.dense_reference import dense_sentence_attention, truncate_to_tokens
    from stream_widgets.tracer import trace

    model, tokenizer = default_model
    text = truncate_to_tokens(tokenizer, load_bundled_trace(list_bundled_traces()[1]).full_cot, 1024)
    traced = trace(model, tokenizer, text, progress=False)
    return traced, sentence_attention(traced), dense_sentence_attention(model, tokenizer, text)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["raw", "distance"])
def test_stream_anchors_agree_with_dense_reference(dense_case, variant):
    """Stream (default config, observe mode) against dense attention on one bundled trace cut to ~1k tokens.

    At 1,024 tokens the default config drops about 15% of the causal pairs; `benchmarks/anchors.py`
    measures more traces.
    """
    traced, stream, dense = dense_case
    assert stream.shape == dense.shape == (30, 9, len(traced.sentences), len(traced.sentences))
    # Stream records a subset of the same probabilities: never more than dense, equal where nothing is pruned
    assert (stream <= dense + 1e-5).all()
    assert np.abs(stream - dense).max() < 0.05
    assert float(traced.sparsity().mean()) > 0.1  # the mask does drop pairs
    a, b = anchor_scores(stream, variant=variant), anchor_scores(dense, variant=variant)
    valid = ~np.isnan(a)
    assert valid.sum() > 20 and (np.isnan(b) == ~valid).all()
    assert spearmanr(a[valid], b[valid]).statistic >= 0.9
    top_a = set(np.argsort(-np.nan_to_num(a, nan=-np.inf))[:5])
    top_b = set(np.argsort(-np.nan_to_num(b, nan=-np.inf))[:5])
    assert len(top_a & top_b) >= 4
    anchors = thought_anchors(traced, "trace", top=5, variant=variant)
    assert {x.index for x in anchors} == top_a and anchors[0].heads_from == "trace"
    # by default the model's shipped corpus heads
    corpus = thought_anchors(traced, top=5, variant=variant)
    assert corpus[0].heads_from == "corpus" and len(corpus[0].receiver_heads) == 20


@pytest.mark.slow
def test_cli_anchors_on_a_saved_trace(dense_case, tmp_path, capsys):
    import json

    from stream_widgets.cli import main

    traced, _, _ = dense_case
    path = traced.save(tmp_path / "trace.safetensors")
    assert main(["anchors", str(path), "--top", "3", "--json", str(tmp_path / "anchors.json")]) == 0
    printed = capsys.readouterr().out
    written = json.loads((tmp_path / "anchors.json").read_text())
    expected = thought_anchors(traced, top=3)
    assert [a["index"] for a in written["anchors"]] == [a.index for a in expected]
    assert f"[{expected[0].index:>3}]" in printed and "sparsity" in printed


# ----------------------------------------------------------------------------------- head choice and evidence
def test_head_choice_corpus_trace_or_given(monkeypatch, tmp_path):
    from stream_widgets import receivers
    from stream_widgets.anchors import choose_heads
    from stream_widgets.receivers import CorpusHeads, SplitHalf, save_corpus_heads

    rng = np.random.default_rng(7)
    counts = rng.integers(3, 9, size=20)
    fake = _FakeTrace(_causal_random(rng, 2, 3, 20, 20) * np.outer(counts, counts), counts)
    own, source = choose_heads(fake, None, top_heads=2, variant="raw")
    assert source == "trace" and own == receiver_heads(sentence_attention(fake), top=2, variant="raw")
    with pytest.raises(ValueError, match="no corpus receiver heads"):
        choose_heads(fake, "corpus", variant="raw")
    kurt = np.zeros((2, 3))
    kurt[1, 2], kurt[0, 1] = 5.0, 4.0
    save_corpus_heads([CorpusHeads("org/fake", "raw", kurt, SplitHalf(0.9, (0.9,), 8), ("a",))], tmp_path)
    monkeypatch.setattr(receivers, "CORPUS_DIR", tmp_path)
    monkeypatch.setattr(
        receivers.corpus_heads,
        "__kwdefaults__",
        {**receivers.corpus_heads.__kwdefaults__, "directory": tmp_path},
    )
    fake.model_id = "org/fake"
    assert choose_heads(fake, None, top_heads=2, variant="raw") == ([(1, 2), (0, 1)], "corpus")
    assert choose_heads(fake, "trace", top_heads=2, variant="raw") == (own, "trace")
    assert choose_heads(fake, [(0, 0)], variant="raw") == ([(0, 0)], "given")
    # a trace of the model with another variant has no corpus heads: its own are used
    assert choose_heads(fake, None, top_heads=2, variant="depth")[1] == "trace"
    anchors = thought_anchors(fake, top=2, variant="raw", top_heads=2)
    assert anchors[0].heads_from == "corpus" and anchors[0].receiver_heads == ((1, 2), (0, 1))
    want = anchor_scores(sentence_attention(fake), [(1, 2), (0, 1)], variant="raw")
    np.testing.assert_allclose([a.score for a in anchors], np.sort(want[~np.isnan(want)])[::-1][:2])


def test_evidence_beside_every_anchor():
    from stream_widgets.anchors import (
        POSITION_BASELINE,
        SUPPRESSION_IMPORTANCE,
        anchor_evidence,
        position_baseline,
    )

    np.testing.assert_allclose(position_baseline(5), [1.0, 0.75, 0.5, 0.25, 0.0])
    assert position_baseline(1).tolist() == [1.0]
    rng = np.random.default_rng(8)
    counts = rng.integers(3, 9, size=16)
    fake = _FakeTrace(_causal_random(rng, 2, 3, 16, 16) * np.outer(counts, counts), counts)
    matrix = np.tril(rng.normal(size=(16, 16)) - 10, k=-1)
    matrix[np.triu_indices(16)] = np.nan
    blackbox = {"counterfactual_importance_kl": rng.random(16), "empty": np.full(16, np.nan)}
    evidence = anchor_evidence(16, suppression=matrix, importance=blackbox)
    assert list(evidence) == [POSITION_BASELINE, SUPPRESSION_IMPORTANCE, "counterfactual_importance_kl"]
    np.testing.assert_allclose(evidence[SUPPRESSION_IMPORTANCE][:-1], np.nanmean(matrix, axis=0)[:-1])
    anchors = thought_anchors(fake, top=3, variant="raw", suppression=matrix, importance=blackbox)
    for a in anchors:
        assert a.evidence[POSITION_BASELINE] == pytest.approx(1 - a.index / 15)
        assert a.evidence["counterfactual_importance_kl"] == blackbox["counterfactual_importance_kl"][a.index]
        assert a.evidence[SUPPRESSION_IMPORTANCE] == pytest.approx(evidence[SUPPRESSION_IMPORTANCE][a.index])
    with pytest.raises(ValueError, match="for 16 sentences"):
        anchor_evidence(16, importance={"x": [1.0, 2.0]})


def test_thought_anchors_read_a_saved_trace(real_trace, tmp_path):
    path = real_trace.save(tmp_path / "t.safetensors")
    from_file = thought_anchors(str(path), top=3)
    assert [a.index for a in from_file] == [a.index for a in thought_anchors(real_trace, top=3)]
