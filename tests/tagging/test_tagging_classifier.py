"""Features, classifier, serialisation and the keyword baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tagging_toy_data import TOY_TAGS, TOY_TRACES

from tagging.classifier import ClassifierConfig, FunctionTagClassifier
from tagging.errors import TaggingError
from tagging.features import FeatureConfig, SentenceFeaturizer
from tagging.rules import keyword_tag, keyword_tags
from tagging.tags import FUNCTION_TAGS


@pytest.mark.parametrize(
    "kwargs",
    [{"word_ngrams": (2, 1)}, {"char_ngrams": (0, 3)}, {"min_df": 0}, {"neighbour_weight": 1.5}],
)
def test_feature_config_validation(kwargs):
    with pytest.raises(TaggingError, match="E005"):
        FeatureConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"C": 0.0}, {"class_weight": "auto"}, {"max_iter": 1}])
def test_classifier_config_validation(kwargs):
    with pytest.raises(TaggingError, match="E005"):
        ClassifierConfig(**kwargs)


def test_featurizer_shapes_and_state_round_trip():
    featurizer = SentenceFeaturizer(FeatureConfig(min_df=1)).fit(TOY_TRACES)
    x = featurizer.transform(TOY_TRACES)
    assert x.shape == (sum(map(len, TOY_TRACES)), featurizer.n_features)
    state, arrays = featurizer.get_state()
    restored = SentenceFeaturizer.from_state(json.loads(json.dumps(state)), arrays)
    y = restored.transform(TOY_TRACES)
    assert np.allclose(x.toarray(), y.toarray(), atol=1e-6)
    assert featurizer.transform([[]]).shape == (0, featurizer.n_features)


def test_unfitted_featurizer_errors():
    with pytest.raises(TaggingError, match="E002"):
        SentenceFeaturizer().transform(TOY_TRACES)


def test_classifier_learns_toy_data(toy_classifier):
    probabilities = toy_classifier.predict_proba(TOY_TRACES[0])
    assert probabilities.shape == (len(TOY_TRACES[0]), len(FUNCTION_TAGS))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    predicted = [FUNCTION_TAGS[k] for k in probabilities.argmax(axis=1)]
    assert predicted == TOY_TAGS[0]


def test_classifier_disk_round_trip(toy_classifier, tmp_path):
    toy_classifier.to_disk(tmp_path)
    loaded = FunctionTagClassifier.from_disk(tmp_path)
    for trace in TOY_TRACES:
        assert np.allclose(toy_classifier.predict_proba(trace), loaded.predict_proba(trace), atol=1e-6)


def test_classifier_missing_and_corrupt_files(toy_classifier, tmp_path):
    with pytest.raises(TaggingError, match="E003"):
        FunctionTagClassifier.from_disk(tmp_path / "nothing")
    toy_classifier.to_disk(tmp_path)
    (tmp_path / "classifier.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TaggingError, match="E004"):
        FunctionTagClassifier.from_disk(tmp_path)


def test_fit_input_errors():
    with pytest.raises(TaggingError, match="E007"):
        FunctionTagClassifier().fit([["a sentence"]], [[]])
    with pytest.raises(TaggingError, match="E008"):
        FunctionTagClassifier().fit([["a sentence"]], [["unknown"]])
    with pytest.raises(TaggingError, match="E009"):
        FunctionTagClassifier().fit([], [])


def test_keyword_rules():
    assert keyword_tag("Anything at all.", 0) == "problem_setup"
    assert keyword_tag("So the answer is \\boxed{3}.") == "final_answer_emission"
    assert keyword_tag("Wait, that seems off.") == "uncertainty_management"
    assert keyword_tag("Let me check this again.") == "self_checking"
    assert keyword_tag("Therefore x is 4.") == "result_consolidation"
    assert keyword_tag("3 * 4 = 12") == "active_computation"
    assert keyword_tags(["a", "b"]) == ["problem_setup", "active_computation"]
