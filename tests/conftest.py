"""Shared fixtures: the real default model, loaded once per session (slow tests only)."""

import pytest
import torch


@pytest.fixture(scope="session")
def default_model():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M-Instruct, fp32, cached under ~/.cache."""
    from stream_widgets.models import load_model

    torch.set_num_threads(2)
    return load_model()
