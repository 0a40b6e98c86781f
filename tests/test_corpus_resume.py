"""The corpus command on real bundled traces with the default model, killed in the middle and run again:
the rerun skips the traces that were done, traces the rest, and ends with the corpus.json and the trace
files of a run that was never interrupted (times aside)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stream_widgets.cli import main
from stream_widgets.traces import Trace

pytestmark = pytest.mark.slow

ARGS = ["corpus", "bundled", "--limit", "3", "--max-tokens", "300"]


def _timeless(document):
    if isinstance(document, dict):
        return {k: _timeless(v) for k, v in document.items() if k not in ("seconds", "traces_per_minute")}
    if isinstance(document, list):
        return [_timeless(v) for v in document]
    return document


def _manifest(out) -> dict | None:
    try:
        return json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # not written yet (it is replaced atomically, never half)
        return None


def test_a_killed_corpus_run_resumes_where_it_stopped(default_model, tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    command = [sys.executable, "-m", "stream_widgets.cli", *ARGS, "--out", str(killed)]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "2"}
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and child.poll() is None:
        manifest = _manifest(killed)
        if manifest and manifest["summary"]["done"] >= 1:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    manifest = _manifest(killed)
    done = [e["id"] for e in manifest["traces"] if e["status"] == "done"]
    assert 1 <= len(done) < 3, f"the kill came after the run ended: {done}"
    files = {e["id"]: killed / e["file"] for e in manifest["traces"]}
    stamps = {i: files[i].stat().st_mtime_ns for i in done}

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(done)} of 3 traces are done already (same text and settings): skipped" in rerun.stderr
    assert "3 of 3 traces done, 0 failed, 0 pending" in rerun.stdout
    assert {i: files[i].stat().st_mtime_ns for i in done} == stamps  # not traced again
    assert all(path.is_file() for path in files.values())
    assert not [p.name for p in (killed / "traces").iterdir() if p.name.startswith(".")]  # no temp files left

    assert main([*ARGS, "--out", str(whole)]) == 0  # the same run, never interrupted
    resumed, uninterrupted = _manifest(killed), _manifest(whole)
    assert _timeless(resumed) == _timeless(uninterrupted)
    for entry in uninterrupted["traces"]:
        assert Trace.load(whole / entry["file"]).equal(Trace.load(killed / entry["file"]))
    assert [e["tokens"] <= 300 for e in uninterrupted["traces"]] == [True] * 3
