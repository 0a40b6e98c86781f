"""Tracing a corpus: every input once, to its own file, resumably, on one worker per GPU.

`run_corpus(inputs, out)` writes into the folder `out` what `stream_widgets.corpus.manifest` describes:
``traces/<name>.safetensors`` per input, ``labels/<name>.json`` for inputs with labels, and
``corpus.json`` (`CorpusRun`), rewritten atomically after every trace, so a kill leaves it consistent.

Resuming: an input is traced again unless ``corpus.json`` lists it as done with the same content hash
(SHA-256 of its text, the model, dtype, `StreamConfig`, mode, ``max_tokens`` and the trace format
version) and its trace file exists. A changed text or setting re-traces; a failed input is tried again;
a killed run resumes where it stopped (a trace being written when the kill came is redone).

Workers: one process per visible GPU (`torch.multiprocessing`, spawn), each loading its own copy of the
model and taking the next input from a shared queue; each writes its own traces, the parent process
writes ``corpus.json``. The output does not depend on the number of workers. On a CPU machine it runs
one worker in this process; ``workers=N`` forces N (CPU workers on a CPU machine, sharing its cores).
A model too large for one GPU runs in one worker with ``device_map="auto"`` (accelerate spreads its
layers over the GPUs).

A trace that fails (a text longer than the model's context, a CUDA out-of-memory, ...) is recorded with
its error and the run goes on; so does a worker process that dies (its input is recorded as failed).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stream_widgets.config import StreamConfig
from stream_widgets.corpus.inputs import CorpusInput, read_inputs
from stream_widgets.corpus.manifest import (
    FORMAT,
    LABELS,
    MANIFEST,
    TRACES,
    VERSION,
    CorpusRun,
    TraceEntry,
    content_hash,
)
from stream_widgets.corpus.manifest import STATUSES as STATUSES

__all__ = [
    "FORMAT",
    "LABELS",
    "MANIFEST",
    "TRACES",
    "VERSION",
    "CorpusRun",
    "TraceEntry",
    "content_hash",
    "run_corpus",
]

_DTYPES = ("float32", "bfloat16", "float16")


# ----------------------------------------------------------------- settings
@dataclass(frozen=True)
class _Job:
    """What every worker needs: picklable (spawn)."""

    model: Any  # a name or path, or (model, tokenizer) in this process only
    dtype: str
    config: StreamConfig
    mode: str
    max_tokens: int | None
    devices: tuple[str, ...]
    device_map: Any
    threads: int | None


@dataclass(frozen=True)
class _Task:
    id: str
    text: str
    path: str


def _model_key(model) -> str:
    """What the content hash records of the model, found without loading it."""
    from stream_widgets.models import DEFAULT_MODEL_ID, PACKAGED_MODELS, model_id

    if model is None:
        return DEFAULT_MODEL_ID
    if isinstance(model, tuple):
        return model_id(model[0])
    text = str(model)
    if text in PACKAGED_MODELS and not Path(text).exists():
        return PACKAGED_MODELS[text].model_id
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def _devices(device: str | None, workers: int | None, device_map) -> tuple[str, ...]:
    """The device of every worker."""
    import torch

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1 or None, got {workers!r}")
    if device_map is not None:
        if workers not in (None, 1):
            raise ValueError(
                "device_map spreads one model over the devices: it runs one worker; leave workers unset"
            )
        return ("auto",)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA device is visible; use device='cpu'")
        if torch.device(device).index is not None:
            return (str(torch.device(device)),) * (workers or 1)
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return tuple(gpus[i % len(gpus)] for i in range(workers or len(gpus)))
    return (str(torch.device(device)),) * (workers or 1)


# ----------------------------------------------------------------- the run
def run_corpus(
    inputs,
    out: str | os.PathLike,
    *,
    model=None,
    config: StreamConfig | None = None,
    mode: str = "observe",
    max_tokens: int | None = None,
    limit: int | None = None,
    dtype: str = "float32",
    device: str | None = None,
    workers: int | None = None,
    device_map=None,
    threads: int | None = None,
    progress: bool = True,
) -> CorpusRun:
    """Trace every input once into ``out/traces/``, skipping what is done; write ``out/corpus.json``.

    Args:
        inputs: ``"bundled"``, a folder of text files, a ``.jsonl`` file or a sequence of records
            (`stream_widgets.corpus.inputs`).
        out: Output folder (created if missing).
        model: What `load_model` takes (None: the embedded SmolLM2-135M), or a loaded ``(model,
            tokenizer)`` pair (one worker, in this process).
        config: Estimator settings; `StreamConfig()` if None.
        mode: ``"observe"`` or ``"sparse"`` (`stream_widgets.trace`).
        max_tokens: Cut every text at the last sentence within this many tokens (None: whole texts).
        limit: Only the first `limit` inputs.
        dtype: Parameter dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` (a loaded model
            keeps its own).
        device: ``"cpu"``, ``"cuda"`` (every visible GPU), ``"cuda:1"``; None: every visible GPU, else
            the CPU.
        workers: Worker processes; None: one per GPU (one, in this process, on the CPU). N > 1 on the
            CPU runs N CPU workers that share the cores.
        device_map: Load the model with this accelerate device map (``"auto"`` for a model too large for
            one GPU) in one worker.
        threads: Torch threads per worker; None: this process's setting with one worker, else the CPU
            cores shared out.
        progress: Show a progress bar over the traces, with an ETA, and print notes to stderr.

    Returns:
        The `CorpusRun` (what ``corpus.json`` holds).

    Raises:
        ValueError: For bad inputs (before any model loads), bad settings, a ``corpus.json`` of another
            format, or a model that no worker could load.
    """
    import torch

    from stream_widgets.traces import VERSION as TRACE_FORMAT

    config = StreamConfig() if config is None else config
    if not isinstance(config, StreamConfig):
        raise TypeError(f"config must be a StreamConfig, got {type(config).__name__}")
    if mode not in ("observe", "sparse"):
        raise ValueError(f"mode must be 'observe' or 'sparse', got {mode!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ValueError(f"max_tokens must be an int >= 1 or None, got {max_tokens!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    loaded = isinstance(model, tuple)
    if loaded and (len(model) != 2 or workers not in (None, 1) or device_map is not None):
        raise ValueError(
            "a loaded (model, tokenizer) pair runs in this process only: pass the model's name or path to "
            "run several workers or a device map"
        )
    if loaded:  # where it is and the dtype it has (what the hash records)
        parameter = next(model[0].parameters())
        devices, dtype = (str(parameter.device),), str(parameter.dtype).removeprefix("torch.")
    else:
        devices = _devices(device, workers, device_map)
    items = read_inputs(inputs, limit=limit)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: give a folder for the corpus")
    settings = {
        "model": _model_key(model),
        "dtype": dtype,
        "config": config.to_dict(),
        "mode": mode,
        "max_tokens": max_tokens,
        "trace_format": TRACE_FORMAT,
        "inputs": str(inputs) if isinstance(inputs, str | os.PathLike) else f"{len(items)} records",
    }
    (out / TRACES).mkdir(parents=True, exist_ok=True)
    note = _notes(progress)
    mapped = [item for item in items if item.mapped]
    if mapped:
        note(
            f"{len(mapped)} ids are not safe file names and were mapped: "
            + ", ".join(f"{item.id!r} -> {item.name}" for item in mapped[:5])
            + (" ..." if len(mapped) > 5 else "")
            + " (corpus.json lists both)"
        )
    run = _plan(out, items, settings)
    run.save()
    others = {p.name for p in (out / TRACES).glob("*.safetensors")} - {Path(e.file).name for e in run.entries}
    if others:
        note(f"{len(others)} trace files in {out / TRACES} belong to no input of this run: left as they are")
    todo = [e for e in run.entries if e.status == "pending"]
    skipped = len(run.entries) - len(todo)
    if skipped:
        note(f"{skipped} of {len(run.entries)} traces are done already (same text and settings): skipped")
    if not todo:
        return run
    texts = {item.id: item.text for item in items}
    tasks = [_Task(e.id, texts[e.id], str(out / e.file)) for e in todo]
    job = _Job(
        model=model,
        dtype=dtype,
        config=config,
        mode=mode,
        max_tokens=max_tokens,
        devices=devices,
        device_map=device_map,
        threads=threads if threads or len(devices) == 1 else max(1, (os.cpu_count() or 1) // len(devices)),
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(run.entries), initial=skipped, unit="trace", desc="corpus", file=sys.stderr)
    state = {"run": run}

    def finished(task_id: str, result: dict) -> None:
        entries = tuple(replace(e, **result) if e.id == task_id else e for e in state["run"].entries)
        state["run"] = replace(state["run"], entries=entries)
        state["run"].save()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(state["run"].failed), refresh=False)
            if result["status"] == "failed":
                bar.write(f"failed: {task_id}: {result['error']}", file=sys.stderr)

    try:
        if len(devices) == 1:  # one GPU, the CPU, or one model over several GPUs: no process to start
            _run_here(job, tasks, finished)
        else:
            _run_workers(job, tasks, finished, torch)
    finally:
        if bar is not None:
            bar.close()
    return state["run"]


def _notes(progress: bool):
    def note(message: str) -> None:
        if progress:
            print(f"note: {message}", file=sys.stderr)

    return note


def _plan(out: Path, items: Sequence[CorpusInput], settings: dict) -> CorpusRun:
    """The entries of this run: earlier done traces with the same hash kept, the rest pending; labels
    files written (or removed) to match the inputs."""
    from stream_widgets.storage import write_file

    previous: dict[str, TraceEntry] = {}
    if (out / MANIFEST).exists():
        previous = {e.id: e for e in CorpusRun.load_manifest(out).entries}
    entries = []
    for item in items:
        file = f"{TRACES}/{item.name}.safetensors"
        labels = None
        label_path = out / LABELS / f"{item.name}.json"
        if item.labels is not None:
            labels = f"{LABELS}/{item.name}.json"
            text = json.dumps(item.labels.to_dict(), ensure_ascii=False) + "\n"
            label_path.parent.mkdir(exist_ok=True)
            if not label_path.is_file() or label_path.read_text(encoding="utf-8") != text:
                write_file(label_path, text)
        elif label_path.exists():
            label_path.unlink()
        digest = content_hash(item.text, settings)
        old = previous.get(item.id)
        if old is not None and old.status == "done" and old.hash == digest and (out / file).is_file():
            entries.append(replace(old, file=file, group=item.group_id, labels=labels))
        else:
            # a file there is stale (another text or settings, or a save the manifest never recorded)
            (out / file).unlink(missing_ok=True)
            entries.append(TraceEntry(id=item.id, file=file, group=item.group_id, hash=digest, labels=labels))
    return CorpusRun(out, settings, tuple(entries))


# ----------------------------------------------------------------- tracing one input
def _load(job: _Job, device: str):
    import torch

    from stream_widgets.models import load_model

    if isinstance(job.model, tuple):
        return job.model
    model, tokenizer = load_model(job.model, dtype=getattr(torch, job.dtype), device_map=job.device_map)
    if job.device_map is None and device != "cpu":
        model = model.to(device)
    return model, tokenizer


def _trace_one(model, tokenizer, task: _Task, job: _Job, device: str) -> dict:
    """Trace one input and save it; the stats for its entry, or its error (the run goes on)."""
    import torch

    from stream_widgets.dense_reference import truncate_to_tokens
    from stream_widgets.tracer import trace

    started = time.perf_counter()
    try:
        text = task.text
        if job.max_tokens is not None:
            text = truncate_to_tokens(tokenizer, text, job.max_tokens)
        traced = trace(model, tokenizer, text, job.config, mode=job.mode, progress=False)
        traced.save(task.path)
    except Exception as error:  # recorded in corpus.json with its error; the other inputs go on
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # after an out-of-memory error, the next input gets the memory back
        return {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "seconds": time.perf_counter() - started,
            "device": device,
        }
    return {
        "status": "done",
        "error": None,
        "tokens": traced.seq_len,
        "sentences": len(traced.sentences),
        "sparsity": float(traced.sparsity().mean()),
        "retained_mass": float(traced.retained_mass.mean()),
        "seconds": time.perf_counter() - started,
        "device": device,
    }


def _run_here(job: _Job, tasks: Sequence[_Task], finished) -> None:
    """One worker, in this process."""
    import torch

    device = job.devices[0]
    threads = torch.get_num_threads()
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    try:
        model, tokenizer = _load(job, device)
        for task in tasks:
            finished(task.id, _trace_one(model, tokenizer, task, job, device))
    finally:
        torch.set_num_threads(threads)  # this process's own setting, as it was


# ----------------------------------------------------------------- worker processes
def _worker(rank: int, job: _Job, tasks, results) -> None:
    """A worker process: load the model on its device, then trace inputs from `tasks` until None."""
    import torch

    device = job.devices[rank]
    try:
        if job.threads is not None:
            torch.set_num_threads(job.threads)
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        model, tokenizer = _load(job, device)
    except Exception as error:  # reported to the parent, which decides whether the run can go on
        results.put(("load_failed", rank, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        return
    results.put(("ready", rank, device))
    while True:
        task = tasks.get()
        if task is None:
            break
        results.put(("start", rank, task.id))
        results.put(("result", rank, task.id, _trace_one(model, tokenizer, task, job, device)))


def _run_workers(job: _Job, tasks: Sequence[_Task], finished, torch) -> None:
    """One process per device (spawn); inputs go to whichever worker is free."""
    context = torch.multiprocessing.get_context("spawn")
    task_queue, results = context.Queue(), context.Queue()
    for task in tasks:
        task_queue.put(task)
    for _ in job.devices:
        task_queue.put(None)
    processes = [
        context.Process(target=_worker, args=(rank, job, task_queue, results), daemon=True)
        for rank in range(len(job.devices))
    ]
    for process in processes:
        process.start()
    working: dict[int, str] = {}  # rank -> id of the input it is tracing
    left = {task.id for task in tasks}
    load_errors: dict[int, str] = {}
    try:
        while left:
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                for rank, process in enumerate(processes):
                    if process.exitcode is not None and process.exitcode != 0 and rank in working:
                        lost = working.pop(rank)
                        left.discard(lost)
                        finished(
                            lost,
                            {
                                "status": "failed",
                                "error": f"the worker process on {job.devices[rank]} died while tracing it "
                                f"(exit code {process.exitcode}; a negative code is the signal, e.g. -9 when "
                                "the system ran out of memory)",
                                "device": job.devices[rank],
                            },
                        )
                if all(process.exitcode is not None for process in processes) and results.empty():
                    break
                continue
            kind, rank = message[0], message[1]
            if kind == "load_failed":
                load_errors[rank] = message[2]
            elif kind == "start":
                working[rank] = message[2]
            elif kind == "result":
                working.pop(rank, None)
                left.discard(message[2])
                finished(message[2], message[3])
        if left:
            if len(load_errors) == len(processes):
                first = next(iter(load_errors.values()))
                raise ValueError(f"no worker could load the model: {first.splitlines()[0]}")
            raise RuntimeError(
                f"every worker process exited with {len(left)} traces left (pending in corpus.json); "
                "run the command again to trace them"
                + (f". Load errors: {list(load_errors.values())[0].splitlines()[0]}" if load_errors else "")
            )
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
