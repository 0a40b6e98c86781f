"""benchmarks/anchors.py analyse on synthetic runs: the mixed-model targets stay, the own-model ones are found."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("anchors_benchmark", ROOT / "benchmarks" / "anchors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["anchors_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def _write_runs(folder: Path, corpus: str, problems: list[str], columns: list[str], seed=0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for n, problem in enumerate(problems):
        s = 16 + n
        arrays = {
            f"{side}_{v}": rng.random((2, 3, s))
            for side in ("stream", "dense")
            for v in ("raw", "depth", "distance")
        }
        for column in columns:
            arrays[f"importance_{column}"] = rng.random(s)
        arrays["token_counts"] = rng.integers(3, 30, s)
        meta = {
            "name": f"m/c/{problem}",
            "corpus": corpus,
            "problem": problem,
            "author": "m",
            "model_id": "tiny",
            "tokens": 10 * s,
            "sentences": s,
            "sparsity": 0.5,
            "seconds": {},
        }
        np.savez(folder / f"{problem}.npz", **arrays)
        (folder / f"{problem}.json").write_text(json.dumps(meta))


def _analyse(bench, runs: Path, out: Path, capsys):
    sys.argv = ["anchors.py", "analyse", "--runs", str(runs), "--json", str(out)]
    bench.main()
    return capsys.readouterr().out, json.loads(out.read_text())


def test_the_thought_anchors_table_keeps_its_two_targets(bench, tmp_path, capsys):
    problems = [*bench.PICK, "problem_2189", "problem_2238", "problem_3448", "problem_4682"]
    _write_runs(
        tmp_path / "runs", "thought-anchors", problems, list(bench.TARGETS) + ["forced_importance_kl"]
    )
    printed, summary = _analyse(bench, tmp_path / "runs", tmp_path / "a.json", capsys)
    assert printed.startswith(
        "| score | counterfactual KL: mean [95% CI] / pooled | beyond position | resampling accuracy: mean "
        "[95% CI] / pooled | beyond position | top-5 in last 30% | Spearman with length | Stream vs dense: "
        "Spearman / top-5 |\n|---|---|---|---|---|---:|---:|---|\n"
    )
    assert summary["targets"] == list(bench.TARGETS) and summary["corpus"] == "thought-anchors"


def test_the_own_model_table_uses_the_same_model_columns_present(bench, tmp_path, capsys):
    problems = [f"problem_word_{i:02d}" for i in range(1, 7)]
    _write_runs(
        tmp_path / "runs", "own-model", problems, ["forced_importance_kl", "forced_importance_accuracy"]
    )
    printed, summary = _analyse(bench, tmp_path / "runs", tmp_path / "a.json", capsys)
    assert summary["targets"] == ["forced_importance_kl", "forced_importance_accuracy"]
    assert "forced-answer KL: mean [95% CI] / pooled" in printed and "counterfactual KL" not in printed
    assert summary["pick_problems"] == problems[::2]
    row = summary["all_traces"]["position baseline"]
    assert set(row) >= {"forced_importance_kl", "forced_importance_accuracy"}
    # a column missing from one trace is no target
    (tmp_path / "runs" / "problem_word_01.npz").unlink()
    rng = np.random.default_rng(1)
    arrays = {
        f"{side}_{v}": rng.random((2, 3, 16))
        for side in ("stream", "dense")
        for v in ("raw", "depth", "distance")
    }
    arrays |= {
        "importance_forced_importance_kl": rng.random(16),
        "importance_forced_importance_accuracy": np.full(16, np.nan),
        "token_counts": np.ones(16),
    }
    np.savez(tmp_path / "runs" / "problem_word_01.npz", **arrays)
    _, summary = _analyse(bench, tmp_path / "runs", tmp_path / "b.json", capsys)
    assert summary["targets"] == ["forced_importance_kl"]


def test_own_model_runs_read_the_corpus_importance_as_it_is_now(bench):
    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.sentences import split_sentences

    name = list_bundled_traces("own-model")[0]
    trace = load_bundled_trace(name, corpus="own-model")
    sentences = split_sentences(trace.full_cot)
    got = bench.fresh_importance(name, [[s.char_start, s.char_end] for s in sentences])
    want = trace.labels_for(sentences).importance
    assert set(got) == {f"importance_{c}" for c in want}
    for column, values in want.items():
        np.testing.assert_array_equal(got[f"importance_{column}"], np.asarray(values, dtype=np.float64))
