"""The exact frontier: how much attention mass any top-k block mask could keep, beside Stream's masks.

For one text and model, every layer's post-RoPE queries and keys are captured in one pass. From them,
exactly (queries in chunks, each row's softmax over all its causal keys), the attention mass of every
(head, query block, key block) is summed. Then for each config of a sweep (k_block, top_k, search
settings):

* **Stream**: the blocks `estimate_mask` keeps (sinks, local window, `top_k` chosen by the search);
* **oracle**: the same sinks and window, plus the `top_k` candidate blocks with the largest true mass:
  the most any top-k search could keep at the same number of blocks per row, i.e. the same sparsity.

Retained mass = the kept blocks' mass over all queries (1.0 = nothing lost), per layer and mean over
layers; the gap is oracle minus Stream, in points of mass. Prints a table and writes JSON.

    python benchmarks/frontier.py --tokens 4096                                   # SmolLM2, CPU
    python benchmarks/frontier.py --model qwen2.5-coder-0.5b --device cuda --tokens 16384 32768

Memory: the capture is L x (H + Hkv) x T x D floats (0.04 GB for SmolLM2 at 4k, 3.2 GB for Qwen at 32k);
the masses are H x (T / q_block) x (T / k_block) floats per layer.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from stream_configs import SWEEP, named  # benchmarks/stream_configs.py

RESULTS = Path(__file__).resolve().parent / "results"


def capture(model, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Every layer's ``(q [1, H, T, D], k [1, Hkv, T, D], scale)`` from one pass of the model's own attention."""
    from stream_widgets.attention import install_attention
    from stream_widgets.sparse_attention import dense_attention

    layers = {}

    def attend(call):
        layers[call.layer] = (call.query.detach().clone(), call.key.detach().clone(), call.scale)
        return dense_attention(call.query, call.key, call.value, call.scale)[0]

    with install_attention(model, attend) as installed, torch.inference_mode():
        model.get_decoder()(input_ids=input_ids, use_cache=False)
    installed.check_one_pass()
    return [layers[i] for i in range(installed.num_layers)]


def block_masses(q, k, scale, q_block: int, k_block: int, max_chunk_bytes: int = 2**30) -> torch.Tensor:
    """float32 ``[H, Qb, Kb]``: true attention mass of every (head, query block, key block), summed over
    the block's queries; exact (each row's softmax over all its causal keys)."""
    from stream_widgets.attention import repeat_kv

    _, h, t, _ = q.shape
    keys = repeat_kv(k, h)[0].float()
    num_q, num_k = -(-t // q_block), -(-t // k_block)
    out = torch.zeros(h, num_q, num_k, device=q.device)
    blocks_per_chunk = max(1, max_chunk_bytes // (3 * 4 * h * q_block * num_k * k_block))
    positions = torch.arange(num_k * k_block, device=q.device)
    for first in range(0, num_q, blocks_per_chunk):
        begin, end = first * q_block, min((first + blocks_per_chunk) * q_block, t)
        logits = torch.einsum("hqd,hkd->hqk", q[0, :, begin:end].float(), keys) * scale  # [H, c, T]
        logits = torch.nn.functional.pad(logits, (0, num_k * k_block - t), value=float("-inf"))
        logits.masked_fill_(
            positions[None, None, :] > torch.arange(begin, end, device=q.device)[None, :, None], float("-inf")
        )
        probs = torch.softmax(logits, dim=-1)
        rows = end - begin
        pad = -rows % q_block
        probs = torch.nn.functional.pad(probs, (0, 0, 0, pad))  # padding queries carry no mass
        out[:, first : first + (rows + pad) // q_block] = probs.view(h, -1, q_block, num_k, k_block).sum(
            dim=(2, 4)
        )
    return out


def kept_mass(masses: torch.Tensor, kv_indices: torch.Tensor, valid: torch.Tensor) -> float:
    """Sum of the masses of the kept blocks (``kv_indices`` ``[H, Qb, K]`` where ``valid``)."""
    picked = masses.gather(2, kv_indices.long().clamp(min=0, max=masses.shape[-1] - 1))
    return float((picked * valid).sum())


def oracle_kept_mass(masses: torch.Tensor, t: int, config) -> float:
    """Mass of the sinks + window + the `top_k` candidate blocks of largest true mass, per (head, query block)."""
    from stream_widgets import search

    config = search.fit(config, t)
    h, num_q, num_k = masses.shape
    rows = search.layout(torch.arange(num_q, device=masses.device), t, config)
    blocks = torch.arange(num_k, device=masses.device)
    candidate = (blocks[None, :] >= rows.sink_end[:, None]) & (blocks[None, :] < rows.local_start[:, None])
    fixed = (blocks[None, :] < rows.sink_end[:, None]) | (
        (blocks[None, :] >= rows.local_start[:, None]) & (blocks[None, :] <= rows.last_block[:, None])
    )
    fixed_mass = (masses * fixed[None]).sum()
    best = masses.masked_fill(~candidate[None], 0.0).topk(min(config.top_k, num_k), dim=-1).values
    return float(fixed_mass + best.sum())


def main() -> None:
    from stream_widgets import estimate_mask
    from stream_widgets.models import load_model, model_id
    from stream_widgets.tokens import tokenize

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096])
    parser.add_argument("--configs", nargs="+", default=list(SWEEP), help="names from the sweep")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-id", default=None, help="record this model id (for a GGUF file or folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "frontier.json")
    args = parser.parse_args()
    for name in args.configs:
        named(name)  # exits naming the choices for an unknown name
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    model = model.to(args.device)
    if args.model_id:
        model.config._name_or_path = args.model_id
    from long_anchors import long_text  # benchmarks/long_anchors.py: the same long text

    results = []
    for tokens in args.tokens:
        ids = tokenize(tokenizer, long_text(tokenizer, tokens)).input_ids.to(args.device)
        t = ids.shape[1]
        started = time.perf_counter()
        layers = capture(model, ids)
        capture_s = time.perf_counter() - started
        configs = {name: named(name) for name in args.configs}
        per_layer = {name: [] for name in configs}
        sparsity = {name: [] for name in configs}
        estimator_seconds = dict.fromkeys(configs, 0.0)
        started = time.perf_counter()
        for q, k, scale in layers:
            # the true masses depend on the block sizes only: one exact pass per (q_block, k_block)
            for shape in sorted({(c.q_block, c.k_block) for c in configs.values()}):
                masses = block_masses(q, k, scale, *shape)
                total = float(masses.sum())  # = H x T: every query's row sums to 1
                for name, config in configs.items():
                    if (config.q_block, config.k_block) != shape:
                        continue
                    began = time.perf_counter()
                    mask = estimate_mask(q, k, config)
                    if q.is_cuda:
                        torch.cuda.synchronize()
                    estimator_seconds[name] += time.perf_counter() - began
                    stream = kept_mass(masses, mask.kv_indices[0], mask.valid()[0])
                    per_layer[name].append(
                        {"stream": stream / total, "oracle": oracle_kept_mass(masses, t, config) / total}
                    )
                    sparsity[name].append(float(mask.sparsity()))
        seconds = time.perf_counter() - started
        for name, config in configs.items():
            layer_rows = per_layer[name]
            row = {
                "tokens": t,
                "config": name,
                "settings": config.to_dict(),
                "sparsity": sum(sparsity[name]) / len(sparsity[name]),
                "stream_mass": sum(x["stream"] for x in layer_rows) / len(layer_rows),
                "oracle_mass": sum(x["oracle"] for x in layer_rows) / len(layer_rows),
                "per_layer": layer_rows,
                "estimator_seconds": estimator_seconds[name],
                "seconds_all_configs": seconds,
                "capture_seconds": capture_s,
            }
            row["gap_points"] = 100 * (row["oracle_mass"] - row["stream_mass"])
            results.append(row)
            print(
                f"T={t} {name:<28} sparsity {row['sparsity']:.1%}  oracle {row['oracle_mass']:.3f}  "
                f"Stream {row['stream_mass']:.3f}  gap {row['gap_points']:.1f} pt",
                flush=True,
            )
        del layers
    print(
        "\n| T | config | sparsity | oracle mass | Stream mass | gap (points) | estimator s (all layers) |"
        "\n|---:|---|---:|---:|---:|---:|---:|"
    )
    for r in results:
        print(
            f"| {r['tokens']} | {r['config']} | {r['sparsity']:.1%} | {r['oracle_mass']:.3f} | "
            f"{r['stream_mass']:.3f} | {r['gap_points']:.1f} | {r['estimator_seconds']:.2f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": platform.platform(),
        "device": args.device,
        "dtype": args.dtype,
        "model_id": model_id(model),
    }
    args.out.write_text(json.dumps({**document, "rows": results}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
