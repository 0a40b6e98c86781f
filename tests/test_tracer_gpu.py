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


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_fused_observe_sums_equal_the_cpu_trace(kind):
    """Without token weights, observe mode on CUDA sums the kept probabilities in the Triton kernel
    (`kernels.kept_sums`); its records equal the CPU trace's (the probabilities-then-sums path)."""
    pytest.importorskip("triton")
    model, tokenizer = tiny_model(kind), tiny_tokenizer()
    cpu = trace(model, tokenizer, TEXT, SMALL)
    gpu = trace(model.cuda(), tokenizer, TEXT, SMALL, mask_fn=_replay(cpu.masks))
    assert cpu.sparsity().mean() > 0.2 and cpu.sentence_attention_sum.sum() > 0
    for name in ("retained_mass", "block_attention", "sentence_attention_sum"):
        torch.testing.assert_close(getattr(gpu, name), getattr(cpu, name), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("t", "config", "longest"),
    [
        (1500, StreamConfig(top_k=4), 40),  # query blocks span several sentences
        (2000, StreamConfig(top_k=4), 300),  # most query blocks inside one sentence
        (777, StreamConfig(q_block=32, k_block=12, top_k=3, sink=4, window=16), 25),  # blocks not powers of 2
    ],
)
def test_kept_sums_kernel_equals_the_chunked_path(monkeypatch, t, config, longest, dtype):
    """The same CUDA inputs and mask through both observe paths of the recorder."""
    pytest.importorskip("triton")
    from tests.observe_paths import assert_kernel_sums_equal_chunked_sums

    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(1, h, t, 64, generator=g).to("cuda", dtype) for h in (6, 2, 2))
    assert_kernel_sums_equal_chunked_sums(monkeypatch, q, k, v, config, longest)


def test_dense_attention_falls_back_to_flash_where_cudnn_refuses(monkeypatch):
    """A GPU or shape without cuDNN attention takes the flash kernel (K/V expanded), same results."""
    from stream_widgets.sparse_attention import dense_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 300, 64, generator=g).to("cuda", torch.bfloat16) for h in (6, 2, 2))
    cudnn_out, cudnn_lse = dense_attention(q, k, v, 0.125)

    refused = []

    def refuse(*args, **kwargs):
        refused.append(1)
        raise RuntimeError("cuDNN attention is not available here")

    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_cudnn_attention", refuse)
    flash_out, flash_lse = dense_attention(q, k, v, 0.125)
    assert refused == [1]  # the call did go to cuDNN first, then to flash
    torch.testing.assert_close(flash_out, cudnn_out, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(flash_lse, cudnn_lse, atol=1e-4, rtol=1e-4)
