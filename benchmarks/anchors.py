"""Thought anchors from Stream vs dense attention, and against the black-box importance of the bundled traces.

For each bundled trace (in `list_bundled_traces()` order, until the time budget runs out), cut to a fixed
token budget at a sentence end (`truncate_to_tokens`):

1. trace it with Stream (default `StreamConfig`, observe mode) and run the dense reference
   (`dense_sentence_attention`) on the same text, with the default model (SmolLM2-135M-Instruct);
2. per variant (``raw``, ``depth``, ``distance``) and ``min_later`` (1 and 4), pick receiver heads
   pooled over all benchmarked traces (20 heads, separately for Stream and for dense) and compute anchor
   scores;
3. Stream vs dense: Spearman of anchor scores per trace and top-5 overlap, beside the mask's sparsity;
4. against `chunks_labeled.json`: Spearman of anchor scores with each black-box importance column per
   trace (sentences where both are defined), averaged over traces; the share of top-5 anchors that lie
   in the last 30% of their trace; the mean anchor score per function tag.

The traced sentences follow the default `split_sentences` rules (no cut inside formulas), which merge
some of the labelled Thought Anchors chunks; each sentence's function tag and importance come from
`BundledTrace.labels_for` (character overlap: the tag of the chunk sharing the most characters, the
overlap-weighted mean of each importance column), never from the chunk at the same index.

Usage: ``python benchmarks/anchors.py [--tokens 1024] [--budget-s 600] [--threads 2] [--top-k K] [--out PATH]``.
Prints tables and writes `benchmarks/results/anchors.json` (or `--out`); ``--top-k`` runs a sparser mask
than the default config.

Caveat: the black-box importance was measured on the full traces with the models that wrote them
(DeepSeek R1 distills); here a 135M model reads the first ~1k tokens of each trace.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from stream_widgets.anchors import VARIANTS, anchor_scores, receiver_heads, sentence_attention
from stream_widgets.config import StreamConfig
from stream_widgets.data import list_bundled_traces, load_bundled_trace
from stream_widgets.dense_reference import dense_sentence_attention, truncate_to_tokens
from stream_widgets.models import load_model
from stream_widgets.tracer import trace

COLUMNS = (
    "counterfactual_importance_kl",
    "counterfactual_importance_accuracy",
    "resampling_importance_kl",
    "resampling_importance_accuracy",
    "forced_importance_kl",
    "forced_importance_accuracy",
)
MIN_LATER = (1, 4)
RESULTS = Path(__file__).resolve().parent / "results" / "anchors.json"


def _top(scores: np.ndarray, k: int = 5) -> list[int]:
    order = np.lexsort((np.arange(scores.size), -np.nan_to_num(scores, nan=-np.inf)))
    return [int(i) for i in order if not np.isnan(scores[i])][:k]


def _spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~np.isnan(a) & ~np.isnan(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def collect(tokens: int, budget_s: float, config: StreamConfig) -> list[dict]:
    model, tokenizer = load_model()
    cases, start = [], time.perf_counter()
    for name in list_bundled_traces():
        elapsed = time.perf_counter() - start
        if cases and elapsed + 1.2 * elapsed / len(cases) > budget_s:
            print(f"time budget reached after {len(cases)} traces ({elapsed:.0f} s)")
            break
        bundled = load_bundled_trace(name)
        if not bundled.is_math:
            print(f"skip {name}: a scenario, not a math problem")
            continue
        text = truncate_to_tokens(tokenizer, bundled.full_cot, tokens)  # a prefix of full_cot
        traced = trace(model, tokenizer, text, config, progress=False)
        s = len(traced.sentences)
        labels = bundled.labels_for(traced.sentences)
        cases.append(
            {
                "name": name,
                "tokens": traced.seq_len,
                "sentences": s,
                "sparsity": float(traced.sparsity().mean()),
                "retained_mass": float(traced.retained_mass.mean()),
                "stream": sentence_attention(traced),
                "dense": dense_sentence_attention(model, tokenizer, text),
                "tags": list(labels.function_tags),
                "importance": {c: np.array(labels.importance[c]) for c in COLUMNS},
            }
        )
        print(
            f"{len(cases):2d} {name}: T={traced.seq_len} S={s} sparsity={cases[-1]['sparsity']:.1%}",
            flush=True,
        )
    return cases


def analyse(cases: list[dict]) -> dict:
    results = {}
    for variant in VARIANTS:
        for min_later in MIN_LATER:
            kwargs = {"variant": variant, "min_later": min_later}
            heads = {p: receiver_heads([c[p] for c in cases], **kwargs) for p in ("stream", "dense")}
            scores = {
                p: [anchor_scores(c[p], heads[p], **kwargs) for c in cases] for p in ("stream", "dense")
            }
            rho = [_spearman(a, b) for a, b in zip(scores["stream"], scores["dense"], strict=True)]
            overlap = [
                len(set(_top(a)) & set(_top(b)))
                for a, b in zip(scores["stream"], scores["dense"], strict=True)
            ]
            entry = {
                "receiver_heads": {p: heads[p] for p in heads},
                "shared_receiver_heads": len(set(heads["stream"]) & set(heads["dense"])),
                "stream_vs_dense": {
                    "spearman_mean": float(np.nanmean(rho)),
                    "spearman_min": float(np.nanmin(rho)),
                    "top5_overlap_mean": float(np.mean(overlap)),
                    "top5_overlap_min": int(min(overlap)),
                    "traces_with_4_of_5": int(sum(o >= 4 for o in overlap)),
                },
            }
            for p in ("stream", "dense"):
                late = [
                    np.mean([i >= 0.7 * c["sentences"] for i in _top(sc)])
                    for sc, c in zip(scores[p], cases, strict=True)
                ]
                blackbox = {}
                for column in COLUMNS:
                    values = [
                        _spearman(sc, c["importance"][column]) for sc, c in zip(scores[p], cases, strict=True)
                    ]
                    blackbox[column] = {
                        "mean": float(np.nanmean(values)),
                        "traces": int(np.sum(~np.isnan(values))),
                    }
                by_tag: dict[str, list[float]] = {}
                for sc, c in zip(scores[p], cases, strict=True):
                    for value, tag in zip(sc, c["tags"], strict=True):
                        if not np.isnan(value):
                            by_tag.setdefault(tag, []).append(float(value))
                entry[p] = {
                    "blackbox_spearman": blackbox,
                    "top5_share_in_last_30pct": float(np.mean(late)),
                    "mean_score_by_tag": {
                        t: {"mean": float(np.mean(v)), "n": len(v)} for t, v in sorted(by_tag.items())
                    },
                }
            results[f"{variant}/min_later={min_later}"] = entry
    return results


def print_tables(cases: list[dict], results: dict) -> None:
    print(
        f"\n{len(cases)} traces, {np.mean([c['tokens'] for c in cases]):.0f} tokens and "
        f"{np.mean([c['sentences'] for c in cases]):.1f} sentences on average; Stream sparsity "
        f"{np.mean([c['sparsity'] for c in cases]):.1%} (min {min(c['sparsity'] for c in cases):.1%}), "
        f"retained mass {np.mean([c['retained_mass'] for c in cases]):.3f}"
    )
    print("\nStream vs dense anchor scores (receiver heads pooled per pipeline, 20 heads)")
    print(f"{'variant':24} {'spearman':>9} {'min':>6} {'top5':>5} {'min':>4} {'>=4/5':>6} {'heads':>6}")
    for key, e in results.items():
        sd = e["stream_vs_dense"]
        print(
            f"{key:24} {sd['spearman_mean']:9.3f} {sd['spearman_min']:6.3f} {sd['top5_overlap_mean']:5.2f} "
            f"{sd['top5_overlap_min']:4d} {sd['traces_with_4_of_5']:3d}/{len(cases):<2d} {e['shared_receiver_heads']:4d}/20"
        )
    short = {
        c: c.replace("_importance", "")
        .replace("counterfactual", "cf")
        .replace("resampling", "rs")
        .replace("forced", "fo")
        .replace("accuracy", "acc")
        for c in COLUMNS
    }
    print(
        "\nMean per-trace Spearman of anchor scores with black-box importance (and share of top-5 in last 30%)"
    )
    print(f"{'variant':24} {'path':6} " + " ".join(f"{short[c]:>8}" for c in COLUMNS) + f" {'late':>5}")
    for key, e in results.items():
        for p in ("stream", "dense"):
            row = " ".join(f"{e[p]['blackbox_spearman'][c]['mean']:8.3f}" for c in COLUMNS)
            print(f"{key:24} {p:6} {row} {e[p]['top5_share_in_last_30pct']:5.2f}")
    print(
        "\nMean anchor score per function tag (Stream; raw in attention units, depth in rank fraction, "
        "distance in multiples of the usual attention at that distance)"
    )
    keys = [f"{v}/min_later=4" for v in VARIANTS]
    tags = sorted({t for k in keys for t in results[k]["stream"]["mean_score_by_tag"]})
    print(f"{'tag':24} {'n':>5} " + " ".join(f"{k.split('/')[0]:>9}" for k in keys))
    for tag in tags:
        cells = [results[k]["stream"]["mean_score_by_tag"].get(tag) for k in keys]
        n = cells[0]["n"] if cells[0] else 0
        print(f"{tag:24} {n:5d} " + " ".join(f"{c['mean']:9.3g}" if c else f"{'-':>9}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokens", type=int, default=1024, help="token budget per trace (cut at a sentence end)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="stop adding traces after this many seconds"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--top-k", type=int, default=None, help="StreamConfig.top_k (default: the default config)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS})")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = StreamConfig() if args.top_k is None else StreamConfig(top_k=args.top_k)
    print(f"config: {config}")
    cases = collect(args.tokens, args.budget_s, config)
    results = analyse(cases)
    print_tables(cases, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": f"{platform.machine()} CPU, {args.threads} torch threads, {platform.platform()}",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (embedded GGUF, fp32)",
        "config": config.to_dict(),
        "token_budget": args.tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "traces": [
            {k: c[k] for k in ("name", "tokens", "sentences", "sparsity", "retained_mass")} for c in cases
        ],
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
