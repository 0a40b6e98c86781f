"""Shared fixtures: the real default model, loaded once per session (slow tests only), and a tiny random
model saved as a folder."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Without a GPU the Triton kernels run under Triton's interpreter (tests/test_kernels_interpreted.py);
    # Triton reads this when it is first imported, which nothing above does.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def default_model():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, fp32, cached under ~/.cache."""
    from stream_widgets.models import load_model

    torch.set_num_threads(2)
    return load_model()


@pytest.fixture(scope="session")
def real_trace(default_model):
    """A Stream trace (observe mode, default config) of a real bundled reasoning trace, cut to ~1,200 tokens."""
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.dense_reference import truncate_to_tokens
    from stream_widgets.tracer import trace

    model, tokenizer = default_model
    text = load_bundled_trace("deepseek-r1-distill-qwen-14b/correct_base_solution/problem_330").full_cot
    return trace(model, tokenizer, truncate_to_tokens(tokenizer, text, 1200), progress=False)


@pytest.fixture(scope="session")
def real_explore_data(real_trace):
    """What the views show for `real_trace`: tags from the shipped tagger, anchors, attention means."""
    from stream_widgets.views import explore_data

    return explore_data(real_trace)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A folder holding a tiny random Llama and its tokenizer (`load_model(folder)`, `--model folder`)."""
    from tests.tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
