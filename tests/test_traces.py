"""Trace files: exact round trips, atomic saves (kills, permissions, symlinks, leftovers of killed saves),
the checks on load (checksum, structure) with messages naming the file, version 1 files, fuzzed damage."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from stream_widgets import traces
from stream_widgets.config import StreamConfig
from stream_widgets.tracer import trace
from stream_widgets.traces import FORMAT, VERSION, Trace
from tests.synthetic_traces import synthetic_trace
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
V1_FILE = Path(__file__).parent / "data" / "trace_v1.safetensors"  # written by stream-widgets 0.1.0


@pytest.fixture(scope="module")
def saved_trace(tmp_path_factory):
    model, tokenizer = tiny_model(), tiny_tokenizer()
    result = trace(model, tokenizer, TEXT, SMALL, layers=[1], heads=[2])
    path = result.save(tmp_path_factory.mktemp("trace") / "t.safetensors")
    return result, path


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------- round trips and the old format
def test_trace_round_trip_is_exact(saved_trace):
    result, path = saved_trace
    loaded = Trace.load(path)
    assert loaded.equal(result)
    assert loaded.sentences == result.sentences and loaded.config == result.config
    assert list(path.parent.iterdir()) == [path]  # no temp file left
    assert "Trace(" in repr(loaded)
    with safe_open(str(path), framework="pt") as reader:
        header = reader.metadata()
    assert header["version"] == str(VERSION) == "2" and header["checksum"].startswith("sha256:")


def test_version_1_files_still_load_and_resave_as_the_current_version(tmp_path):
    with safe_open(str(V1_FILE), framework="pt") as reader:
        assert reader.metadata()["version"] == "1" and "checksum" not in reader.metadata()
    old = Trace.load(V1_FILE)
    assert (old.text, old.seq_len, old.num_layers, old.num_heads) == (TEXT, 76, 2, 4)
    assert len(old.sentences) == 5 and sorted(old.token_weights) == [1] and old.token_heads == (2,)
    assert old.sentence_attention_sum.shape == (2, 4, 5, 5)
    again = Trace.load(old.save(tmp_path / "v2.safetensors"))
    assert again.equal(old)


def test_trace_bad_files(saved_trace, tmp_path):
    _, path = saved_trace
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.safetensors is not a readable trace file"):
        Trace.load(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, foreign, metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a stream-widgets trace"):
        Trace.load(foreign)
    newer = tmp_path / "newer.safetensors"
    save_file({"x": torch.zeros(2)}, newer, metadata={"format": FORMAT, "version": "99"})
    with pytest.raises(ValueError, match="newer stream-widgets"):
        Trace.load(newer)
    with pytest.raises(FileNotFoundError, match="no trace file"):
        Trace.load(tmp_path / "missing.safetensors")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        Trace.load(tmp_path)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.safetensors is not a readable trace file"):
        Trace.load(empty)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_says_permission_denied(saved_trace, tmp_path):
    _, path = saved_trace
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(path.read_bytes())
    locked.chmod(0)
    with pytest.raises(PermissionError, match="cannot read the trace file .*permission denied"):
        Trace.load(locked)


# ----------------------------------------------------------------- checks on load
def _contents(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as reader:
        return json.loads(reader.metadata()["meta"]), {k: reader.get_tensor(k) for k in reader.keys()}


def _write(path: Path, meta, tensors: dict[str, torch.Tensor]) -> Path:
    """A version 2 file with a correct checksum: what a buggy writer could produce, for the structure checks."""
    meta_json = json.dumps(meta)
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "meta": meta_json,
        "checksum": traces._checksum(FORMAT, str(VERSION), meta_json, tensors),
    }
    save_file(tensors, path, metadata=header)
    return path


def _set(name, value):
    def change(meta, tensors):
        meta[name] = value

    return change


def _fill(name, value):
    def change(meta, tensors):
        tensors[name] = torch.full_like(tensors[name], value)

    return change


def _non_causal(meta, tensors):
    last = int(tensors["mask.kv_num_blocks"][0, 0, 0, 0]) - 1
    tensors["mask.kv_indices"][0, 0, 0, 0, last] = 10  # query block 0 (tokens 0-7) keeps key block 10


def _not_ascending(meta, tensors):
    row = tensors["mask.kv_indices"][0, 0, 0, -1]
    row[:2] = row[:2].flip(0)


def _widths_too_long(meta, tensors):
    meta["mask_widths"] = [*meta["mask_widths"], 3]


def _sentence_elsewhere(meta, tensors):
    meta["sentences"][1][2] += 3


STRUCTURE = {
    "every kv index 10^6": (
        _fill("mask.kv_indices", 10**6),
        "holds key block 1000000, but the text has 19 key",
    ),
    "kv_num_blocks over the width": (_fill("mask.kv_num_blocks", 99), "holds 99 kept blocks, outside"),
    "not causal": (_non_causal, "not causal"),
    "not ascending": (_not_ascending, "not strictly ascending"),
    "q_block mismatch": (
        _set("q_block", 7),
        r"block_attention has shape \[2, 4, 10, 8\], expected \[2, 4, 11, 8\]",
    ),
    "q_block 0": (_set("q_block", 0), "q_block and k_block must be >= 1"),
    "q_block a string": (_set("q_block", "8"), "'q_block' should be a int, got str"),
    "mask_widths too long": (
        _widths_too_long,
        r"retained_mass has shape \[2, 4, 76\], expected \[3, 4, 76\]",
    ),
    "mode unknown": (_set("mode", "dense"), "'mode' should be 'observe' or 'sparse'"),
    "config invalid": (_set("config", {"top_k": 0}), "not a valid StreamConfig .*top_k must be >= 1"),
    "token_heads out of range": (_set("token_heads", [9]), "'token_heads' should be distinct heads in"),
    "sentence span": (_sentence_elsewhere, "sentence 1's character span .* does not hold its text"),
    "input_ids floats": (
        lambda m, t: t.update(input_ids=t["input_ids"].float()),
        "input_ids should hold integers",
    ),
    "unexpected tensor": (lambda m, t: t.update(extra=torch.zeros(1)), "unexpected tensor 'extra'"),
    "missing tensor": (lambda m, t: t.pop("offsets"), "the tensor 'offsets' is missing"),
    "missing meta key": (lambda m, t: m.pop("mode"), "the metadata has no 'mode' entry"),
}


@pytest.mark.parametrize("case", list(STRUCTURE))
def test_structure_checks_name_the_file_and_the_problem(saved_trace, tmp_path, case):
    _, path = saved_trace
    meta, tensors = _contents(path)
    change, message = STRUCTURE[case]
    change(meta, tensors)
    bad = _write(tmp_path / "bad.safetensors", meta, tensors)
    with pytest.raises(ValueError, match=f"bad.safetensors is not a valid trace file: .*{message}"):
        Trace.load(bad)


def test_metadata_that_is_not_an_object_is_refused(saved_trace, tmp_path):
    _, path = saved_trace
    _, tensors = _contents(path)
    with pytest.raises(ValueError, match="metadata should be a JSON object, got a list"):
        Trace.load(_write(tmp_path / "list.safetensors", [1, 2], tensors))


def test_changed_bytes_fail_the_checksum(saved_trace, tmp_path):
    _, path = saved_trace
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's data
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match="damaged.safetensors is damaged: its contents do not match the checksum"
    ):
        Trace.load(damaged)


def test_a_damaged_version_number_cannot_skip_the_checksum(saved_trace, tmp_path):
    _, path = saved_trace
    meta, tensors = _contents(path)
    with safe_open(str(path), framework="pt") as reader:
        header = dict(reader.metadata())
    header["version"] = "1"  # a version 1 header never carries a checksum
    save_file(tensors, tmp_path / "downgraded.safetensors", metadata=header)
    with pytest.raises(
        ValueError, match="a version 1 trace header has the entries .*unexpected \\['checksum'\\]"
    ):
        Trace.load(tmp_path / "downgraded.safetensors")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_truncations_and_byte_flips_are_refused_or_load_identical(saved_trace, tmp_path, data):
    result, path = saved_trace
    original = path.read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        damaged = original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        damaged = bytearray(original)
        header_size = 8 + int.from_bytes(original[:8], "little")
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            # half the flips in the header (metadata, offsets, dtypes), half anywhere
            end = header_size if data.draw(st.booleans(), label="in header") else len(original)
            position = data.draw(st.integers(0, end - 1), label="position")
            damaged[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    target = tmp_path / "fuzzed.safetensors"
    target.write_bytes(bytes(damaged))
    try:
        loaded = Trace.load(target)
    except ValueError as error:
        assert "fuzzed.safetensors" in str(error)
    else:
        assert loaded.equal(result)


# ----------------------------------------------------------------- atomic saves
def test_save_keeps_permissions_and_writes_through_symlinks(saved_trace, tmp_path):
    result, _ = saved_trace
    target = result.save(tmp_path / "real.safetensors")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    target.chmod(0o640)
    link = tmp_path / "link.safetensors"
    link.symlink_to("real.safetensors")
    assert result.save(link) == target
    assert link.is_symlink() and Trace.load(link).equal(result)
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.safetensors", "real.safetensors"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_save_removes_the_temp_files_of_killed_saves(saved_trace, tmp_path):
    result, _ = saved_trace
    path = tmp_path / "t.safetensors"
    dead = tmp_path / f".t.safetensors.sw-{_dead_pid()}-0badc0de.tmp"
    legacy = tmp_path / ".t.safetensors.k3j_h5g6.tmp"  # the temp name of stream-widgets 0.1.0
    running = tmp_path / f".t.safetensors.sw-{os.getpid()}-0badc0de.tmp"  # a save still running
    for leftover in (dead, legacy, running):
        leftover.write_bytes(b"half a trace")
    os.utime(legacy, (1, 1))
    result.save(path)
    assert _hidden(tmp_path) == [running.name]


def test_save_refuses_what_load_would_refuse(saved_trace, tmp_path):
    result, _ = saved_trace
    import dataclasses

    with pytest.raises(ValueError, match="cannot save a trace with no masks"):
        dataclasses.replace(result, masks=[]).save(tmp_path / "none.safetensors")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        result.save(tmp_path)
    with pytest.raises(ValueError, match="file name is empty"):
        result.save("")
    broken = dataclasses.replace(result, retained_mass=result.retained_mass[:, :, :10])
    with pytest.raises(ValueError, match="cannot save the trace: retained_mass has shape"):
        broken.save(tmp_path / "broken.safetensors")
    assert list(tmp_path.iterdir()) == []


_SAVER = """
import sys
from tests.synthetic_traces import synthetic_trace
first, second = synthetic_trace(0), synthetic_trace(1)
first.save(sys.argv[1])  # the imports of the first save are done before the kills start
print("ready", flush=True)
while True:  # saves, one after another, until killed
    first.save(sys.argv[1])
    second.save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_save_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    first, second = synthetic_trace(0), synthetic_trace(1)
    path = first.save(tmp_path / "t.safetensors")
    path.chmod(0o640)
    rng = random.Random(0)
    kills_mid_save = 0
    for kill in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGTERM if kill % 4 == 3 else signal.SIGKILL)
        child.wait()
        loaded = Trace.load(path)  # never half a file: the old trace or the new one
        assert loaded.equal(first) or loaded.equal(second)
        kills_mid_save += bool(_hidden(tmp_path))
        first.save(path)
        assert _hidden(tmp_path) == [] and path.stat().st_mode & 0o777 == 0o640
    assert kills_mid_save >= 1  # some kills did land inside a save's write
