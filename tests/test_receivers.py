"""Receiver heads: per-trace kurtosis, split-half reliability, corpus heads saved and found by model id."""

import numpy as np
import pytest
from scipy.stats import kurtosis

from stream_widgets.receivers import (
    CorpusHeads,
    corpus_heads,
    save_corpus_heads,
    split_half_reliability,
    top_heads,
    trace_kurtosis,
)
from stream_widgets.vertical import vertical_scores


def _causal(rng, layers, heads, s):
    a = rng.random((layers, heads, s, s)) ** 3
    rows, cols = np.indices((s, s))
    return np.where(rows >= cols, a / (1.0 + rows - cols), 0.0)


def test_trace_kurtosis_matches_scipy_per_head_and_needs_four_scored_sentences():
    rng = np.random.default_rng(0)
    a = _causal(rng, 2, 3, 16)
    got = trace_kurtosis(a, variant="raw", min_later=1)
    for layer in range(2):
        for head in range(3):
            v = vertical_scores(a[layer, head], variant="raw", min_later=1)
            assert got[layer, head] == pytest.approx(kurtosis(v[~np.isnan(v)], fisher=True))
    assert np.isnan(trace_kurtosis(_causal(rng, 2, 3, 7), variant="raw", min_later=1)).all()  # 3 scored


def test_top_heads_order_ties_and_nans():
    kurt = np.array([[1.0, np.nan, 3.0], [3.0, 0.5, -1.0]])
    assert top_heads(kurt, 4) == [(0, 2), (1, 0), (0, 0), (1, 1)]
    assert top_heads(kurt, 6)[-1] == (0, 1)  # NaN last
    with pytest.raises(ValueError, match="only 6 heads"):
        top_heads(kurt, 7)


def test_split_half_reliability_sees_a_shared_head_profile_and_noise():
    rng = np.random.default_rng(1)
    profile = rng.normal(size=(4, 5)) * 3
    groups = [f"p{i // 2}" for i in range(20)]  # 10 problems, two traces each
    shared = np.stack([profile + rng.normal(size=(4, 5)) * 0.3 for _ in groups])
    noise = rng.normal(size=(20, 4, 5))
    reliable = split_half_reliability(shared, groups, splits=50)
    unreliable = split_half_reliability(noise, groups, splits=50)
    assert reliable.groups == 10 and len(reliable.r) == 50
    assert reliable.mean_r > 0.95 and abs(unreliable.mean_r) < 0.3
    assert split_half_reliability(shared, groups, splits=50).r == reliable.r  # seeded
    with pytest.raises(ValueError, match="at least 2 groups"):
        split_half_reliability(shared, ["one"] * 20)


def test_split_keeps_the_traces_of_one_problem_together():
    # two problems whose traces are identical within a problem and opposite across: every split puts one
    # problem on each side, so r is exactly -1; a split by trace would mix them
    a, b = np.arange(6.0).reshape(1, 2, 3), -np.arange(6.0).reshape(1, 2, 3)
    result = split_half_reliability(np.concatenate([a, a, b, b]), ["x", "x", "y", "y"], splits=10)
    assert result.r == pytest.approx((-1.0,) * 10)


def test_corpus_heads_round_trip_and_lookup(tmp_path):
    rng = np.random.default_rng(2)
    kurt = rng.normal(size=(3, 4))
    kurt[0, 1] = np.nan
    entries = [
        CorpusHeads(
            "org/model",
            v,
            kurt + i,
            split_half_reliability(rng.normal(size=(6, 3, 4)), list("aabbcc"), splits=5),
            ("t1", "t2"),
        )
        for i, v in enumerate(("raw", "distance"))
    ]
    path = save_corpus_heads(entries, tmp_path)
    assert path.name == "org__model.json"
    found = corpus_heads("org/model", "distance", directory=tmp_path)
    np.testing.assert_array_equal(found.kurtosis, kurt + 1)
    assert found.reliability == entries[1].reliability and found.heads(2) == top_heads(kurt, 2)
    assert corpus_heads("org/model", "depth", directory=tmp_path) is None
    assert corpus_heads("org/model", "raw", min_later=4, directory=tmp_path) is None
    assert corpus_heads("other/model", "raw", directory=tmp_path) is None
    (tmp_path / "bad__model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable corpus-heads file"):
        corpus_heads("bad/model", "raw", directory=tmp_path)
    with pytest.raises(ValueError, match="variant"):
        corpus_heads("org/model", "fancy", directory=tmp_path)
