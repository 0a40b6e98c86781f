"""Atomic writes (`stream_widgets.storage`): one file, a set of files, a folder; kills at random points
leave the old set or the new one, and the next write removes what a killed writer left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_widgets import storage


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


# ----------------------------------------------------------------- one file
def test_write_file_keeps_mode_and_symlinks(tmp_path):
    target = tmp_path / "a.txt"
    assert storage.write_file(target, "one") == target
    assert target.read_text() == "one" and target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    target.chmod(0o604)
    storage.write_file(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o604
    link = tmp_path / "link"
    link.symlink_to("a.txt")
    storage.write_file(link, lambda path: Path(path).write_text("three"))
    assert link.is_symlink() and target.read_text() == "three" and target.stat().st_mode & 0o777 == 0o604
    dangling = tmp_path / "dangling"
    dangling.symlink_to("created-through-the-link.txt")
    storage.write_file(dangling, "four")
    assert dangling.is_symlink() and (tmp_path / "created-through-the-link.txt").read_text() == "four"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "created-through-the-link.txt", "dangling", "link"]


def test_write_file_failure_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def fail(path):
        Path(path).write_text("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        storage.write_file(target, fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]
    with pytest.raises(IsADirectoryError):
        storage.write_file(tmp_path, "x")


def test_leftovers_of_dead_writers_go_and_live_ones_stay(tmp_path):
    target = tmp_path / "t.bin"
    dead = storage.temp_path(target).with_name(f".t.bin.sw-{_dead_pid()}-00ff00ff.tmp")
    dead.write_text("junk")
    folder_left = dead.with_name(dead.name.replace(".tmp", ".new"))
    folder_left.mkdir()
    (folder_left / "x").write_text("junk")
    alive = storage.temp_path(target)
    alive.write_text("a write in progress in this process")
    unrelated = tmp_path / ".t.bin.backup"
    unrelated.write_text("not ours")
    removed = storage.remove_leftovers(target)
    assert sorted(p.name for p in removed) == sorted([dead.name, folder_left.name])
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, unrelated.name])
    with pytest.raises(ValueError, match="kind"):
        storage.temp_path(target, "zip")


# ----------------------------------------------------------------- several files, one folder
def test_write_files_replaces_the_set_and_keeps_other_entries(tmp_path):
    folder = tmp_path / "out"
    storage.write_files(folder, {"report.html": "<p>1</p>", "summary.json": "{}"})
    assert sorted(os.listdir(folder)) == ["report.html", "summary.json"]
    (folder / "trace.safetensors").write_bytes(b"a user's file")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("kept")
    (folder / "latest").symlink_to("trace.safetensors")
    folder.chmod(0o750)
    (folder / "summary.json").chmod(0o600)
    inode = (folder / "trace.safetensors").stat().st_ino
    storage.write_files(
        folder, {"report.html": "<p>2</p>", "summary.json": '{"v": 2}', "sentences.csv": "i\n"}
    )
    assert (folder / "report.html").read_text() == "<p>2</p>" and (folder / "sentences.csv").is_file()
    assert (folder / "trace.safetensors").stat().st_ino == inode  # hard-linked, not copied
    assert (folder / "notes" / "a.txt").read_text() == "kept" and (folder / "latest").is_symlink()
    assert (
        folder.stat().st_mode & 0o777 == 0o750 and (folder / "summary.json").stat().st_mode & 0o777 == 0o600
    )
    assert _siblings(folder) == ["out"]  # nothing left beside it


def test_write_files_through_a_symlinked_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "out"
    link.symlink_to("real")
    assert storage.write_files(link, {"a": "1"}) == real
    assert link.is_symlink() and (real / "a").read_text() == "1"


def test_write_files_refuses_bad_names(tmp_path):
    for name in ("", "a/b", "..", ".x.sw-1-ab.tmp"):
        with pytest.raises(ValueError):
            storage.write_files(tmp_path / "out", {name: "x"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        storage.write_files(tmp_path / "file", {"a": "1"})


def test_a_swap_killed_between_its_two_renames_is_finished_by_the_next_write(tmp_path, monkeypatch):
    # where the file system cannot exchange two folders, the swap is two renames; simulate a kill
    # between them: the folder is gone and the complete new set waits beside it
    folder = tmp_path / "out"
    storage.write_files(folder, {"a": "old", "b": "old"})
    ready = tmp_path / f".out.sw-{_dead_pid()}-12345678.ready"
    ready.mkdir()
    for name in ("a", "b"):
        (ready / name).write_text("new")
    old = tmp_path / f".out.sw-{_dead_pid()}-87654321.old"
    folder.rename(old)
    monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    storage.write_files(folder, {"c": "newer"})
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "new", "b": "new", "c": "newer"}
    assert _siblings(folder) == ["out"]


def test_staged_folder_keeps_a_copy_another_writer_made_first(tmp_path):
    target = tmp_path / "copy"
    with storage.staged_folder(target) as stage:
        (stage / "x").write_text("first")
    with storage.staged_folder(target) as stage:
        (stage / "x").write_text("second")
    assert (target / "x").read_text() == "first" and _siblings(target) == ["copy"]
    with pytest.raises(RuntimeError), storage.staged_folder(tmp_path / "failed") as stage:
        (stage / "x").write_text("half")
        raise RuntimeError
    assert _siblings(target) == ["copy"]


_WRITER = """
import sys
from stream_widgets import storage
if sys.argv[2] == "renames":
    storage._exchange = lambda a, b: False  # the two-rename swap of file systems without exchange
sets = [{name: (tag + name) * 400_000 for name in ("report.html", "summary.json", "sentences.csv")}
        for tag in ("A", "B")]
print("ready", flush=True)
while True:
    for files in sets:
        storage.write_files(sys.argv[1], files)
"""


def _which_set(folder: Path) -> str:
    """'A' or 'B' if the folder holds one whole set (and the user's file), else what it holds."""
    contents = {p.name: p.read_text()[:1] for p in folder.iterdir() if p.name != "trace.safetensors"}
    assert (folder / "trace.safetensors").read_bytes() == b"the user's trace"
    assert sorted(contents) == ["report.html", "sentences.csv", "summary.json"], contents
    (tag,) = set(contents.values())  # all files of one set: never a mix
    return tag


@pytest.mark.slow
@pytest.mark.parametrize("swap", ["exchange", "renames"])
def test_a_killed_write_files_leaves_the_old_set_or_the_new_one(tmp_path, swap):
    folder = tmp_path / "out"
    storage.write_files(folder, {n: "A" for n in ("report.html", "summary.json", "sentences.csv")})
    (folder / "trace.safetensors").write_bytes(b"the user's trace")
    rng = random.Random(1)
    seen, mid_write = set(), 0
    for kill in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder), swap],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGTERM if kill % 5 == 4 else signal.SIGKILL)
        child.wait()
        mid_write += _siblings(folder) != ["out"]
        storage._finish_interrupted(folder)  # what the next write does first (two-rename swaps only)
        seen.add(_which_set(folder))
        storage.write_files(folder, {"report.html": "A" * 10, "summary.json": "A", "sentences.csv": "A"})
        assert _siblings(folder) == ["out"]  # the next write removed every leftover
        _which_set(folder)
    assert mid_write >= 1
