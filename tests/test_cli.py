"""The command line: errors with exit status 2, help and defaults, list, trace/anchors/tag/report on a
tiny random model saved to disk (no download, seconds), pipes, and a --help that does not import torch."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from stream_widgets.cli import DEMO_TRACE, main
from stream_widgets.traces import Trace
from tagging.tags import FUNCTION_TAGS
from tests.tiny_models import SMALL_FLAGS, TEXT

# 15 sentences, about 220 tokens of the tiny tokenizer: enough for receiver heads (> 10 sentences)
BODY = TEXT.split("<think>\n")[1].split("\n</think>")[0]
LONG_TEXT = "<think>\n" + "\n\n".join([BODY] * 3) + "\n</think>\nThe answer is ten."


@pytest.fixture(scope="module")
def long_trace(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("traces") / "long.safetensors"
    assert (
        main(["trace", "--text", LONG_TEXT, "--model", str(tiny_folder), "--out", str(out), *SMALL_FLAGS])
        == 0
    )
    return out


def _anchor_rows(out: str) -> list[tuple[int, float, str]]:
    """(index, score, tag) of every anchor line ``  [ 12]   1.2345  0.8 ...  tag  text``: the tag is the
    first word after the score and the evidence numbers."""
    rows = []
    for i, rest in re.findall(r"^  \[\s*(\d+)\]\s+(.*)$", out, flags=re.M):
        words = rest.split()
        lead = 0
        while lead < len(words) and re.fullmatch(r"[-+]?(\d[\d.e+-]*|nan|inf)", words[lead]):
            lead += 1
        rows.append((int(i), float(words[0]), words[lead] if lead < len(words) else "-"))
    return rows


# ----------------------------------------------------------------- errors
def test_unknown_bundled_trace(tmp_path, capsys):
    assert main(["demo", "--trace", "no_such_problem", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stream-widgets: error: no bundled trace 'no_such_problem'")
    assert not list(tmp_path.iterdir())


def test_bad_config_value_names_the_field(tmp_path, capsys):
    assert main(["trace", "Some text.", "--out", str(tmp_path / "t.safetensors"), "--top-k", "0"]) == 2
    assert "StreamConfig.top_k must be >= 1" in capsys.readouterr().err
    assert (
        main(["trace", "x", "--out", str(tmp_path / "t.safetensors"), "--top-k", "8", "--search-width", "4"])
        == 2
    )
    assert "search_width" in capsys.readouterr().err


def test_missing_trace_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "out")]) == 2
    assert "stream-widgets: error: no trace file at" in capsys.readouterr().err


def test_command_is_required():
    with pytest.raises(SystemExit):
        main([])


# ----------------------------------------------------------------- help, version, list
def test_version(capsys):
    import stream_widgets

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"stream-widgets {stream_widgets.__version__}"


def test_help_shows_defaults(capsys):
    from stream_widgets.anchors import DEFAULT_VARIANT
    from stream_widgets.config import StreamConfig

    with pytest.raises(SystemExit):
        main(["anchors", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"vertical-score variant (default: {DEFAULT_VARIANT})" in help_text
    assert "DEFAULT_VARIANT" not in help_text
    with pytest.raises(SystemExit):
        main(["trace", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    defaults = StreamConfig()
    for flag, value in (
        ("q-block", defaults.q_block),
        ("top-k", defaults.top_k),
        ("window", defaults.window),
    ):
        metavar = flag.upper().replace("-", "_")
        assert re.search(rf"--{flag} {metavar} StreamConfig\.[a-z_]+: [^-]*\(default: {value}\)", help_text)
    score_rule = help_text.split("--score-rule {representative,bound} ")[1]
    assert score_rule.startswith("StreamConfig.score_rule: how the search scores")
    assert "(default: representative)" in score_rule
    assert "--max-tokens" in help_text


def test_help_does_not_import_torch():
    script = (
        "import sys\n"
        "from stream_widgets.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('heavy:', [m for m in ('torch', 'transformers', 'spacy', 'bokeh') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "usage: stream-widgets" in out.stdout and "heavy: []" in out.stdout


def test_list_shows_the_bundled_traces(capsys):
    from stream_widgets.data import list_bundled_traces

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    names = list_bundled_traces()
    assert all(name in out for name in names) and DEMO_TRACE in out
    assert f"{len(names)} bundled traces" in out


# ----------------------------------------------------------------- trace, anchors, tag, report
def test_trace_from_a_file_and_stdin_with_max_tokens(tiny_folder, tmp_path, capsys, monkeypatch):
    source = tmp_path / "cot.txt"
    source.write_text(LONG_TEXT, encoding="utf-8")
    out = tmp_path / "cut.safetensors"
    args = ["--model", str(tiny_folder), "--out", str(out), "--max-tokens", "60", *SMALL_FLAGS]
    assert main(["trace", str(source), *args]) == 0
    cut = Trace.load(out)
    assert cut.seq_len <= 60 and LONG_TEXT.startswith(cut.text) and len(cut.sentences) < 15
    assert cut.config.q_block == 8 and cut.config.top_k == 2
    assert f"trace: {out}" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(LONG_TEXT.encode("utf-8"))))
    assert main(["trace", "-", *args]) == 0
    assert Trace.load(out).equal(cut)


def test_exhaustive_flag_reaches_the_saved_config(tiny_folder, tmp_path):
    out = tmp_path / "every.safetensors"
    args = ["--text", LONG_TEXT, "--model", str(tiny_folder), "--out", str(out), "--max-tokens", "60"]
    assert main(["trace", *args, *SMALL_FLAGS, "--exhaustive"]) == 0
    assert Trace.load(out).config.exhaustive is True
    assert main(["trace", *args, *SMALL_FLAGS, "--no-exhaustive"]) == 0
    assert Trace.load(out).config.exhaustive is False


def test_trace_says_when_the_config_prunes_nothing(tiny_folder, tmp_path, capsys):
    out = tmp_path / "all.safetensors"
    assert main(["trace", "--text", TEXT, "--model", str(tiny_folder), "--out", str(out)]) == 0
    assert "keeps every key block of this 76-token text (sparsity 0%)" in capsys.readouterr().err


def test_anchors_of_a_saved_trace_show_the_tagger_tags(long_trace, tmp_path, capsys):
    out = tmp_path / "anchors.json"
    assert main(["anchors", str(long_trace), "--top", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tags from the shipped tagger" in printed
    rows = _anchor_rows(printed)
    assert len(rows) == 3 and all(tag in FUNCTION_TAGS for _, _, tag in rows)
    document = json.loads(out.read_text())
    assert [(a["index"], a["function_tag"]) for a in document["anchors"]] == [(i, tag) for i, _, tag in rows]


def test_anchors_say_so_when_the_tagger_sentences_differ(long_trace, tmp_path, capsys):
    import dataclasses

    import torch

    from stream_widgets.sentences import Sentence

    result = Trace.load(long_trace)
    first, second, *rest = result.sentences
    merged = Sentence(
        0,
        result.text[first.char_start : second.char_end],
        first.char_start,
        second.char_end,
        first.token_start,
        second.token_end,
    )
    sums = result.sentence_attention_sum
    sums = torch.cat([sums[:, :, :1] + sums[:, :, 1:2], sums[:, :, 2:]], dim=2)
    sums = torch.cat([sums[..., :1] + sums[..., 1:2], sums[..., 2:]], dim=3)
    sentences = [merged] + [dataclasses.replace(s, index=i + 1) for i, s in enumerate(rest)]
    other = dataclasses.replace(result, sentences=sentences, sentence_attention_sum=sums)
    path = other.save(tmp_path / "merged.safetensors")
    assert main(["anchors", str(path), "--top", "2"]) == 0
    captured = capsys.readouterr()
    assert "the tagger found 15 sentences where the trace has 14" in captured.err
    rows = _anchor_rows(captured.out)
    assert len(rows) == 2 and all(tag == "-" for _, _, tag in rows)


def test_tag_prints_the_true_top_probability_of_unknown_sentences(capsys):
    assert main(["tag", "--text", LONG_TEXT, "--json", "--min-confidence", "0.9"]) == 0
    rows = json.loads(capsys.readouterr().out)
    unknown = [row for row in rows if row["tag"] == "unknown"]
    assert unknown and len(unknown) < len(rows)
    for row in rows:
        scores = row["scores"]
        top = max(scores[t] for t in FUNCTION_TAGS)
        assert sum(scores[t] for t in FUNCTION_TAGS) == pytest.approx(1.0, abs=1e-3)
        assert row["confidence"] == pytest.approx(top, abs=1e-4)
        assert scores["unknown"] == (1.0 if row["tag"] == "unknown" else 0.0)
        assert (row["tag"] == "unknown") == (top < 0.9)
    assert main(["tag", "--text", LONG_TEXT, "--min-confidence", "0.9"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    for line, row in zip(table, rows, strict=True):
        assert line[1] == row["tag"] and float(line[2]) == pytest.approx(row["confidence"], abs=0.006)


def test_tag_into_a_closed_pipe_exits_quietly(tmp_path):
    source = tmp_path / "long.txt"
    source.write_text("<think>\n" + "\n\n".join([BODY] * 200) + "\n</think>", encoding="utf-8")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream_widgets.cli",
            "tag",
            str(source),
            "--json",
        ],  # ~1 MB, > a pipe's 64 KiB
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout.readline() == b"[\n"  # what `| head -1` reads
    child.stdout.close()
    assert child.wait(timeout=120) == 141
    assert child.stderr.read() == b""  # no BrokenPipeError traceback


def test_report_shows_progress(long_trace, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(long_trace), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for stage in ("reading the trace", "tagging 15 sentences, scoring anchors", "writing the report"):
        assert stage in captured.err
    assert f"report: {out / 'report.html'}" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "sentences.csv", "summary.json"]
