"""Stream anchors against exact anchors at long context (16k-32k tokens), with the same and with own heads.

The text is the bundled traces concatenated with their `<think>` tags removed (so every position is
reasoning text), cut at a sentence end to each length. For each length, one Stream trace (default
`StreamConfig`, observe mode) and the exact reference (`dense_sentence_attention`: every probability,
queries in chunks), then per anchor-score setting:

* **same heads**: both sides averaged over the exact side's own 20 receiver heads;
* **own heads**: each side over its own 20 receiver heads (what a user of either would see);
* **corpus heads**: both over the model's shipped corpus heads, when it has them;

Spearman of the anchor scores (sentences scored on both sides) and the shared top-5. Target at the
default config: top-5 >= 4 of 5 and Spearman >= 0.95. Prints a table, writes JSON.

    python benchmarks/long_anchors.py --model qwen2.5-coder-0.5b --device cuda --lengths 16384 32768
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from stream_configs import add_config_argument, named  # benchmarks/stream_configs.py

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = (("raw", 1), ("distance", 4), ("depth", 1))


def long_text(tokenizer, tokens: int) -> str:
    """The bundled traces without `<think>` tags, concatenated, cut at the last sentence within `tokens`."""
    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.dense_reference import truncate_to_tokens

    text = ""
    for name in list_bundled_traces():
        text += load_bundled_trace(name).full_cot.replace("<think>", "").replace("</think>", "") + "\n\n"
        if len(tokenizer(text).input_ids) > tokens:
            return truncate_to_tokens(tokenizer, text, tokens)
    raise ValueError(f"the bundled traces hold fewer than {tokens} tokens")


def _top(scores: np.ndarray, k: int = 5) -> set[int]:
    order = np.lexsort((np.arange(scores.size), -np.nan_to_num(scores, nan=-np.inf)))
    return {int(i) for i in order if np.isfinite(scores[i])}.intersection(map(int, order[:k]))


def _compare(a: np.ndarray, b: np.ndarray) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    return {"spearman": float(spearmanr(a[ok], b[ok]).statistic), "top5_shared": len(_top(a) & _top(b))}


def main() -> None:
    import torch

    from stream_widgets.anchors import sentence_attention, vertical_scores
    from stream_widgets.dense_reference import dense_sentence_attention
    from stream_widgets.models import load_model, model_id
    from stream_widgets.receivers import corpus_heads, score_kurtosis, top_heads
    from stream_widgets.tracer import trace

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model-id", default=None, help="record this model id (for a GGUF file of a packaged model)"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768])
    parser.add_argument("--chunk-bytes", type=int, default=2**31, help="exact reference work budget")
    parser.add_argument("--out", type=Path, default=RESULTS / "long_anchors.json")
    add_config_argument(parser)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
    model = model.to(args.device)
    if args.model_id:  # a GGUF file of a packaged model loads under its path: file it under the model's id
        model.config._name_or_path = args.model_id
    rows = []
    for length in args.lengths:
        text = long_text(tokenizer, length)
        started = time.perf_counter()
        traced = trace(model, tokenizer, text, config=named(args.config), progress=False)
        stream_s = time.perf_counter() - started
        started = time.perf_counter()
        exact = dense_sentence_attention(model, tokenizer, text, max_chunk_bytes=args.chunk_bytes)
        exact_s = time.perf_counter() - started
        stream = sentence_attention(traced)
        row = {
            "tokens": traced.seq_len,
            "sentences": len(traced.sentences),
            "sparsity": float(traced.sparsity().mean()),
            "retained_mass": float(traced.retained_mass.mean()),
            "stream_seconds": stream_s,
            "exact_seconds": exact_s,
            "config": named(args.config).to_dict(),
            "settings": {},
        }
        for variant, min_later in SETTINGS:
            vs = vertical_scores(stream, variant=variant, min_later=min_later)
            ve = vertical_scores(exact, variant=variant, min_later=min_later)
            heads_exact = top_heads(score_kurtosis(ve), 20)
            heads_stream = top_heads(score_kurtosis(vs), 20)

            def mean_over(v, heads):
                layers, ids = zip(*heads, strict=True)
                return v[list(layers), list(ids)].mean(axis=0)

            entry = {
                "same heads": _compare(mean_over(vs, heads_exact), mean_over(ve, heads_exact)),
                "own heads": _compare(mean_over(vs, heads_stream), mean_over(ve, heads_exact)),
                "shared receiver heads": len(set(heads_exact) & set(heads_stream)),
            }
            shipped = corpus_heads(model_id(model), variant, min_later=min_later)
            if shipped is not None and shipped.kurtosis.shape == vs.shape[:2]:
                heads = shipped.heads(20)
                entry["corpus heads"] = _compare(mean_over(vs, heads), mean_over(ve, heads))
            row["settings"][f"{variant}, min_later={min_later}"] = entry
        rows.append(row)
        print(
            f"T={row['tokens']} S={row['sentences']} sparsity {row['sparsity']:.1%} "
            f"(stream {stream_s:.1f} s, exact {exact_s:.1f} s)",
            flush=True,
        )
    print(
        "\n| T | sentences | sparsity | setting | same heads: Spearman / top-5 | own heads | corpus heads |"
    )
    print("|---:|---:|---:|---|---|---|---|")
    for row in rows:
        for name, entry in row["settings"].items():
            cells = [
                f"{entry[k]['spearman']:.3f} / {entry[k]['top5_shared']}" if k in entry else "-"
                for k in ("same heads", "own heads", "corpus heads")
            ]
            print(
                f"| {row['tokens']} | {row['sentences']} | {row['sparsity']:.1%} | {name} | "
                + " | ".join(cells)
                + " |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": platform.platform(),
        "device": args.device,
        "dtype": args.dtype,
        "model_id": model_id(model),
    }
    args.out.write_text(json.dumps({**document, "rows": rows}, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
