"""`stream-widgets tag` with a toy pipeline in place of the shipped model."""

from __future__ import annotations

import json

import pytest

import tagging
from stream_widgets.cli import main


@pytest.fixture()
def patched_load(monkeypatch, toy_nlp):
    monkeypatch.setattr(tagging, "load", lambda path=None: toy_nlp)


def test_tag_prints_table(patched_load, capsys):
    assert main(["tag", "<think>Okay, so the problem asks for 3 + 4. Wait, is that right?</think>"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].split()[0] == "1" and "uncertainty_management" in lines[1]


def test_tag_json_from_file(patched_load, capsys, tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("First we compute 3 + 4 = 7.\n\nSo the answer is \\boxed{7}.", encoding="utf-8")
    assert main(["tag", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["index"] for row in rows] == [0, 1]
    assert rows[1]["tag"] == "final_answer_emission"
    assert 0.0 <= rows[1]["confidence"] <= 1.0 and set(rows[1]["scores"]) >= {"unknown"}


def test_tag_empty_text(patched_load, capsys):
    assert main(["tag", "", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
