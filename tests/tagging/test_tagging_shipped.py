"""The shipped model (slow: loads it) reproduces the resubstitution figures of docs/tagger.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tagger.json"


@pytest.mark.slow
def test_shipped_model_matches_docs():
    from tagging.dataset import labelled_traces
    from tagging.evaluate import shipped_resubstitution

    expected = json.loads(DOCS.read_text(encoding="utf-8"))["shipped"]
    found = shipped_resubstitution(labelled_traces())
    assert found["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert found["macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)


@pytest.mark.slow
def test_a_cross_validation_fold_matches_docs():
    """Re-running one held-out fold of `python -m tagging.evaluate` gives the accuracy the docs quote."""
    import numpy as np

    from tagging.dataset import labelled_traces
    from tagging.tags import FUNCTION_TAGS
    from tagging.train import fit_classifier

    fold = json.loads(DOCS.read_text(encoding="utf-8"))["cross_validation"]["tagger"]["folds"][0]
    traces = labelled_traces()
    train = [t for t in traces if t.problem_id not in fold["held_out"]]
    test = [t for t in traces if t.problem_id in fold["held_out"]]
    classifier = fit_classifier(train)
    gold = [tag for t in test for tag in t.tags]
    rows = np.vstack(classifier.predict_proba_many([t.sentences for t in test]))
    predicted = [FUNCTION_TAGS[k] for k in rows.argmax(axis=1)]
    assert len(gold) == fold["sentences"]
    # lbfgs may differ in the last bits across BLAS builds: allow a sentence or two to flip
    assert np.mean([g == p for g, p in zip(gold, predicted, strict=True)]) == pytest.approx(
        fold["accuracy"], abs=0.005
    )


@pytest.mark.slow
def test_shipped_pipeline_splits_by_the_default_rules():
    import tagging
    from tagging.dataset import TRAINING_SENTENCE_RULES, labelled_traces

    nlp = tagging.load()
    assert nlp.get_pipe("cot_chunker").rules == "default"
    assert TRAINING_SENTENCE_RULES == "thought-anchors"
    doc = nlp("<think>The total is 9! / (5! * 2! * 2! * 1!) arrangements. Then we divide.</think>")
    assert len(doc.spans["cot"]) == 2
    # the training data are the labelled chunks themselves
    assert (
        sum(len(t.sentences) for t in labelled_traces())
        == json.loads(DOCS.read_text(encoding="utf-8"))["data"]["sentences"]
    )
