"""Corpus runs and device maps on CUDA (tiny models): layers split between a GPU and the CPU (and
between two GPUs where there are two) trace as on one device, and one worker per GPU writes the traces
of one worker. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from stream_widgets.config import StreamConfig
from tests.corpus_example import records, text

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CONFIG = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)


def _replay(masks):
    """Hand back the reference trace's masks layer by layer, on the query's device (as
    tests/test_tracer_gpu.py does): the comparison then covers placement and recording alone."""
    pending = iter(masks)
    return lambda q, k, config: next(pending).to(q.device)


def _assert_close(reference, other, atol=1e-5):
    assert all(a.equal(b) for a, b in zip(reference.masks, other.masks, strict=True))
    for name in ("retained_mass", "block_attention", "sentence_attention_sum"):
        torch.testing.assert_close(getattr(other, name), getattr(reference, name), atol=atol, rtol=0.0)


def _device_map(first, second):
    return {
        "model.embed_tokens": first,
        "model.rotary_emb": first,
        "model.layers.0": first,
        "model.layers.1": second,
        "model.norm": second,
        "lm_head": second,
    }


@pytest.mark.parametrize("second", ["cpu", 1])
def test_layers_on_two_devices_trace_as_on_one(tiny_folder, second):
    from stream_widgets.models import load_model
    from stream_widgets.tracer import input_device, trace

    if second == 1 and torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    model, tokenizer = load_model(tiny_folder)
    reference = trace(model, tokenizer, text(0), CONFIG, progress=False)
    split, _ = load_model(tiny_folder, device_map=_device_map(0, second))
    assert str(input_device(split)) == "cuda:0"
    # as mapped (accelerate keeps a CPU-mapped layer's weights in host memory, its parameters on "meta")
    assert split.hf_device_map["model.layers.1"] == second
    if second == 1:
        assert split.model.layers[1].self_attn.q_proj.weight.device == torch.device("cuda:1")
    placed = trace(split, tokenizer, text(0), CONFIG, progress=False, mask_fn=_replay(reference.masks))
    assert all(m.device.type == "cpu" for m in placed.masks) and placed.retained_mass.device.type == "cpu"
    _assert_close(reference, placed)
    # its own masks, estimated on each layer's device (the CUDA estimator may break near-ties otherwise)
    own = trace(split, tokenizer, text(0), CONFIG, progress=False)
    assert [m.kv_indices.shape for m in own.masks] == [m.kv_indices.shape for m in reference.masks]
    assert ((own.retained_mass > 0) & (own.retained_mass <= 1 + 1e-5)).all()


def test_one_worker_per_gpu_writes_the_traces_of_one_worker(tiny_folder, tmp_path):
    from stream_widgets.corpus import run_corpus

    inputs = records(4)
    one = run_corpus(inputs, tmp_path / "one", model=str(tiny_folder), config=CONFIG, device="cuda:0")
    every = run_corpus(inputs, tmp_path / "all", model=str(tiny_folder), config=CONFIG, device="cuda")
    assert {e.device for e in every.entries} <= {f"cuda:{i}" for i in range(torch.cuda.device_count())}
    for a, b in zip(one.entries, every.entries, strict=True):
        assert a.status == b.status == "done"
        _assert_close(one.load(a), every.load(b))
