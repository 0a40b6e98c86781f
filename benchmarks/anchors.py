"""Which anchor score agrees with causal importance? Every score of the pipeline on every bundled trace.

Two stages, so the model passes can run on a GPU and the statistics anywhere:

``compute`` -- for each bundled trace (whole, cut only to the model's context), with one model:
  the Stream trace (default `StreamConfig`, observe mode) and the dense reference
  (`dense_sentence_attention`) of the same text, each turned into every head's vertical scores for the
  three variants (``min_later=1``; larger ``min_later`` only hides columns); the attention-suppression
  matrix (`suppression_matrix`, dense attention); the bundled labels carried over to the traced sentences
  (`BundledTrace.labels_for`). One ``.npz`` + ``.json`` per trace in ``--out``; done traces are skipped.

``analyse`` -- from those files, for every score -- attention (variant x ``min_later`` x receiver heads
  from the trace itself or pooled over a corpus of other problems' traces, on Stream and on dense
  attention), suppression importance, the position baseline (earlier first) and a seeded random control
  -- against ``counterfactual_importance_kl`` and ``resampling_importance_accuracy``:

  * Spearman per trace (mean, with a 95% bootstrap interval over problems) and pooled (all sentences,
    each trace's values replaced by within-trace percentile ranks);
  * the share of top-5 sentences in the last 30% of their trace, and Spearman with sentence length;
  * Stream vs dense agreement of each attention score: Spearman and top-5 overlap per trace.

  * the same Spearman with sentence position partialled out ("beyond position"): the position-only
    baseline alone reaches +0.45 with counterfactual importance, so a plain Spearman mostly rewards
    scores that favour early sentences.

  The default is chosen on a problem-grouped split: on half of the problems (`PICK`), the attention
  score with the highest mean position-controlled Spearman (over both targets) among those whose
  Stream-vs-dense Spearman is >= 0.9; its figures are then reported on the other half. Corpus heads for a trace are always pooled over traces of
  other problems (in the split, over the pick half), so no score sees its own trace's labels.

``heads`` -- pool the Stream kurtosis of every computed trace into corpus receiver heads per variant and
  ``min_later``, with their split-half reliability over problems, and write them to
  `stream_widgets/data/receiver_heads/` (what `anchors.choose_heads` uses by default).

Two corpora (``--corpus``): the bundled Thought Anchors traces (the default; their importance was measured
by the 8B-14B models that wrote them, a *mixed-model* comparison) and the ``own-model`` corpus
(`benchmarks/own_model_corpus.py`: traces written by Qwen2.5-Coder-0.5B-Instruct, importance computed by
the same model, which is also the reader by default: a *same-model* comparison). On the own-model corpus
the targets are the same-model columns present in every trace (`SAME_MODEL_TARGETS`), and the default
is picked on every other problem (sorted by name), reported on the rest.

Usage::

    python benchmarks/anchors.py compute --out .device/anchors [--model qwen2.5-coder-0.5b] [--device cuda]
        [--parts stream dense suppression] [--traces N] [--max-tokens T] [--corpus own-model]
    python benchmarks/anchors.py analyse --runs .device/anchors [--json benchmarks/results/anchors.json]
    python benchmarks/anchors.py heads --runs .device/anchors

Caveat: the black-box importance was measured with the 8B-14B models that wrote the traces; the
attention here is read by a 135M (or 0.5B) model.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("counterfactual_importance_kl", "resampling_importance_accuracy")
SAME_MODEL_TARGETS = (
    "counterfactual_importance_kl",
    "resampling_importance_kl",
    "resampling_importance_accuracy",
    "forced_importance_kl",
    "forced_importance_accuracy",
)
"""Targets of an own-model analysis, in table order; those present (finite somewhere) in every trace count."""
TARGET_NAMES = {
    "counterfactual_importance_kl": "counterfactual KL",
    "counterfactual_importance_accuracy": "counterfactual accuracy",
    "resampling_importance_kl": "resampling KL",
    "resampling_importance_accuracy": "resampling accuracy",
    "forced_importance_kl": "forced-answer KL",
    "forced_importance_accuracy": "forced-answer accuracy",
}
MIN_LATER = (1, 4)
PROXIMITY_IGNORE = 4
TOP = 5
LATE = 0.3  # "late" = the last 30% of the trace
PICK = ("problem_1591", "problem_2236", "problem_330", "problem_4164")  # the other four report
BOOTSTRAP = 1000
FAITHFUL = 0.9  # Stream-vs-dense Spearman a default must keep


# ============================================================================ compute
def _safe(name: str) -> str:
    return name.replace("/", "__")


def compute(args) -> None:
    import torch

    from stream_widgets.anchors import VARIANTS, sentence_attention, vertical_scores
    from stream_widgets.data import list_bundled_traces, load_bundled_trace
    from stream_widgets.dense_reference import dense_sentence_attention, truncate_to_tokens
    from stream_widgets.models import load_model, model_id
    from stream_widgets.suppression import suppression_matrix
    from stream_widgets.tracer import trace

    torch.set_num_threads(args.threads)
    if args.model is None and args.corpus == "own-model":
        args.model = "qwen2.5-coder-0.5b"  # the model that wrote and measured the corpus reads it
    model, tokenizer = load_model(args.model, dtype=torch.float32)
    model = model.to(args.device)
    if args.model_id:  # a GGUF file of a packaged model loads under its path: file it under the model's id
        model.config._name_or_path = args.model_id
    limit = int(getattr(model.config, "max_position_embeddings", 10**9))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list_bundled_traces(args.corpus)[: args.traces]
    for number, name in enumerate(names, 1):
        path = out / f"{_safe(name)}.npz"
        if path.exists():
            continue
        bundled = load_bundled_trace(name, corpus=args.corpus)
        text = truncate_to_tokens(tokenizer, bundled.full_cot, min(limit, args.max_tokens or limit))
        arrays, seconds = {}, {}
        started = time.perf_counter()
        traced = trace(model, tokenizer, text, progress=False)
        seconds["stream"] = time.perf_counter() - started
        matrices = {"stream": sentence_attention(traced)}
        if "dense" in args.parts:
            started = time.perf_counter()
            matrices["dense"] = dense_sentence_attention(model, tokenizer, text)
            seconds["dense"] = time.perf_counter() - started
        for side, matrix in matrices.items():
            for variant in VARIANTS:
                arrays[f"{side}_{variant}"] = vertical_scores(
                    matrix, PROXIMITY_IGNORE, variant=variant, min_later=1
                ).astype(np.float32)
        if "suppression" in args.parts:
            started = time.perf_counter()
            arrays["suppression"] = suppression_matrix(model, tokenizer, text).astype(np.float32)
            seconds["suppression"] = time.perf_counter() - started
        labels = bundled.labels_for(traced.sentences)
        for column, values in labels.importance.items():
            arrays[f"importance_{column}"] = np.asarray(values, dtype=np.float64)
        arrays["token_counts"] = traced.sentence_token_counts().numpy()
        meta = {
            "name": name,
            "corpus": args.corpus,
            "problem": bundled.problem_id,
            "author": bundled.model,
            "model_id": model_id(model),
            "tokens": traced.seq_len,
            "sentences": len(traced.sentences),
            "sparsity": float(traced.sparsity().mean()),
            "retained_mass": float(traced.retained_mass.mean()),
            "config": traced.config.to_dict(),
            "tags": list(labels.function_tags),
            "spans": [[x.char_start, x.char_end] for x in traced.sentences],
            "seconds": seconds,
            "device": args.device,
        }
        np.savez_compressed(out / f".{path.name}", **arrays)
        (out / f"{_safe(name)}.json").write_text(json.dumps(meta, indent=1))
        (out / f".{path.name}").rename(path)  # the .npz marks the trace as done
        print(
            f"{number:2d}/{len(names)} {name}: T={traced.seq_len} S={len(traced.sentences)} "
            + " ".join(f"{k} {v:.1f}s" for k, v in seconds.items()),
            flush=True,
        )


# ============================================================================ analysis helpers
def load_runs(folder: Path) -> list[dict]:
    """Every computed trace in `folder`. Own-model runs take their importance from the corpus as it is now
    (`fresh_importance`), so columns computed after `compute` ran (resampling on a GPU) count."""
    runs = []
    for path in sorted(folder.glob("*.npz")):
        meta = json.loads(path.with_suffix(".json").read_text())
        with np.load(path) as data:
            meta["arrays"] = {k: data[k] for k in data.files}
        if meta.get("corpus") == "own-model" and "spans" in meta:
            meta["arrays"].update(fresh_importance(meta["name"], meta["spans"]))
        runs.append(meta)
    if not runs:
        raise SystemExit(f"no computed traces in {folder}: run `compute` first")
    return runs


def fresh_importance(name: str, spans: list[list[int]]) -> dict[str, np.ndarray]:
    """``importance_<column>`` -> ``[S]``: the own-model trace's labels now, carried over to the traced
    sentences (their character spans in ``full_cot``)."""
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.sentences import Sentence

    bundled = load_bundled_trace(name, corpus="own-model")
    sentences = [Sentence(i, bundled.full_cot[a:b], a, b) for i, (a, b) in enumerate(spans)]
    labels = bundled.labels_for(sentences)
    return {f"importance_{c}": np.asarray(v, dtype=np.float64) for c, v in labels.importance.items()}


def targets_of(runs: list[dict]) -> tuple[str, ...]:
    """The targets of an analysis: `TARGETS` on the Thought Anchors corpus; on the own-model corpus, the
    `SAME_MODEL_TARGETS` that every trace carries (finite for at least one sentence)."""
    if not any(r.get("corpus") == "own-model" for r in runs):
        return TARGETS
    found = tuple(
        t
        for t in SAME_MODEL_TARGETS
        if all(np.isfinite(r["arrays"].get(f"importance_{t}", np.array([np.nan]))).any() for r in runs)
    )
    if not found:
        raise SystemExit(
            "no same-model importance in these runs: run benchmarks/own_model_corpus.py forced first"
        )
    return found


def scored(scores: np.ndarray, min_later: int) -> np.ndarray:
    """Vertical scores computed with min_later=1, with the columns a larger min_later hides set to NaN."""
    s = scores.shape[-1]
    later = np.clip(s - np.arange(s) - PROXIMITY_IGNORE, 0, None)
    return np.where(later >= min_later, scores, np.nan)


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def partial_spearman(a, b, position) -> float:
    """Spearman of a and b with sentence position partialled out (rank partial correlation)."""
    a, b, z = (np.asarray(x, dtype=float) for x in (a, b, position))
    ok = np.isfinite(a) & np.isfinite(b)
    r_ab, r_az, r_bz = spearman(a[ok], b[ok]), spearman(a[ok], z[ok]), spearman(b[ok], z[ok])
    if not all(np.isfinite([r_ab, r_az, r_bz])) or max(abs(r_az), abs(r_bz)) >= 1:
        return float("nan")
    return float((r_ab - r_az * r_bz) / np.sqrt((1 - r_az**2) * (1 - r_bz**2)))


def top(scores: np.ndarray, k: int = TOP) -> list[int]:
    order = np.lexsort((np.arange(scores.size), -np.nan_to_num(scores, nan=-np.inf)))
    return [int(i) for i in order if np.isfinite(scores[i])][:k]


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.sum():
        out[ok] = (rankdata(values[ok]) - 0.5) / ok.sum()
    return out


def bootstrap(per_trace: list[float], groups: list[str], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean over traces, resampling problems with replacement."""
    values = np.asarray(per_trace, dtype=float)
    names = sorted(set(groups))
    members = {g: np.flatnonzero(np.array(groups) == g) for g in names}
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(BOOTSTRAP):
        picked = np.concatenate([members[g] for g in rng.choice(names, len(names))])
        finite = values[picked][np.isfinite(values[picked])]
        if finite.size:
            means.append(finite.mean())
    return (
        (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))) if means else (np.nan, np.nan)
    )


# ============================================================================ the scores
def corpus_kurtosis(runs: list[dict], side: str, variant: str, min_later: int) -> np.ndarray:
    """``[N, L, H]`` per-trace kurtosis of every head (NaN for traces too short)."""
    from stream_widgets.receivers import score_kurtosis

    return np.stack([score_kurtosis(scored(r["arrays"][f"{side}_{variant}"], min_later)) for r in runs])


def attention_scores(runs, side, variant, min_later, heads_from, pool_of) -> list[np.ndarray]:
    """Per trace ``[S]`` anchor scores: the mean vertical score over 20 receiver heads.

    `heads_from` ``"trace"``: the trace's own top-kurtosis heads; ``"corpus"``: heads pooled over the
    traces `pool_of(i)` (indices of other problems' traces).
    """
    from stream_widgets.receivers import top_heads

    kurt = corpus_kurtosis(runs, side, variant, min_later)
    out = []
    for i, run in enumerate(runs):
        vertical = scored(run["arrays"][f"{side}_{variant}"], min_later)
        source = kurt[i] if heads_from == "trace" else np.nanmean(kurt[pool_of(i)], axis=0)
        if np.isnan(source).all():
            out.append(np.full(vertical.shape[-1], np.nan))
            continue
        heads = top_heads(source, min(20, source.size))
        layers, head_ids = zip(*heads, strict=True)
        out.append(vertical[list(layers), list(head_ids)].mean(axis=0))
    return out


def all_scores(runs: list[dict], pool_of) -> dict[str, dict]:
    """Score name -> {"scores": per-trace [S] arrays, "kind": ..., settings}."""
    from stream_widgets.anchors import VARIANTS, position_baseline
    from stream_widgets.suppression import suppression_importance

    table = {}
    sides = [s for s in ("stream", "dense") if all(f"{s}_raw" in r["arrays"] for r in runs)]
    for side in sides:
        for variant in VARIANTS:
            for min_later in MIN_LATER:
                for heads_from in ("trace", "corpus"):
                    name = f"{side} {variant} min_later={min_later} heads={heads_from}"
                    table[name] = {
                        "kind": "attention",
                        "side": side,
                        "variant": variant,
                        "min_later": min_later,
                        "heads": heads_from,
                        "scores": attention_scores(runs, side, variant, min_later, heads_from, pool_of),
                    }
    if all("suppression" in r["arrays"] for r in runs):
        table["suppression importance"] = {
            "kind": "suppression",
            "scores": [suppression_importance(r["arrays"]["suppression"]) for r in runs],
        }
    table["position baseline"] = {
        "kind": "baseline",
        "scores": [position_baseline(r["sentences"]) for r in runs],
    }
    rng = np.random.default_rng(0)
    table["random control"] = {"kind": "control", "scores": [rng.random(r["sentences"]) for r in runs]}
    return table


def evaluate(runs: list[dict], table: dict, indices: list[int], targets=TARGETS) -> dict[str, dict]:
    """The figures of every score over the traces `indices`, against each of `targets`."""
    groups = [runs[i]["problem"] for i in indices]
    results = {}
    for name, entry in table.items():
        row = {k: v for k, v in entry.items() if k != "scores"}
        for target in targets:
            per_trace = [
                spearman(entry["scores"][i], runs[i]["arrays"][f"importance_{target}"]) for i in indices
            ]
            pooled = spearman(
                np.concatenate([percentile_ranks(entry["scores"][i]) for i in indices]),
                np.concatenate(
                    [percentile_ranks(runs[i]["arrays"][f"importance_{target}"]) for i in indices]
                ),
            )
            beyond = [
                partial_spearman(
                    entry["scores"][i],
                    runs[i]["arrays"][f"importance_{target}"],
                    np.arange(runs[i]["sentences"]),
                )
                for i in indices
            ]
            row[target] = {
                "mean": float(np.nanmean(per_trace)),
                "ci95": bootstrap(per_trace, groups),
                "pooled": pooled,
                "per_trace": per_trace,
                "beyond_position": float(np.nanmean(beyond)),
                "beyond_position_ci95": bootstrap(beyond, groups),
            }
        late, lengths = [], []
        for i in indices:
            scores, s = entry["scores"][i], runs[i]["sentences"]
            picked = top(scores)
            if picked:
                late.append(np.mean([j >= (1 - LATE) * s for j in picked]))
            lengths.append(spearman(scores, runs[i]["arrays"]["token_counts"]))
        row["top5_late_share"] = float(np.mean(late)) if late else float("nan")
        row["length_spearman"] = float(np.nanmean(lengths))
        results[name] = row
    # Stream vs dense, for the attention scores that exist on both sides
    for name, row in results.items():
        if row.get("side") != "stream":
            continue
        twin = name.replace("stream ", "dense ", 1)
        if twin not in table:
            continue
        rho = [spearman(table[name]["scores"][i], table[twin]["scores"][i]) for i in indices]
        shared = [
            len(set(top(table[name]["scores"][i])) & set(top(table[twin]["scores"][i]))) for i in indices
        ]
        row["stream_vs_dense"] = {"spearman": float(np.nanmean(rho)), "top5_shared": float(np.mean(shared))}
    return results


def _targets(row: dict) -> list[str]:
    return [t for t in TARGET_NAMES if isinstance(row.get(t), dict)]


def causal(row: dict) -> float:
    """Mean Spearman with the causal targets."""
    return float(np.mean([row[t]["mean"] for t in _targets(row)]))


def beyond(row: dict) -> float:
    """Mean position-controlled Spearman with the causal targets: what a score adds to position."""
    return float(np.mean([row[t]["beyond_position"] for t in _targets(row)]))


def analyse(args) -> None:
    runs = load_runs(Path(args.runs))
    problems = [r["problem"] for r in runs]
    everyone = list(range(len(runs)))

    def other_problems(i):
        return [j for j in everyone if problems[j] != problems[i]]

    targets = targets_of(runs)
    own = any(r.get("corpus") == "own-model" for r in runs)
    chooser = sorted(set(problems))[::2] if own else list(PICK)  # own-model: every other problem
    pick = [i for i in everyone if problems[i] in chooser]
    report = [i for i in everyone if problems[i] not in chooser]

    def pick_pool(i):
        return [j for j in pick if problems[j] != problems[i]]

    full = evaluate(runs, all_scores(runs, other_problems), everyone, targets)
    split_table = all_scores(runs, pick_pool)
    on_pick, on_report = (
        evaluate(runs, split_table, pick, targets),
        evaluate(runs, split_table, report, targets),
    )
    candidates = [
        name
        for name, row in on_pick.items()
        if row["kind"] == "attention"
        and row["side"] == "stream"
        and row.get("stream_vs_dense", {}).get("spearman", 0) >= FAITHFUL
    ]
    chosen = max(candidates, key=lambda n: beyond(on_pick[n])) if candidates else None
    summary = {
        "machine": platform.platform(),
        "model_id": runs[0]["model_id"],
        "traces": len(runs),
        "problems": sorted(set(problems)),
        "corpus": "own-model" if own else "thought-anchors",
        "authors": sorted({r.get("author", "?") for r in runs}),
        "targets": list(targets),
        "pick_problems": chooser,
        "tokens": [r["tokens"] for r in runs],
        "sentences": [r["sentences"] for r in runs],
        "sparsity": [r["sparsity"] for r in runs],
        "seconds": [r["seconds"] for r in runs],
        "all_traces": full,
        "split": {"pick": on_pick, "report": on_report, "chosen": chosen, "faithful_spearman": FAITHFUL},
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1, allow_nan=True))
    print(table_markdown(full, on_pick, on_report, chosen))
    print(f"results: {out}")


def table_markdown(full: dict, on_pick: dict, on_report: dict, chosen: str | None) -> str:
    def cell(row, target):
        r = row[target]
        return f"{r['mean']:+.2f} [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}] / {r['pooled']:+.2f}"

    def after(row, target):
        r = row[target]
        lo, hi = r["beyond_position_ci95"]
        return f"{r['beyond_position']:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    targets = _targets(next(iter(full.values())))
    header = " | ".join(f"{TARGET_NAMES[t]}: mean [95% CI] / pooled | beyond position" for t in targets)
    lines = [
        f"| score | {header} | top-5 in last 30% | Spearman with length | Stream vs dense: Spearman / top-5 |",
        "|---|" + "---|---|" * len(targets) + "---:|---:|---|",
    ]
    for name, row in sorted(full.items(), key=lambda kv: -causal(kv[1])):
        if row.get("side") == "dense":
            continue
        agreement = row.get("stream_vs_dense")
        lines.append(
            f"| {name} | "
            + " | ".join(f"{cell(row, t)} | {after(row, t)}" for t in targets)
            + f" | {row['top5_late_share']:.2f} | {row['length_spearman']:+.2f} | "
            + (f"{agreement['spearman']:.2f} / {agreement['top5_shared']:.1f}" if agreement else "-")
            + " |"
        )
    if chosen:
        pick, report = on_pick[chosen], on_report[chosen]
        plain = ", ".join(f"{TARGET_NAMES[t]} {cell(report, t)}" for t in targets)
        lines += [
            "",
            f"chosen on the pick problems: **{chosen}** (beyond position: pick {beyond(pick):+.3f}, held-out "
            f"{beyond(report):+.3f}; plain Spearman held-out: {plain}; position baseline held-out: "
            f"{TARGET_NAMES[targets[0]]} {cell(on_report['position baseline'], targets[0])})",
        ]
    return "\n".join(lines)


# ============================================================================ corpus heads
def heads(args) -> None:
    from stream_widgets.anchors import VARIANTS
    from stream_widgets.receivers import CorpusHeads, save_corpus_heads, split_half_reliability

    runs = load_runs(Path(args.runs))
    problems = [r["problem"] for r in runs]
    entries = []
    for variant in VARIANTS:
        for min_later in MIN_LATER:
            per_trace = corpus_kurtosis(runs, "stream", variant, min_later)
            usable = ~np.isnan(per_trace).all(axis=(1, 2))
            kurt = np.nanmean(per_trace[usable], axis=0)
            reliability = split_half_reliability(
                per_trace[usable], [p for p, u in zip(problems, usable, strict=True) if u]
            )
            entries.append(
                CorpusHeads(
                    model_id=args.model_id or runs[0]["model_id"],
                    variant=variant,
                    kurtosis=kurt,
                    reliability=reliability,
                    traces=tuple(r["name"] for r, u in zip(runs, usable, strict=True) if u),
                    proximity_ignore=PROXIMITY_IGNORE,
                    min_later=min_later,
                    notes={
                        "source": "benchmarks/anchors.py heads: Stream traces (default StreamConfig, observe) of "
                        "the bundled Thought Anchors traces, cut to the model's context",
                        "tokens": [r["tokens"] for r, u in zip(runs, usable, strict=True) if u],
                        "config": runs[0]["config"],
                    },
                )
            )
            print(
                f"{variant:<9} min_later={min_later}: {usable.sum()} traces, split-half r {reliability.mean_r:.3f}"
            )
    print(f"corpus heads: {save_corpus_heads(entries, args.dir) if args.dir else save_corpus_heads(entries)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("compute")
    c.add_argument("--out", required=True, help="folder for one .npz + .json per trace (resumable)")
    c.add_argument("--model", default=None, help="model for load_model (default: the embedded SmolLM2)")
    c.add_argument("--device", default="cpu")
    c.add_argument(
        "--model-id", default=None, help="record this model id (for a GGUF file of a packaged model)"
    )
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--traces", type=int, default=None, help="only the first N bundled traces")
    c.add_argument("--max-tokens", type=int, default=None, help="cut traces to this many tokens")
    c.add_argument("--parts", nargs="+", default=["stream", "dense", "suppression"])
    c.add_argument(
        "--corpus",
        default="thought-anchors",
        choices=("thought-anchors", "own-model"),
        help="which bundled corpus (own-model: read by the model that wrote it unless --model says otherwise)",
    )
    a = commands.add_parser("analyse")
    a.add_argument("--runs", required=True)
    a.add_argument("--json", default=str(RESULTS / "anchors.json"))
    h = commands.add_parser("heads")
    h.add_argument("--runs", required=True)
    h.add_argument("--dir", default=None, help="output folder (default: the package's data/receiver_heads)")
    h.add_argument(
        "--model-id", default=None, help="model id to file the heads under (default: the runs' own)"
    )
    args = parser.parse_args()
    {"compute": compute, "analyse": analyse, "heads": heads}[args.command](args)


if __name__ == "__main__":
    main()
