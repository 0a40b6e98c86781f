"""fidelity: dense vs Stream-sparse next-token distributions, on a tiny model and on the default model."""

import pytest
import torch

from stream_widgets.config import StreamConfig
from stream_widgets.faithfulness import _cot_positions, fidelity
from stream_widgets.tokens import tokenize
from tests.tiny_models import TEXT, tiny_model, tiny_tokenizer

SMALL = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
KEEP_ALL = StreamConfig(q_block=8, k_block=4, top_k=64, sink=4, window=8)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(), tiny_tokenizer()


def test_cot_positions_are_the_tokens_inside_think():
    tokens = tokenize(tiny_tokenizer(), TEXT)
    inside = _cot_positions(TEXT, tokens.offsets)
    start, end = TEXT.index("First"), TEXT.index("\n</think>")
    for (a, b), flag in zip(tokens.offsets.tolist()[:-1], inside.tolist()[:-1], strict=True):
        assert flag == (b > a and start <= a < end)
    assert not inside[-1]


def test_a_mask_that_keeps_everything_agrees_exactly(tiny):
    model, tokenizer = tiny
    report = fidelity(model, tokenizer, TEXT, KEEP_ALL)
    assert report.sparsity == 0.0 and report.retained_mass == pytest.approx(1.0, abs=1e-5)
    assert report.top1_agreement == 1.0 and report.final_top1_agrees
    assert report.mean_kl < 1e-6 and report.final_kl < 1e-6  # fp32 rounding of the two softmaxes
    assert report.num_positions == int(_cot_positions(TEXT, tokenize(tokenizer, TEXT).offsets).sum())


def test_pruning_shows_in_the_report(tiny):
    model, tokenizer = tiny
    report = fidelity(model, tokenizer, TEXT, SMALL)
    assert 0.2 < report.sparsity < 1.0 and report.retained_mass < 0.999
    assert report.mean_kl > 1e-4 and report.p95_kl >= report.mean_kl * 0.5
    data = report.to_dict()
    assert data["config"] == SMALL.to_dict() and "sparsity" in str(report)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        fidelity(model, tokenizer, "a", SMALL)


def test_oracle_masks_can_stand_in(tiny):
    from stream_widgets.estimator import oracle_mask

    model, tokenizer = tiny
    exact = fidelity(model, tokenizer, TEXT, SMALL, mask_fn=oracle_mask)
    assert exact.sparsity == pytest.approx(fidelity(model, tokenizer, TEXT, SMALL).sparsity, abs=0.05)
    assert exact.mean_kl >= 0.0


@pytest.mark.slow
def test_real_model_fidelity(default_model):
    from tests.test_tracer import REAL, REAL_TEXT

    model, tokenizer = default_model
    report = fidelity(model, tokenizer, REAL_TEXT, REAL)
    assert report.num_positions > 80
    assert report.p95_kl >= 0.0 and report.final_kl >= 0.0
    assert 0.1 < report.sparsity < 0.95
    assert 0.5 < report.top1_agreement <= 1.0 and report.mean_kl >= 0.0
    assert 0.5 < report.retained_mass < 1.0
    assert torch.isfinite(torch.tensor(report.mean_kl))
