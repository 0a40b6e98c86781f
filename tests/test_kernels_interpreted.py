"""The Triton kernels under Triton's CPU interpreter, fp32, against the torch paths they stand in for on
CUDA: CI has no GPU, so this is where a change to a kernel meets a test there (tests/test_*_gpu.py run
the compiled kernels, bf16 included, on a GPU). tests/conftest.py sets ``TRITON_INTERPRET=1`` on a
machine without CUDA; skipped without Triton."""

import os

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.estimator import _block_scores, _blocked, _row_ids

pytest.importorskip("triton")


pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="the kernels run compiled here (tests/test_*_gpu.py)"
)


@pytest.mark.parametrize(
    ("t", "heads", "kv_heads", "q_block", "k_block"), [(300, 4, 2, 64, 16), (333, 3, 1, 32, 12)]
)
def test_block_scores_equal_the_reference_scores(t, heads, kv_heads, q_block, k_block):
    from stream_widgets.kernels.block_score import block_scores

    g = torch.Generator().manual_seed(t)
    q, k = torch.randn(1, heads, t, 32, generator=g), torch.randn(1, kv_heads, t, 32, generator=g)
    config = StreamConfig(q_block=q_block, k_block=k_block)
    num_q, num_k = -(-t // q_block), -(-t // k_block)
    blocks = torch.randint(0, num_k, (heads * num_q, 7), generator=g)
    q_rows, k_blocks = _blocked(q, k, config)
    _, kv_row = _row_ids(q, k, config)
    expected = _block_scores(q_rows, k_blocks, kv_row, blocks, num_k)
    found = block_scores(q, k, blocks, 0, q_block, k_block)
    torch.testing.assert_close(found, expected, atol=1e-4, rtol=1e-5)
    # a slice of rows starting past 0 reads the same rows
    torch.testing.assert_close(block_scores(q, k, blocks[5:9], 5, q_block, k_block), expected[5:9])


@pytest.mark.parametrize(
    ("t", "config", "longest"),
    [
        (300, StreamConfig(top_k=4), 40),  # query blocks across several sentences
        (700, StreamConfig(top_k=4), 200),  # most query blocks inside one sentence
        (333, StreamConfig(q_block=32, k_block=12, top_k=3, sink=4, window=16), 25),  # not powers of 2
    ],
)
def test_kept_sums_equal_the_chunked_observe_path(monkeypatch, t, config, longest):
    from tests.observe_paths import assert_kernel_sums_equal_chunked_sums

    g = torch.Generator().manual_seed(t)
    q, k, v = (torch.randn(1, h, t, 32, generator=g) for h in (4, 2, 2))
    assert_kernel_sums_equal_chunked_sums(monkeypatch, q, k, v, config, longest)
