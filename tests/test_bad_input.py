"""Bad input gets a clear error, before any work (issue 17, the cases in the CLI, config, models and trace
files; damaged trace files are fuzzed in test_traces.py, damaged model caches tested in test_models.py)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

import pytest

from stream_widgets import models
from stream_widgets.cli import main
from stream_widgets.config import MAX_BLOCK, MAX_TOP_K, StreamConfig
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts its work (loads a model) before refusing its arguments."""

    def refuse(*args, **kwargs):
        raise AssertionError("the command loaded a model before checking its arguments")

    monkeypatch.setattr(models, "load_model", refuse)


def _error(capsys) -> str:
    return capsys.readouterr().err


# ----------------------------------------------------------------- 3: file names, folders, text
@pytest.mark.parametrize("command", ["trace", "tag", "anchors"])
@pytest.mark.parametrize(
    "name", ["notes_typo.txt", "drafts/cot", "my notes.md", "run.2", "~/My Documents/cot"]
)
def test_a_missing_file_is_an_error_not_text(command, name, tmp_path, capsys, no_work):
    extra = ["--out", str(tmp_path / "t.safetensors")] if command == "trace" else []
    assert main([command, name, *extra]) == 2
    err = _error(capsys)
    assert f"no such file: '{name}'" in err and f"pass --text '{name}'" in err


@pytest.mark.parametrize("command", ["trace", "tag", "anchors"])
def test_a_folder_is_an_error(command, tmp_path, capsys, no_work):
    extra = ["--out", str(tmp_path / "t.safetensors")] if command == "trace" else []
    assert main([command, str(tmp_path), *extra]) == 2
    assert f"{tmp_path} is a folder: pass a text file" in _error(capsys)


def test_file_and_text_are_exclusive_and_one_is_needed(tmp_path, capsys, no_work):
    out = ["--out", str(tmp_path / "t.safetensors")]
    assert main(["trace", "a.txt", "--text", "Some text.", *out]) == 2
    assert "either FILE or --text, not both" in _error(capsys)
    assert main(["trace", *out]) == 2
    assert "give the text as FILE, as - (standard input) or with --text TEXT" in _error(capsys)


def test_text_through_the_options_and_stdin(capsys, monkeypatch):
    assert main(["tag", "--text", "notes_typo.txt is the file I meant. Here it is."]) == 0
    assert "notes_typo.txt is the file" in capsys.readouterr().out
    assert main(["tag", "Two plain sentences here. Nothing else."]) == 0  # not path-like: text
    assert "Two plain sentences here." in capsys.readouterr().out
    assert main(["tag", "<think>Half of it is n(n+1)/2. So 55.</think>"]) == 0  # a / with spaces: text
    assert "n(n+1)/2" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"From standard input. Right.")))
    assert main(["tag", "-"]) == 0
    assert "From standard input." in capsys.readouterr().out


# ----------------------------------------------------------------- text that is not UTF-8
def test_lone_surrogates_and_undecodable_bytes_in_arguments(tmp_path, capsys, no_work):
    assert main(["tag", "caf\udce9 au lait is what I want"]) == 2  # argv byte 0xe9 (Latin-1), not UTF-8
    assert "holds the byte 0xe9, which is not UTF-8, at character 3" in _error(capsys)
    assert main(["trace", "--text", "a \ud800 b", "--out", str(tmp_path / "t.safetensors")]) == 2
    assert "--text holds a lone surrogate U+D800 at character 2" in _error(capsys)


def test_non_utf8_argv_from_the_shell():
    out = subprocess.run(
        [sys.executable, "-m", "stream_widgets.cli", "tag", b"caf\xe9 au lait, s'il vous pla\xeet"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.returncode == 2
    assert b"holds the byte 0xe9, which is not UTF-8" in out.stderr and b"Traceback" not in out.stderr


def test_non_utf8_files_and_stdin(tmp_path, capsys, monkeypatch):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Un caf\xe9 noir. Merci.".encode("latin-1"))
    assert main(["tag", str(latin)]) == 2
    assert f"{latin} is not UTF-8 text (byte 0xe9 at offset 6)" in _error(capsys)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad")))
    assert main(["tag", "-"]) == 2
    assert "standard input is not UTF-8 text (byte 0xff at offset 0)" in _error(capsys)


# ----------------------------------------------------------------- 9: config bounds
@pytest.mark.parametrize(
    "field, value, bound",
    [
        ("q_block", 10**30, f"{MAX_BLOCK:,}"),
        ("k_block", MAX_BLOCK + 1, f"{MAX_BLOCK:,}"),
        ("top_k", 2**40, f"{MAX_TOP_K:,}"),
        ("window", 2**40, "16,777,216"),
        ("sink", 2**63, "16,777,216"),
    ],
)
def test_config_values_have_upper_bounds(field, value, bound):
    with pytest.raises(ValueError, match=f"StreamConfig.{field} must be <= {bound}, got "):
        StreamConfig(**{field: value})


def test_config_bounds_on_the_command_line(tmp_path, capsys, no_work):
    out = ["--out", str(tmp_path / "t.safetensors"), "--text", "Some text."]
    assert main(["trace", *out, "--top-k", "99999999999999999999"]) == 2
    assert f"StreamConfig.top_k must be <= {MAX_TOP_K:,}, got 99,999,999,999,999,999,999" in _error(capsys)
    assert main(["trace", *out, "--search-width", str(10**12)]) == 2
    assert "search_width must be None or an int in [top_k (32), 65,536]" in _error(capsys)
    with pytest.raises(SystemExit):
        main(["trace", *out, "--top-k", "many"])
    assert "argument --top-k: invalid int value" in _error(capsys)


# ----------------------------------------------------------------- 11: outputs checked before the work
def test_output_file_checks_come_first(tmp_path, capsys, no_work):
    text = ["--text", "Some text."]
    assert main(["trace", *text, "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder: give a file name" in _error(capsys)
    assert main(["trace", *text, "--out", ""]) == 2
    assert "--out is empty" in _error(capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["trace", *text, "--out", str(blocker / "t.safetensors")]) == 2
    assert f"{blocker} is a file, not a folder" in _error(capsys)
    assert main(["anchors", *text, "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder" in _error(capsys)
    assert main(["anchors", *text, "--json", ""]) == 2
    assert "--json is empty" in _error(capsys)
    assert main(["report", "missing.safetensors", "--out", str(blocker)]) == 2
    assert f"--out {blocker} is a file: give a folder" in _error(capsys)


@contextmanager
def _read_only(folder):
    """Make `folder` refuse new files, also for root (chattr +i), or skip."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root without chattr: no way to make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_output_folder_is_refused_before_the_work(tmp_path, capsys, no_work):
    folder = tmp_path / "locked"
    folder.mkdir()
    with _read_only(folder):
        assert main(["trace", "--text", "Some text.", "--out", str(folder / "t.safetensors")]) == 2
        assert f"cannot write in {folder}" in _error(capsys)
        assert main(["anchors", "--text", "Some text.", "--json", str(folder / "sub" / "a.json")]) == 2
        assert f"cannot write in {folder}" in _error(capsys)


def test_counts_must_be_positive(capsys):
    for args, flag in (
        (["anchors", "x", "--heads", "0"], "--heads"),
        (["anchors", "x", "--top", "-1"], "--top"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        assert f"argument {flag}: must be >= 1" in _error(capsys)


@pytest.mark.parametrize("value", ["1.5", "nan", "-1", "1", "inf"])
def test_min_confidence_must_be_a_probability(value, capsys):
    with pytest.raises(SystemExit):
        main(["tag", "--text", "x", "--min-confidence", value])
    assert f"argument --min-confidence: must be a probability in [0, 1), got {value}" in _error(capsys)


def test_the_tagger_refuses_a_min_confidence_set_out_of_range():
    import tagging
    from tagging.errors import TaggingError

    nlp = tagging.load()
    nlp.get_pipe("function_tagger").min_confidence = float("nan")
    with pytest.raises(TaggingError, match="E005.*min_confidence"):
        nlp("Some sentence. Another one.")


# ----------------------------------------------------------------- trace files
def test_saving_a_trace_without_masks_is_refused(tmp_path):
    import dataclasses

    from stream_widgets.tracer import trace

    result = trace(tiny_model(), tiny_tokenizer(), TEXT, StreamConfig(q_block=8, k_block=4, top_k=2))
    with pytest.raises(ValueError, match="cannot save a trace with no masks"):
        dataclasses.replace(result, masks=[]).save(tmp_path / "t.safetensors")
    assert not (tmp_path / "t.safetensors").exists()


def test_anchors_of_a_damaged_trace_file(tmp_path, capsys):
    from stream_widgets.tracer import trace

    path = trace(tiny_model(), tiny_tokenizer(), TEXT, StreamConfig(q_block=8, k_block=4, top_k=2)).save(
        tmp_path / "t.safetensors"
    )
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["anchors", str(path)]) == 2
    assert f"stream-widgets: error: {path} is damaged: its contents do not match the checksum" in _error(
        capsys
    )


# ----------------------------------------------------------------- the anchors and views API (issue 17 items 2, 4, 10, 11)
def _tiny_trace():
    from stream_widgets.config import StreamConfig
    from stream_widgets.tracer import trace
    from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

    return trace(
        tiny_model(), tiny_tokenizer(), TEXT, StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
    )


@pytest.mark.parametrize("heads, match", [([(99, 99)], "out of range"), ([], "empty"), ("fancy", "one of")])
def test_bad_receiver_heads_are_named(heads, match):
    from stream_widgets.anchors import thought_anchors
    from stream_widgets.views import explore_data

    result = _tiny_trace()
    with pytest.raises(ValueError, match=match):
        thought_anchors(result, heads)
    with pytest.raises(ValueError, match=match):
        explore_data(result, tags=["unknown"] * len(result.sentences), receiver_heads=heads)


def test_thought_anchors_of_a_saved_trace_path(tmp_path):
    from stream_widgets.anchors import thought_anchors

    result = _tiny_trace()
    path = result.save(tmp_path / "t.safetensors")
    heads = [(0, 0), (1, 3)]
    assert [a.index for a in thought_anchors(str(path), heads)] == [
        a.index for a in thought_anchors(result, heads)
    ]
    with pytest.raises(FileNotFoundError):
        thought_anchors(str(tmp_path / "missing.safetensors"))


def test_vertical_scores_of_many_sentences_stay_in_bounded_chunks(monkeypatch):
    """[L, H, S, S] inputs are processed a few heads at a time; the result does not depend on the chunk."""
    import numpy as np

    from stream_widgets import vertical

    rng = np.random.default_rng(0)
    a = np.tril(rng.random((3, 4, 40, 40))).astype(np.float32)
    whole = vertical.vertical_scores(a, variant="distance", min_later=2)
    monkeypatch.setattr(vertical, "_CHUNK_CELLS", 40 * 40)  # one head per chunk
    np.testing.assert_allclose(vertical.vertical_scores(a, variant="distance", min_later=2), whole)
    assert vertical.sentence_attention.__doc__ and "float32" in vertical.sentence_attention.__doc__
