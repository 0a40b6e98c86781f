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
