"""A tiny random Llama written as a real GGUF file (with its tokenizer), to test the packaged-model cache
without dequantising the 94 MiB default model: it loads through the same transformers GGUF path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.tiny_models import tiny_model, tiny_tokenizer


def write_tiny_gguf(path: Path, scale: int = 1) -> Path:
    """Write `tiny_model("llama")` and `tiny_tokenizer()` as an F32 GGUF file at `path` (~450 KiB).

    `scale` > 1 widens the model's hidden and feed-forward sizes by that factor and adds layers (a slower
    write, for kill tests); the weights are then random, not `tiny_model`'s.
    """
    from gguf import GGUFWriter

    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    if scale > 1:
        import torch
        from transformers import AutoModelForCausalLM

        config = model.config
        config.hidden_size *= scale
        config.intermediate_size *= scale
        config.head_dim = config.hidden_size // config.num_attention_heads
        config.num_hidden_layers = 4
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    config = model.config
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_file_type(0)  # all F32

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    tokens += [f"<pad{i}>" for i in range(config.vocab_size - len(tokens))]
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    eos = vocab["<eos>"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i == eos or t.startswith("<pad") else 1 for i, t in enumerate(tokens)])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in model.state_dict().items():
        if name.startswith("model.layers."):
            _, _, layer, rest = name.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            gguf_name = f"blk.{layer}.{per_layer[module]}.{kind}"
        else:
            gguf_name = names[name]
        writer.add_tensor(gguf_name, np.ascontiguousarray(tensor.detach().numpy().astype(np.float32)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
