"""Fixtures of the tagger tests: a tiny classifier trained in milliseconds (the shipped model is not loaded)."""

from __future__ import annotations

import pytest
from tagging_toy_data import TOY_TAGS, TOY_TRACES

from tagging.classifier import FunctionTagClassifier
from tagging.features import FeatureConfig


@pytest.fixture(scope="session")
def toy_classifier() -> FunctionTagClassifier:
    features = FeatureConfig(
        min_df=1, max_word_features=500, max_char_features=500, max_neighbour_features=100
    )
    return FunctionTagClassifier(features).fit(TOY_TRACES, TOY_TAGS)


@pytest.fixture()
def toy_nlp(toy_classifier):
    from tagging import make_pipeline

    nlp = make_pipeline()
    nlp.get_pipe("function_tagger").classifier = toy_classifier
    return nlp
