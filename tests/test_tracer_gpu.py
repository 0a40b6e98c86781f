"""The tracer on CUDA against the same trace on the CPU (tiny models, one mask shared by both devices)."""

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.tracer import trace
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
KEEP_ALL = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)  # >= all blocks of TEXT


def _replay(masks):
    """A mask_fn that hands back the CPU trace's masks layer by layer, on the query's device: both traces
    then use the same masks, and the comparison covers the attention and recording path alone."""
    pending = iter(masks)
    return lambda q, k, config: next(pending).to(q.device)


def _assert_same_trace(cpu, gpu, atol, rtol=0.0):
    assert all(a.equal(b.to("cpu")) for a, b in zip(cpu.masks, gpu.masks, strict=True))
    for name in ("retained_mass", "block_attention", "sentence_attention_sum"):
        torch.testing.assert_close(getattr(gpu, name), getattr(cpu, name), atol=atol, rtol=rtol)
    assert sorted(gpu.token_weights) == sorted(cpu.token_weights) == [0, 1]
    for layer in (0, 1):
        torch.testing.assert_close(gpu.token_weights[layer], cpu.token_weights[layer], atol=atol, rtol=rtol)


@pytest.mark.parametrize("mode", ["observe", "sparse"])
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_fp32_cuda_trace_equals_cpu_trace(kind, mode):
    model, tokenizer = tiny_model(kind), tiny_tokenizer()
    cpu = trace(model, tokenizer, TEXT, SMALL, mode=mode, layers=[0, 1])
    gpu = trace(model.cuda(), tokenizer, TEXT, SMALL, mode=mode, layers=[0, 1], mask_fn=_replay(cpu.masks))
    assert cpu.sparsity().mean() > 0.2
    _assert_same_trace(cpu, gpu, atol=1e-5)


def test_bf16_cuda_observe_normalises_with_the_flash_lse():
    """bf16 on CUDA takes the flash kernel's log-sum-exp (fp32 takes the chunked fallback): with every
    causal key kept, each query's recorded probabilities sum to 1; pruned, they sum to at most 1."""
    model, tokenizer = tiny_model("llama", max_positions=4096), tiny_tokenizer()
    model = model.to("cuda", torch.bfloat16)
    full = trace(model, tokenizer, TEXT, KEEP_ALL)
    torch.testing.assert_close(full.retained_mass, torch.ones_like(full.retained_mass), atol=2e-3, rtol=0)
    text = " ".join([TEXT.removeprefix("<think>\n").split("</think>")[0]] * 40)
    pruned = trace(model, tokenizer, text, SMALL)
    assert pruned.seq_len > 500 and pruned.sparsity().mean() > 0.5
    assert (pruned.retained_mass > 0).all() and (pruned.retained_mass <= 1.0 + 2e-3).all()


@pytest.mark.parametrize("t", [45, 300])  # lse of the fp32 kernel is padded past T: both sides of a pad
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_attention_on_cuda_matches_the_chunked_reference(t, dtype):
    from stream_widgets.sparse_attention import _chunked_attention, dense_attention

    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(1, h, t, 64, generator=g).to(dtype).float() for h in (6, 2, 2))  # exact in dtype
    out, lse = dense_attention(q.cuda().to(dtype), k.cuda().to(dtype), v.cuda().to(dtype), 0.125)
    ref_out, ref_lse = _chunked_attention(
        q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), 0.125, 2**20
    )
    assert lse.shape == ref_lse.shape and lse.dtype == torch.float32
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out.float().cpu(), ref_out, atol=tol, rtol=tol)
    torch.testing.assert_close(lse.cpu(), ref_lse, atol=tol, rtol=tol)
