"""The own-model corpus: in the bundled layout, loadable like the Thought Anchors traces, settings recorded."""

import json
import math

import numpy as np
import pytest

from stream_widgets.data import (
    CORPORA,
    IMPORTANCE_COLUMNS,
    OWN_MODEL_DIR,
    list_bundled_traces,
    load_bundled_trace,
)
from stream_widgets.importance import is_correct
from stream_widgets.sentences import split_sentences

OWN = list_bundled_traces("own-model")


def test_the_default_corpus_is_unchanged_and_the_second_is_separate():
    assert list_bundled_traces() == list_bundled_traces("thought-anchors")
    assert len(list_bundled_traces()) == 33
    assert not set(OWN) & set(list_bundled_traces())
    assert set(CORPORA) == {"thought-anchors", "own-model"}
    with pytest.raises(KeyError, match="unknown corpus"):
        list_bundled_traces("no-such-corpus")
    with pytest.raises(KeyError, match="own-model"):
        load_bundled_trace("problem_word_99", corpus="own-model")


def test_the_corpus_has_at_least_twenty_traces_under_its_licence():
    assert len(OWN) >= 20
    assert (OWN_MODEL_DIR / "LICENSE.md").is_file() and (OWN_MODEL_DIR / "README.md").is_file()
    assert sum("word_" in n for n in OWN) >= 15 and sum("word_" not in n for n in OWN) >= 5


@pytest.mark.parametrize("name", OWN)
def test_every_trace_loads_with_its_settings_and_chunks(name):
    trace = load_bundled_trace(name, corpus="own-model")
    assert trace.corpus == "own-model" and trace.is_math and trace.model == "qwen2.5-coder-0.5b-instruct"
    chunks = split_sentences(trace.full_cot, rules="thought-anchors")
    assert [c.text for c in chunks] == list(trace.chunks)
    assert trace.chunk_spans == tuple((c.char_start, c.char_end) for c in chunks)
    folder = OWN_MODEL_DIR / name
    base = json.loads((folder / "base_solution.json").read_text())
    problem = json.loads((folder / "problem.json").read_text())
    assert base["full_cot"] == base["prompt"] + base["solution"] and base["prompt"].endswith("<think>\n")
    generation = base["generation"]
    assert generation["model"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert {"seed", "temperature", "top_p", "max_new_tokens", "new_tokens"} <= set(generation)
    assert generation["new_tokens"] <= generation["max_new_tokens"]
    assert base["is_correct"] == bool(is_correct(base["answer"] or None, problem["gt_answer"]))
    assert set(IMPORTANCE_COLUMNS) <= set(json.loads((folder / "chunks_labeled.json").read_text())[0])
    info = json.loads((folder / "importance.json").read_text())
    if "forced" in info:
        kl = np.array(trace.importance["forced_importance_kl"])
        assert np.isfinite(kl).all() and (kl >= 0).all()
        assert len(info["forced"]["distributions"]) == len(chunks) + 1
        assert all(math.isclose(sum(row), 1.0, abs_tol=1e-4) for row in info["forced"]["distributions"])
    if "resampling" in info:
        assert len(info["resampling"]["answers"]) == len(chunks) + 1
        assert np.isfinite(trace.importance["resampling_importance_kl"]).all()
    # labels carry over to the default sentences too
    labels = trace.labels_for(split_sentences(trace.full_cot))
    assert len(labels.function_tags) == len(split_sentences(trace.full_cot))
