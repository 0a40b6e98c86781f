"""Tiny random-weight causal LMs (Llama, Qwen2) and a tiny fast tokenizer, built offline for tests."""

from __future__ import annotations

import torch

TEXT = (
    "<think>\nFirst we add two and three. That gives five! Then we double it, which makes ten.\n\n"
    "Is that right? Yes, five times two is ten.\n</think>\nThe answer is ten."
)


def tiny_tokenizer():
    """A byte-level BPE fast tokenizer trained on a few sentences (offsets supported)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def tiny_model(kind: str = "llama", vocab: int = 300, max_positions: int = 512):
    """A 2-layer random model: 4 query heads, 2 KV heads (GQA), head dim 16, fp32, eval mode."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    config = LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common, use_sliding_window=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    with torch.no_grad():  # the default init gives near-uniform attention; make it peaked, as in real models
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    return model.eval()


SMALL_FLAGS = ["--q-block", "8", "--k-block", "4", "--top-k", "2", "--sink", "4", "--window", "8"]
"""CLI config flags of a small `StreamConfig` for the tiny models' short texts."""


def save_tiny_model(path, kind: str = "llama"):
    """A tiny random model of `kind` and the tiny tokenizer saved in `path`, as `load_model` reads a folder."""
    tiny_model(kind).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
