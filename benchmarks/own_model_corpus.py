"""The own-model corpus: chains of thought written by the model that reads them, with its own importance.

The opt-in Qwen2.5-Coder-0.5B-Instruct writes a chain of thought for each bundled MATH problem (the 8
problems of the Thought Anchors traces, their ``problem.json``) and for the word problems in
``stream_widgets/data/own_model/word_problems.json`` (written for this project, with known answers), and
the black-box importance of every sentence is computed with the same model (`stream_widgets.importance`).
Each trace is saved in the bundled layout, so `stream_widgets.data` (``corpus="own-model"``), the anchors
benchmark and the report read it unchanged:

    stream_widgets/data/own_model/<model>/sampled_base_solution/problem_<id>/
        problem.json          the problem and its answer (``gt_answer``)
        base_solution.json    prompt, solution, full_cot (= prompt + solution, what a reader reads),
                              answer, is_correct, and ``generation``: model, seed, sampling settings
        chunks_labeled.json   the sentences of ``split_sentences(full_cot, rules="thought-anchors")`` as
                              chunks, with every importance column computed so far (null where not)
        importance.json       how each importance column was computed (settings, seconds, device),
                              with the resampling rollouts' answers and first sentences

Stages (each resumable: a finished trace or column is skipped, every write is atomic):

    python benchmarks/own_model_corpus.py generate [--max-new-tokens 700] [--seed 0]
    python benchmarks/own_model_corpus.py forced [--device cpu]
    python benchmarks/own_model_corpus.py resample --samples 10 --device cuda [--max-new-tokens 512]
    python benchmarks/own_model_corpus.py status

Generation: the model's chat template (its default system message), the user message Thought Anchors
used ("Solve this math problem step by step. You MUST put your final answer in \\boxed{}. Problem: ..."),
and the assistant turn opened with ``<think>\\n`` so that the reasoning region is marked as in the
bundled traces; seeded nucleus sampling at Thought Anchors' settings (temperature 0.6, top-p 0.95).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "stream_widgets" / "data"
CONDITION = "sampled_base_solution"
INSTRUCTION = "Solve this math problem step by step. You MUST put your final answer in \\boxed{}. Problem: "
THINK = "<think>\n"
MODELS = {"qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct"}


def problems() -> list[dict]:
    """The word problems (first: they are short), then the bundled MATH problems, each with an `id`."""
    from stream_widgets.data import TRACES_DIR, list_bundled_traces

    out = json.loads((DATA / "own_model" / "word_problems.json").read_text(encoding="utf-8"))
    seen = set()
    for name in list_bundled_traces():
        problem_id = name.split("/")[-1]
        path = TRACES_DIR / name / "problem.json"
        if problem_id.startswith("problem_") and problem_id not in seen and path.exists():
            seen.add(problem_id)
            record = json.loads(path.read_text(encoding="utf-8"))
            out.append(
                {"id": problem_id.removeprefix("problem_"), **record, "source": "MATH (via Thought Anchors)"}
            )
    return out


def trace_dir(root: Path, model: str, problem_id: str) -> Path:
    return root / MODELS.get(model, model.replace("/", "__")) / CONDITION / f"problem_{problem_id}"


def _json(value) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _load_model(args):
    import torch

    from stream_widgets.models import load_model

    if getattr(args, "loaded", None) is not None:  # `run`: one load for every stage
        return args.loaded
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model, dtype=torch.float32)
    if args.model_id:  # a GGUF file or saved folder of the packaged model: file it under the model's id
        from stream_widgets.models import PACKAGED_MODELS

        packaged = PACKAGED_MODELS.get(args.model_id)
        model.config._name_or_path = packaged.model_id if packaged else args.model_id
    return model.to(args.device), tokenizer


def _name(args) -> str:
    """The model the corpus folder is named after."""
    return args.model_id or args.model


# ============================================================================ generate
def generate(args) -> None:
    import torch

    from stream_widgets import storage
    from stream_widgets.data import IMPORTANCE_COLUMNS
    from stream_widgets.importance import extract_answer, is_correct
    from stream_widgets.models import model_id
    from stream_widgets.sampling import TEMPERATURE, TOP_P, end_token_ids, sample_continuations
    from stream_widgets.sentences import split_sentences

    model, tokenizer = _load_model(args)
    max_new_tokens = getattr(args, "generate_tokens", args.max_new_tokens)
    root = Path(args.root)
    todo = problems()[: args.traces]
    for number, problem in enumerate(todo, 1):
        target = trace_dir(root, _name(args), problem["id"])
        if (target / "chunks_labeled.json").exists():
            continue
        messages = [{"role": "user", "content": INSTRUCTION + problem["problem"]}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + THINK
        ids = torch.tensor(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        stops = end_token_ids(tokenizer)
        started = time.perf_counter()
        new = sample_continuations(
            model,
            ids,
            1,
            seed=args.seed,
            max_new_tokens=max_new_tokens,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            stop_ids=sorted(stops),
        )[0]
        seconds = time.perf_counter() - started
        solution = tokenizer.decode(new, skip_special_tokens=True)
        full_cot = prompt + solution
        answer = extract_answer(solution)
        chunks = split_sentences(full_cot, rules="thought-anchors")
        base = {
            "prompt": prompt,
            "solution": solution,
            "full_cot": full_cot,
            "answer": answer or "",
            "is_correct": bool(is_correct(answer, problem.get("gt_answer"))),
            "generation": {
                "model": model_id(model),
                "load_model": _name(args),
                "seed": args.seed,
                "stream": 0,
                "sampler": "stream_widgets.sampling.sample_continuations",
                "temperature": TEMPERATURE,
                "top_p": TOP_P,
                "max_new_tokens": max_new_tokens,
                "new_tokens": len(new),
                "finished": bool(new) and new[-1] in stops,
                "chat_template": True,
                "assistant_prefix": THINK,
                "dtype": "float32",
                "device": args.device,
                "torch": torch.__version__,
                "machine": platform.platform(),
                "seconds": round(seconds, 1),
            },
        }
        records = [
            {"chunk": c.text, "chunk_idx": c.index, "function_tags": [], **dict.fromkeys(IMPORTANCE_COLUMNS)}
            for c in chunks
        ]
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.staged_folder(target) as stage:
            (stage / "problem.json").write_bytes(_json({k: v for k, v in problem.items() if k != "id"}))
            (stage / "base_solution.json").write_bytes(_json(base))
            (stage / "chunks_labeled.json").write_bytes(_json(records))
            (stage / "importance.json").write_bytes(_json({}))
        print(
            f"{number:2d}/{len(todo)} {target.name}: {len(new)} tokens in {seconds:.0f}s, {len(chunks)} sentences, "
            f"answer {answer!r} (reference {problem.get('gt_answer')!r})",
            flush=True,
        )


# ============================================================================ importance stages
def corpus_traces(root: Path, model: str, names=None) -> list[Path]:
    folder = root / MODELS.get(model, model.replace("/", "__")) / CONDITION
    found = sorted(p.parent for p in folder.glob("*/chunks_labeled.json"))
    return [p for p in found if names is None or p.name in names]


def _update(directory: Path, columns: dict, kind: str, meta: dict) -> None:
    """Write `columns` (name -> [S] floats) into chunks_labeled.json and `meta` under `kind` in
    importance.json, both in one atomic step."""
    import math

    from stream_widgets import storage

    records = json.loads((directory / "chunks_labeled.json").read_text(encoding="utf-8"))
    for name, values in columns.items():
        if len(values) != len(records):
            raise ValueError(f"{directory}: {len(values)} values of {name} for {len(records)} chunks")
        for record, value in zip(records, values, strict=True):
            record[name] = None if value is None or not math.isfinite(float(value)) else float(value)
    info = json.loads((directory / "importance.json").read_text(encoding="utf-8"))
    info[kind] = meta
    storage.write_files(directory, {"chunks_labeled.json": _json(records), "importance.json": _json(info)})


def _check_chunks(directory: Path, sentences) -> None:
    records = json.loads((directory / "chunks_labeled.json").read_text(encoding="utf-8"))
    if [r["chunk"] for r in records] != [s.text for s in sentences]:
        raise ValueError(
            f"{directory}: the chunks no longer match split_sentences(full_cot, 'thought-anchors')"
        )


def forced(args) -> None:
    from stream_widgets.importance import forced_importance

    model, tokenizer = _load_model(args)
    for directory in corpus_traces(Path(args.root), _name(args), args.names)[: args.traces]:
        info = json.loads((directory / "importance.json").read_text(encoding="utf-8"))
        if "forced" in info and not args.force:
            continue
        base = json.loads((directory / "base_solution.json").read_text(encoding="utf-8"))
        problem = json.loads((directory / "problem.json").read_text(encoding="utf-8"))
        result = forced_importance(
            model, tokenizer, base["full_cot"], reference=problem.get("gt_answer"), rules="thought-anchors"
        )
        _check_chunks(directory, result.sentences)
        meta = {
            **result.settings,
            "answers": list(result.answers),
            "distributions": result.distributions.round(6).tolist(),
            "greedy": list(result.greedy),
            "device": args.device,
            "machine": platform.platform(),
        }
        columns = {k: result.importance[k] for k in ("forced_importance_kl", "forced_importance_accuracy")}
        _update(directory, columns, "forced", meta)
        print(
            f"{directory.name}: forced importance of {len(result.sentences)} sentences in {result.settings['seconds']:.0f}s",
            flush=True,
        )


def resample(args) -> None:
    from stream_widgets.importance import resampling_importance
    from stream_widgets.similarity import default_similarity

    model, tokenizer = _load_model(args)
    measure = default_similarity()
    for directory in corpus_traces(Path(args.root), _name(args), args.names)[: args.traces]:
        info = json.loads((directory / "importance.json").read_text(encoding="utf-8"))
        if "resampling" in info and info["resampling"]["samples"] >= args.samples and not args.force:
            continue  # done with as many samples (a smaller CPU run is redone at a larger N)
        base = json.loads((directory / "base_solution.json").read_text(encoding="utf-8"))
        if args.max_sentences is not None:
            records = json.loads((directory / "chunks_labeled.json").read_text(encoding="utf-8"))
            if len(records) > args.max_sentences:
                continue
        problem = json.loads((directory / "problem.json").read_text(encoding="utf-8"))
        result = resampling_importance(
            model,
            tokenizer,
            base["full_cot"],
            samples=args.samples,
            seed=args.seed,
            reference=problem.get("gt_answer"),
            rules="thought-anchors",
            max_new_tokens=args.max_new_tokens,
            similarity=measure,
            batch_size=args.batch_size,
        )
        _check_chunks(directory, result.sentences)
        meta = {
            **result.settings,
            "answers": [[r.answer for r in rows] for rows in result.rollouts],
            "first_sentences": [[r.first_sentence for r in rows] for rows in result.rollouts],
            "new_tokens": [[r.tokens for r in rows] for rows in result.rollouts],
            "similarity_to_sentence": [row.round(4).tolist() for row in result.similarity],
            "device": args.device,
            "machine": platform.platform(),
        }
        _update(directory, result.importance, "resampling", meta)
        print(
            f"{directory.name}: resampling importance of {len(result.sentences)} sentences, {args.samples} samples "
            f"per prefix, in {result.settings['seconds']:.0f}s",
            flush=True,
        )


def rescore(args) -> None:
    """Counterfactual importance again from the saved rollouts (their answers and first sentences), with
    the default similarity measure: for rollouts sampled where all-MiniLM-L6-v2 was not installed."""
    import numpy as np

    from stream_widgets.importance import Rollout, importance_from_rollouts
    from stream_widgets.similarity import default_similarity

    measure = default_similarity()
    name = getattr(measure, "name", type(measure).__name__)
    for directory in corpus_traces(Path(args.root), _name(args), args.names)[: args.traces]:
        info = json.loads((directory / "importance.json").read_text(encoding="utf-8"))
        meta = info.get("resampling")
        if meta is None or (meta["similarity"] == name and not args.force):
            continue
        records = json.loads((directory / "chunks_labeled.json").read_text(encoding="utf-8"))
        problem = json.loads((directory / "problem.json").read_text(encoding="utf-8"))
        rollouts = [
            [Rollout("", a, f, n) for a, f, n in zip(answers, firsts, tokens, strict=True)]
            for answers, firsts, tokens in zip(
                meta["answers"], meta["first_sentences"], meta["new_tokens"], strict=True
            )
        ]
        similarity = [
            np.asarray(measure([r["chunk"]] * len(rows), [x.first_sentence for x in rows]), dtype=np.float64)
            for r, rows in zip(records, rollouts, strict=False)
        ]
        threshold = measure.threshold
        columns = importance_from_rollouts(
            rollouts, similarity, problem.get("gt_answer"), threshold=threshold, alpha=meta["alpha"]
        )
        meta = {
            **meta,
            "similarity": name,
            "threshold": threshold,
            "similarity_to_sentence": [row.round(4).tolist() for row in similarity],
            "rescored_from": meta["similarity"],
        }
        _update(directory, columns, "resampling", meta)
        print(f"{directory.name}: counterfactual importance rescored with {name}", flush=True)


def run(args) -> None:
    """Several stages with one model load (e.g. on a GPU machine)."""
    args.loaded = _load_model(args)
    for stage in args.stages:
        STAGES[stage](args)


def status(args) -> None:
    for directory in corpus_traces(Path(args.root), _name(args)):
        base = json.loads((directory / "base_solution.json").read_text(encoding="utf-8"))
        info = json.loads((directory / "importance.json").read_text(encoding="utf-8"))
        chunks = json.loads((directory / "chunks_labeled.json").read_text(encoding="utf-8"))
        g = base["generation"]
        print(
            f"{directory.name:<20} {g['new_tokens']:4d} tokens {len(chunks):3d} sentences "
            f"{'finished' if g['finished'] else 'cut':<8} correct={base['is_correct']!s:<5} "
            f"importance: {', '.join(sorted(info)) or '-'}"
        )


STAGES = {"generate": generate, "forced": forced, "resample": resample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "forced", "resample", "rescore", "run", "status"):
        c = commands.add_parser(name)
        c.add_argument(
            "--model", default="qwen2.5-coder-0.5b", help="model for load_model (writes and reads)"
        )
        c.add_argument(
            "--model-id", default=None, help="file the corpus under this model id (for a GGUF file or folder)"
        )
        c.add_argument("--root", default=str(DATA / "own_model"), help="corpus root folder")
        c.add_argument("--device", default="cpu")
        c.add_argument("--threads", type=int, default=2)
        c.add_argument("--traces", type=int, default=None, help="only the first N problems / traces")
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--force", action="store_true", help="recompute columns already there")
        c.add_argument("--names", nargs="+", default=None, help="only these traces (e.g. problem_word_04)")
        if name == "run":
            c.add_argument("--stages", nargs="+", required=True, choices=("generate", "forced", "resample"))
            c.add_argument("--generate-tokens", type=int, default=700, help="--max-new-tokens of generate")
        if name == "generate":
            c.add_argument("--max-new-tokens", type=int, default=700)
        if name in ("resample", "run"):
            c.add_argument("--samples", type=int, default=10)
            c.add_argument("--max-new-tokens", type=int, default=512)
            c.add_argument("--batch-size", type=int, default=None)
            c.add_argument("--max-sentences", type=int, default=None, help="skip traces with more sentences")
    args = parser.parse_args()
    {**STAGES, "rescore": rescore, "run": run, "status": status}[args.command](args)


if __name__ == "__main__":
    main()
