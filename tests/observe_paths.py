"""Both observe paths of the recorder on the same inputs: the chunked one (probabilities, then sums) and
the Triton `kernels.kept_sums` kernel, compiled on CUDA (test_tracer_gpu.py) or interpreted on the CPU
(test_kernels_interpreted.py). Import only where Triton is installed."""

import torch

from stream_widgets import tracer
from stream_widgets.attention import AttentionCall
from stream_widgets.estimator import estimate_mask
from stream_widgets.kernels import kept_sums as kernel


def sentence_runs(t: int, longest: int, seed: int) -> tuple[torch.Tensor, int]:
    """Sentence ids of t positions: runs of 1 to `longest` tokens with gaps of 0-2 tokens in no sentence."""
    g = torch.Generator().manual_seed(seed)
    ids, pos, count = torch.full((t,), -1, dtype=torch.int64), 5, 0
    while pos < t:
        length = int(torch.randint(1, longest + 1, (1,), generator=g))
        ids[pos : pos + length] = count
        count += 1
        pos += length + int(torch.randint(0, 3, (1,), generator=g))
    return ids, count


def assert_kernel_sums_equal_chunked_sums(monkeypatch, q, k, v, config, longest: int) -> None:
    """Retained mass, block sums and sentence-pair sums of one layer through both paths agree, and the
    fused pass did run the kernel (once) while the chunked one did not."""
    sid, count = sentence_runs(q.shape[2], longest, q.shape[2])
    calls = []
    real = kernel.kept_sums
    monkeypatch.setattr(kernel, "kept_sums", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    records = []
    for fused in (False, True):
        monkeypatch.setattr(tracer, "_fused_sums_available", lambda query, fused=fused: fused)
        recorder = tracer.Recorder(config, "observe", estimate_mask, sentence_ids=sid, num_sentences=count)
        recorder._attend(AttentionCall(None, 0, q, k, v, q.shape[-1] ** -0.5, None))
        records.append((recorder.retained_mass[0], recorder.block_attention[0], recorder.sentence_sums[0]))
        assert len(calls) == int(fused)
    assert records[0][2].sum() > 0 and (records[0][0] > 0).all()
    for chunked, fused in zip(*records, strict=True):
        torch.testing.assert_close(fused, chunked, atol=1e-5, rtol=1e-4)
