"""Corpus runs on a tiny random model saved to disk (no download, seconds): traces equal to `trace()`,
resuming by content hash, failures recorded without stopping, two CPU worker processes giving the same
traces as one, a model placed by an accelerate device map, the corpus analysis and its files, and the
corpus heads used for the anchors of a trace from the API, the CLI and the explorer's data."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from stream_widgets.cli import main
from stream_widgets.config import StreamConfig
from stream_widgets.corpus import CorpusRun, analyse_corpus, corpus_report, load_corpus_heads, run_corpus
from stream_widgets.traces import Trace
from tests.corpus_example import TAGS, records, text
from tests.tiny_models import SMALL_FLAGS

CONFIG = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)


@pytest.fixture(scope="module")
def corpus(tiny_folder, tmp_path_factory):
    """A traced and analysed corpus of 4 labelled texts in 2 groups."""
    out = tmp_path_factory.mktemp("corpus")
    source = out.parent / f"{out.name}-inputs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    run = run_corpus(source, out, model=str(tiny_folder), config=CONFIG, progress=False)
    html = corpus_report(out, progress=False, top_heads=4)
    return out, source, run, html


def _mtimes(out) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "traces").glob("*.safetensors")}


def _timeless(document):
    """corpus.json without what depends on the clock."""
    if isinstance(document, dict):
        return {k: _timeless(v) for k, v in document.items() if k not in ("seconds", "traces_per_minute")}
    if isinstance(document, list):
        return [_timeless(v) for v in document]
    return document


# ----------------------------------------------------------------- tracing
def test_every_input_is_traced_as_trace_would(corpus, tiny_folder):
    from stream_widgets.models import load_model
    from stream_widgets.tracer import trace

    out, _, run, _ = corpus
    assert [e.status for e in run.entries] == ["done"] * 4
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["summary"]["done"] == 4 and manifest["failures"] == []
    model, tokenizer = load_model(tiny_folder)
    for entry, record in zip(run.entries, records(), strict=True):
        saved = Trace.load(out / entry.file)
        assert entry.file == f"traces/{record['id']}.safetensors" and entry.group == record["group"]
        assert saved.equal(trace(model, tokenizer, record["text"], CONFIG, progress=False))
        assert (entry.tokens, entry.sentences) == (saved.seq_len, len(saved.sentences))
        assert entry.sparsity == pytest.approx(float(saved.sparsity().mean())) and entry.sparsity > 0
        assert entry.retained_mass == pytest.approx(float(saved.retained_mass.mean()))
        assert entry.seconds > 0 and entry.device == "cpu"
    assert CorpusRun.load_manifest(out).entries == run.entries


def test_a_rerun_skips_what_is_done_and_retraces_what_changed(tiny_folder, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    inputs = records(3)
    source.write_text("".join(json.dumps(r) + "\n" for r in inputs), encoding="utf-8")
    out = tmp_path / "out"
    options = {"model": str(tiny_folder), "config": CONFIG}
    first = run_corpus(source, out, **options)
    before = _mtimes(out)
    again = run_corpus(source, out, **options)
    assert "3 of 3 traces are done already" in capsys.readouterr().err
    assert _mtimes(out) == before and again.entries == first.entries
    # a changed text is traced again, the others are not
    inputs[1]["text"] = text(7)
    source.write_text("".join(json.dumps(r) + "\n" for r in inputs), encoding="utf-8")
    changed = run_corpus(source, out, **options)
    after = _mtimes(out)
    assert [after[n] == before[n] for n in sorted(before)] == [True, False, True]
    assert changed.entries[1].hash != first.entries[1].hash
    assert Trace.load(out / changed.entries[1].file).text == text(7)
    # a changed setting re-traces everything
    other = run_corpus(
        source, out, model=str(tiny_folder), config=StreamConfig(q_block=8, k_block=4, top_k=3)
    )
    assert all(m != after[n] for n, m in _mtimes(out).items())
    assert {e.hash for e in other.entries}.isdisjoint(e.hash for e in changed.entries)


def test_a_failing_input_is_recorded_and_the_run_goes_on(tiny_folder, tmp_path):
    inputs = records(2)
    inputs.insert(1, {"id": "too long", "text": text(0, repeats=40)})  # > the tiny model's 512 tokens
    run = run_corpus(inputs, tmp_path, model=str(tiny_folder), config=CONFIG, progress=False)
    assert [e.status for e in run.entries] == ["done", "failed", "done"]
    failed = run.entries[1]
    assert failed.error.startswith("ValueError: the text is") and "context of 512 tokens" in failed.error
    assert failed.file == f"traces/{failed.id.replace(' ', '_')}-" + failed.file.split("-")[-1]
    manifest = json.loads((tmp_path / "corpus.json").read_text())
    assert manifest["failures"] == [{"id": "too long", "error": failed.error}]
    assert manifest["summary"]["failed"] == 1 and manifest["summary"]["done"] == 2
    # the analysis says what it left out
    analysis = analyse_corpus(tmp_path, progress=False, top_heads=4)
    assert [t.id for t in analysis.traces] == ["trace-0", "trace-1"]
    assert analysis.left_out == [{"id": "too long", "reason": failed.error}]


def test_two_cpu_workers_write_the_same_traces_as_one(tiny_folder, tmp_path):
    inputs = records(4)
    one = run_corpus(
        inputs, tmp_path / "one", model=str(tiny_folder), config=CONFIG, threads=1, progress=False
    )
    two = run_corpus(
        inputs, tmp_path / "two", model=str(tiny_folder), config=CONFIG, workers=2, threads=1, progress=False
    )
    assert [e.status for e in two.entries] == ["done"] * 4
    for a, b in zip(one.entries, two.entries, strict=True):
        assert Trace.load(tmp_path / "one" / a.file).equal(Trace.load(tmp_path / "two" / b.file))
    documents = [json.loads((tmp_path / name / "corpus.json").read_text()) for name in ("one", "two")]
    assert _timeless(documents[0]) == _timeless(documents[1])


def test_a_loaded_model_runs_in_this_process(tiny_folder, tmp_path):
    from stream_widgets.models import load_model

    model, tokenizer = load_model(tiny_folder)
    run = run_corpus(records(2), tmp_path / "a", model=(model, tokenizer), config=CONFIG, progress=False)
    by_path = run_corpus(records(2), tmp_path / "b", model=str(tiny_folder), config=CONFIG, progress=False)
    assert run.settings["dtype"] == "float32" and [e.device for e in run.entries] == ["cpu", "cpu"]
    for a, b in zip(run.entries, by_path.entries, strict=True):
        assert Trace.load(tmp_path / "a" / a.file).equal(Trace.load(tmp_path / "b" / b.file))
    with pytest.raises(ValueError, match="runs in this process only"):
        run_corpus(records(2), tmp_path / "c", model=(model, tokenizer), workers=2)


def test_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="workers must be"):
        run_corpus(records(1), tmp_path, workers=0)
    with pytest.raises(ValueError, match="device_map spreads one model"):
        run_corpus(records(1), tmp_path, workers=2, device_map="auto")
    with pytest.raises(ValueError, match="mode must be"):
        run_corpus(records(1), tmp_path, mode="dense")
    with pytest.raises(ValueError, match="no CUDA device"):
        run_corpus(records(1), tmp_path, device="cuda")
    with pytest.raises(ValueError, match="the id 'trace-0' is used twice"):
        run_corpus(records(1) * 2, tmp_path)
    assert not (tmp_path / "corpus.json").exists()


# ----------------------------------------------------------------- layers placed by accelerate
def test_a_model_placed_by_a_device_map_traces_the_same(tiny_folder):
    """Accelerate's hooks on every layer (all on the CPU here, so CI exercises them): the trace is
    bitwise the one of the plain model. Layers on different GPUs need GPUs to check."""
    from accelerate import dispatch_model

    from stream_widgets.models import load_model
    from stream_widgets.tracer import input_device, trace

    model, tokenizer = load_model(tiny_folder)
    plain = trace(model, tokenizer, text(0), CONFIG, progress=False)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    placed, _ = load_model(tiny_folder, device_map=device_map)
    assert {p.device.type for p in placed.parameters()} == {"cpu"}
    # from_pretrained adds hooks only when the map names several devices; force them, as it would
    dispatch_model(placed, device_map=device_map, force_hooks=True)
    assert hasattr(placed.model.layers[1], "_hf_hook") and hasattr(placed.model.embed_tokens, "_hf_hook")
    assert str(input_device(placed)) == "cpu"
    assert trace(placed, tokenizer, text(0), CONFIG, progress=False).equal(plain)
    auto, _ = load_model(tiny_folder, device_map="auto")
    assert trace(auto, tokenizer, text(0), CONFIG, progress=False).equal(plain)
    with pytest.raises(TypeError, match="device_map must be"):
        load_model(tiny_folder, device_map=["cpu"])


# ----------------------------------------------------------------- analysis
def test_the_analysis_pools_heads_with_their_reliability(corpus):
    from stream_widgets import receivers

    out, _, run, _ = corpus
    heads = load_corpus_heads(out)
    traces = [run.load(e) for e in run.entries]
    per_trace = np.stack([receivers.trace_kurtosis(t) for t in traces])
    np.testing.assert_allclose(heads.kurtosis, receivers.head_kurtosis(traces))
    expected = receivers.split_half_reliability(per_trace, [e.group for e in run.entries])
    assert heads.reliability == expected and heads.reliability.groups == 2
    assert heads.traces == tuple(e.id for e in run.entries) and heads.model_id == traces[0].model_id
    # the file is in the format of the shipped heads
    shipped_format = receivers.corpus_heads(heads.model_id, "raw", directory=out / "receiver_heads")
    assert shipped_format.to_dict() == heads.to_dict()
    with pytest.raises(ValueError, match="not \\('depth', 1\\)"):
        load_corpus_heads(out, "depth")


def test_the_analysis_files(corpus):
    from stream_widgets.anchors import anchor_scores

    out, _, run, html = corpus
    assert html == out / "report" / "report.html"
    names = sorted(p.name for p in html.parent.iterdir())
    assert names == [
        "correlations.csv",
        "report.html",
        "sentences.csv",
        "summary.json",
        "tags.csv",
        "traces.csv",
    ]
    summary = json.loads((html.parent / "summary.json").read_text())
    heads = [tuple(h) for h in summary["receiver_heads"]]
    assert heads == load_corpus_heads(out).heads(4)
    rows = list(csv.reader(io.StringIO((html.parent / "sentences.csv").read_text())))
    header = rows[0]
    assert header[:10] == [
        "trace", "group", "index", "position", "tag", "anchor_score", "percentile", "rank", "top_anchor",
        "position_baseline",
    ]  # fmt: skip
    assert "importance" in header
    inputs = records()
    for entry, record, per_trace in zip(run.entries, inputs, summary["per_trace"], strict=True):
        trace = run.load(entry)
        scores = anchor_scores(trace, heads)
        best = [
            i
            for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
            if np.isfinite(scores[i])
        ]
        assert [a["index"] for a in per_trace["top_anchors"]] == [int(i) for i in best[:5]]
        assert per_trace["tag_source"] == "labels"
        tags = record["labels"]["function_tag"]
        assert [a["tag"] for a in per_trace["top_anchors"]] == [tags[i] for i in best[:5]]
    assert len(rows) - 1 == sum(e.sentences for e in run.entries)
    tags = {row["tag"]: row for row in summary["tags"]}
    assert set(tags) == set(TAGS)
    assert sum(row["top_anchors"] for row in summary["tags"]) == 5 * 4
    positions = summary["positions"]
    assert sum(positions["anchors"]) == 20 and sum(positions["sentences"]) == sum(
        r["scored"] for r in summary["per_trace"]
    )
    (correlation,) = summary["correlations"]
    assert correlation["column"] == "importance"
    assert correlation["anchor_score"]["traces"] == 4 and correlation["position_baseline"]["traces"] == 4
    assert correlation["anchor_score"]["pooled_sentences"] == sum(positions["sentences"])


def test_tags_come_from_the_tagger_without_labels(tiny_folder, tmp_path):
    import tagging

    inputs = [{"id": r["id"], "text": r["text"], "group": r["group"]} for r in records()]
    run_corpus(inputs, tmp_path, model=str(tiny_folder), config=CONFIG, progress=False)
    analysis = analyse_corpus(tmp_path, progress=False, top_heads=4)
    assert {t.tag_source for t in analysis.traces} == {"tagger"}
    assert analysis.correlations == [] and analysis.label_columns == []
    first = [r for r in analysis.sentences if r["trace"] == "trace-0"]
    tagged = tagging.tag_sentences([r["sentence"] for r in first])
    assert [r["tag"] for r in first] == [t.tag for t in tagged]
    html = corpus_report(tmp_path, progress=False, top_heads=4)
    assert "The inputs carry no label columns" in html.read_text()


# ----------------------------------------------------------------- corpus heads for one trace
def test_corpus_heads_for_the_anchors_of_a_trace(corpus, tmp_path, capsys):
    from stream_widgets.anchors import thought_anchors
    from stream_widgets.views import explore, explore_data

    out, _, run, _ = corpus
    heads = load_corpus_heads(out).heads(4)
    path = out / run.entries[0].file
    found = thought_anchors(path, receiver_heads=heads, top=3)
    assert [a.receiver_heads for a in found] == [tuple(heads)] * 3 and found[0].heads_from == "given"
    data = explore_data(path, receiver_heads=heads)
    assert data.receiver_heads == heads and data.meta["receiver_heads_source"] == "given"
    explorer = explore(path, receiver_heads=heads)
    assert explorer.data.receiver_heads == heads
    np.testing.assert_array_equal(explorer.data.anchor_scores, data.anchor_scores)
    assert (
        main(
            [
                "anchors",
                str(path),
                "--corpus",
                str(out),
                "--heads",
                "4",
                "--top",
                "3",
                "--json",
                str(tmp_path / "a.json"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"receiver heads of the corpus in {out}" in printed
    document = json.loads((tmp_path / "a.json").read_text())
    assert [tuple(h) for h in document["receiver_heads"]] == heads
    assert [a["index"] for a in document["anchors"]] == [a.index for a in found]
    assert main(["anchors", str(path), "--corpus", str(tmp_path), "--top", "3"]) == 2
    assert "no corpus receiver heads in" in capsys.readouterr().err
    assert main(["anchors", str(path), "--corpus", str(out), "--trace-heads"]) == 2
    assert "not both" in capsys.readouterr().err


def test_corpus_heads_of_another_model_are_refused(corpus, tmp_path, capsys):
    from stream_widgets import receivers

    out, _, run, _ = corpus
    heads = load_corpus_heads(out)
    other = tmp_path / "receiver_heads"
    receivers.save_corpus_heads([type(heads)(**{**heads.__dict__, "model_id": "someone/else"})], other)
    assert main(["anchors", str(out / run.entries[0].file), "--corpus", str(tmp_path)]) == 2
    assert "are of someone/else" in capsys.readouterr().err


# ----------------------------------------------------------------- the command line
def test_corpus_command_and_report_command(tiny_folder, tmp_path, capsys):
    folder = tmp_path / "texts"
    folder.mkdir()
    for k in range(3):
        (folder / f"cot-{k}.txt").write_text(text(k), encoding="utf-8")
    out = tmp_path / "out"
    args = ["corpus", str(folder), "--out", str(out), "--model", str(tiny_folder), *SMALL_FLAGS, "--report"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"corpus: {out / 'corpus.json'}: 3 of 3 traces done, 0 failed, 0 pending" in printed
    assert f"report: {out / 'report' / 'report.html'}" in printed
    assert "split-half reliability r = " in printed and "over 3 groups" in printed
    run = CorpusRun.load_manifest(out)
    assert [e.id for e in run.entries] == ["cot-0", "cot-1", "cot-2"]
    assert Trace.load(out / run.entries[0].file).config == CONFIG
    assert (
        main(["corpus-report", str(out), "--out", str(tmp_path / "r"), "--variant", "depth", "--heads", "5"])
        == 0
    )
    assert (tmp_path / "r" / "report.html").is_file()
    assert len(load_corpus_heads(out, "depth").heads(5)) == 5
    assert load_corpus_heads(out).variant == "raw"  # the other variant's heads are kept


def test_corpus_command_errors_come_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from stream_widgets import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["corpus", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder or file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x", "labels": {"kl": [1, 2, 3]}}\n', encoding="utf-8")
    assert main(["corpus", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl line 1 (id 'a'): labels.kl has 3 values" in capsys.readouterr().err
    assert main(["corpus", "bundled", "--out", str(tmp_path / "o"), "--top-k", "0"]) == 2
    assert "StreamConfig.top_k must be >= 1" in capsys.readouterr().err
    assert main(["corpus-report", str(tmp_path)]) == 2
    assert "has no corpus.json" in capsys.readouterr().err
