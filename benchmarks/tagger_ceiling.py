"""How far can the function tags be predicted at all? Contextual-model ceilings for the tagger.

The shipped tagger (`tagging/`) is a linear model over words, characters, cues, position and neighbours,
chosen for speed (thousands of sentences per second on a CPU). This script asks whether a model that reads
the whole trace with a trained language model does much better, on the same data and the same
leave-one-problem-out folds as `python -m tagging.evaluate`:

- ``frozen``: mean-pooled hidden states of one layer of the default model (SmolLM2-135M-Instruct) over each
  sentence, read with the whole trace as left context, fed to the tagger's logistic regression alone and
  beside the tagger's own features (CPU or GPU; the forward passes take ~7 min on 2 CPU cores).
- ``finetune``: the default model fine-tuned end to end with a bidirectional GRU over the sentence vectors
  (so a sentence also sees what follows) and a linear head, class-balanced cross-entropy, one trace per
  step; held-out scores after every epoch (needs a GPU: ~3 min per learning rate on an H200).

``finetune`` needs only torch and transformers, so it runs where spaCy and scikit-learn are not installed:
``prepare`` first writes the tokenised traces, sentence ids, labels and folds to one ``.npz``.

Usage::

    python benchmarks/tagger_ceiling.py prepare --out DATA.npz
    python benchmarks/tagger_ceiling.py frozen [--layer 20] [--device cpu]
    python benchmarks/tagger_ceiling.py finetune --data DATA.npz [--gguf FILE] [--lr 5e-5 ...] [--epochs 5]

Each mode prints a table and merges its figures into `benchmarks/results/tagger_ceiling.json` (or `--out`)
under its own key: ``frozen_layer<L>``, ``finetune_<epochs>_epochs``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

_RESULTS = Path(__file__).resolve().parent / "results" / "tagger_ceiling.json"
_N_TAGS = 8
_MAX_TOKENS = 8192


def _save(out: Path, key: str, value: dict) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)


def _scores(gold: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Accuracy over all sentences (gold -1, `unknown`, is always wrong) and macro-F1 over the 8 tags."""
    f1 = []
    for c in range(_N_TAGS):
        tp = int(((predicted == c) & (gold == c)).sum())
        wrong = int(((predicted == c) != (gold == c)).sum())
        f1.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float((gold == predicted).mean()), float(np.mean(f1))


def prepare(args: argparse.Namespace) -> None:
    """Tokenise every labelled trace and map each token to its sentence."""
    from stream_widgets.data import load_bundled_trace
    from stream_widgets.models import load_model
    from stream_widgets.sentences import split_sentences
    from tagging.dataset import labelled_traces
    from tagging.tags import FUNCTION_TAGS

    _, tokenizer = load_model()
    traces = labelled_traces()
    problems = sorted({t.problem_id for t in traces})
    arrays = {}
    for k, trace in enumerate(traces):
        text = load_bundled_trace(trace.name).full_cot
        sentences = split_sentences(text)
        encoded = tokenizer(text, return_offsets_mapping=True)
        ids = np.asarray(encoded["input_ids"][:_MAX_TOKENS])
        offsets = np.asarray(encoded["offset_mapping"][:_MAX_TOKENS])
        sentence_of = np.full(len(ids), -1)
        for j, s in enumerate(sentences):
            inside = (offsets[:, 0] < s.char_end) & (offsets[:, 1] > s.char_start) & (sentence_of < 0)
            sentence_of[inside] = j
        arrays[f"ids{k}"] = ids
        arrays[f"sentence{k}"] = sentence_of
        arrays[f"tags{k}"] = np.array(
            [FUNCTION_TAGS.index(t) if t in FUNCTION_TAGS else -1 for t in trace.tags]
        )
    arrays["fold"] = np.array([problems.index(t.problem_id) for t in traces])
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(traces)} traces, {len(problems)} problems")


def _load_data(path: Path) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], np.ndarray]:
    with np.load(path) as stored:
        folds = stored["fold"]
        data = [
            (
                torch.from_numpy(stored[f"ids{k}"]),
                torch.from_numpy(stored[f"sentence{k}"]),
                torch.from_numpy(stored[f"tags{k}"]),
            )
            for k in range(len(folds))
        ]
    return data, folds


def _mean_pool(hidden: torch.Tensor, sentence_of: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """`[T, H]` token states -> `[n_sentences, H]` means over each sentence's tokens."""
    keep = sentence_of >= 0
    index = sentence_of[keep]
    sums = hidden.new_zeros(n_sentences, hidden.shape[-1]).index_add_(0, index, hidden[keep])
    counts = hidden.new_zeros(n_sentences).index_add_(0, index, hidden.new_ones(len(index)))
    return sums / counts.clamp(min=1)[:, None]


def _load_lm(gguf: str | None, device: str):
    from stream_widgets.models import load_model

    model, _ = load_model(gguf)
    return model.to(device)


def _matrix(traces, indices, featurizer, states, text: bool, hidden: bool):
    """Feature rows of `traces[indices]`: the tagger's features, the hidden states, or both side by side."""
    from scipy import sparse

    blocks = []
    if text:
        blocks.append(featurizer.transform([traces[k].sentences for k in indices]))
    if hidden:
        blocks.append(sparse.csr_matrix(np.vstack([states[k] for k in indices])))
    return sparse.hstack(blocks, format="csr")


def frozen(args: argparse.Namespace) -> None:
    """Logistic regression on frozen hidden states, alone and beside the tagger's features."""
    from sklearn.linear_model import LogisticRegression

    from tagging.classifier import ClassifierConfig
    from tagging.dataset import labelled_traces
    from tagging.features import SentenceFeaturizer
    from tagging.tags import FUNCTION_TAGS

    torch.set_num_threads(args.threads)
    assert len(FUNCTION_TAGS) == _N_TAGS
    traces = labelled_traces()
    data, folds = _load_data(args.data)
    model = _load_lm(args.gguf, args.device)
    start = time.perf_counter()
    states = []
    with torch.no_grad():
        for ids, sentence_of, tags in data:
            hidden = model.model(ids[None].to(args.device), output_hidden_states=True).hidden_states[
                args.layer
            ]
            states.append(_mean_pool(hidden[0].float(), sentence_of.to(args.device), len(tags)).cpu().numpy())
    forward_s = time.perf_counter() - start
    stacked = np.vstack(states)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6  # label-free standardisation
    states = [(s - mean) / std * args.scale for s in states]
    config = ClassifierConfig()
    rows = {}
    for name in ("tagger features", "hidden states", "both"):
        gold, predicted = [], []
        for fold in np.unique(folds):
            train = [k for k in range(len(traces)) if folds[k] != fold]
            test = [k for k in range(len(traces)) if folds[k] == fold]
            featurizer = SentenceFeaturizer().fit([traces[k].sentences for k in train])

            y = np.concatenate([data[k][2].numpy() for k in train])
            use = (name != "hidden states", name != "tagger features")
            x = _matrix(traces, train, featurizer, states, *use)
            classifier = LogisticRegression(C=config.C, class_weight="balanced", max_iter=config.max_iter)
            classifier.fit(x[y >= 0], y[y >= 0])
            predicted.append(classifier.predict(_matrix(traces, test, featurizer, states, *use)))
            gold.append(np.concatenate([data[k][2].numpy() for k in test]))
        accuracy, macro_f1 = _scores(np.concatenate(gold), np.concatenate(predicted))
        rows[name] = {"accuracy": accuracy, "macro_f1": macro_f1}
        print(f"{name:16s} accuracy {accuracy:.3f}  macro-F1 {macro_f1:.3f}", flush=True)
    _save(
        args.out,
        f"frozen_layer{args.layer}",
        {
            "layer": args.layer,
            "scale": args.scale,
            "folds": int(len(np.unique(folds))),
            "forward_seconds": forward_s,
            "device": args.device,
            "machine": platform.processor() or platform.machine(),
            "results": rows,
        },
    )


class _TraceTagger(torch.nn.Module):
    """Language model -> mean-pooled sentence vectors -> BiGRU over the trace -> tag logits."""

    def __init__(self, lm, hidden: int = 256) -> None:
        super().__init__()
        self.lm = lm.model
        width = lm.config.hidden_size
        self.norm = torch.nn.LayerNorm(width)
        self.gru = torch.nn.GRU(width, hidden, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(2 * hidden, _N_TAGS)

    def forward(self, ids: torch.Tensor, sentence_of: torch.Tensor, n_sentences: int) -> torch.Tensor:
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
            states = self.lm(ids[None]).last_hidden_state[0].float()
        vectors = self.norm(_mean_pool(states, sentence_of, n_sentences))
        return self.head(self.gru(vectors[None])[0][0])


def finetune(args: argparse.Namespace) -> None:
    """Fine-tune the language model + BiGRU per leave-one-problem-out fold; held-out scores per epoch."""
    data, folds = _load_data(args.data)
    device = args.device
    lm = _load_lm(args.gguf, "cpu")
    initial = {k: v.clone() for k, v in lm.state_dict().items()}
    table, seconds = {}, {}
    for lr in args.lr:
        start = time.perf_counter()
        predictions: dict[int, dict[int, np.ndarray]] = {}
        for fold in np.unique(folds):
            torch.manual_seed(int(fold))
            lm.load_state_dict(initial)
            model = _TraceTagger(lm).to(device)
            train = [k for k in range(len(data)) if folds[k] != fold]
            test = [k for k in range(len(data)) if folds[k] == fold]
            y = torch.cat([data[k][2] for k in train])
            y = y[y >= 0]
            weight = len(y) / (_N_TAGS * torch.bincount(y, minlength=_N_TAGS).clamp(min=1).float())
            loss_fn = torch.nn.CrossEntropyLoss(weight=weight.to(device), ignore_index=-1)
            head = [p for n, p in model.named_parameters() if not n.startswith("lm.")]
            optimiser = torch.optim.AdamW(
                [{"params": model.lm.parameters(), "lr": lr}, {"params": head, "lr": args.head_lr}],
                weight_decay=0.01,
            )
            order = np.random.default_rng(int(fold))
            for epoch in range(args.epochs):
                model.train()
                for k in order.permutation(train):
                    ids, sentence_of, tags = (t.to(device) for t in data[k])
                    loss = loss_fn(model(ids, sentence_of, len(tags)), tags)
                    optimiser.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimiser.step()
                model.eval()
                with torch.no_grad():
                    for k in test:
                        ids, sentence_of, tags = (t.to(device) for t in data[k])
                        logits = model(ids, sentence_of, len(tags))
                        predictions.setdefault(epoch, {})[k] = logits.argmax(-1).cpu().numpy()
            print(
                f"lr {lr:g}: fold {fold + 1}/{len(np.unique(folds))} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        gold = np.concatenate([data[k][2].numpy() for k in range(len(data))])
        per_epoch = []
        for epoch in range(args.epochs):
            predicted = np.concatenate([predictions[epoch][k] for k in range(len(data))])
            accuracy, macro_f1 = _scores(gold, predicted)
            per_epoch.append({"epoch": epoch + 1, "accuracy": accuracy, "macro_f1": macro_f1})
        table[f"{lr:g}"] = per_epoch
        seconds[f"{lr:g}"] = time.perf_counter() - start
    print("\n| lr | " + " | ".join(f"epoch {e + 1}" for e in range(args.epochs)) + " |")
    print("|---|" + "---|" * args.epochs)
    for lr, per_epoch in table.items():
        cells = " | ".join(f"{r['accuracy']:.3f} / {r['macro_f1']:.3f}" for r in per_epoch)
        print(f"| {lr} | {cells} |")
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    _save(
        args.out,
        f"finetune_{args.epochs}_epochs",
        {
            "epochs": args.epochs,
            "head_lr": args.head_lr,
            "device": device_name,
            "folds": int(len(np.unique(folds))),
            "accuracy_macro_f1_by_lr": table,
            "seconds_by_lr": seconds,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare", help="tokenise the labelled traces into one .npz")
    p.add_argument("--out", type=Path, required=True)
    for name, fn in (("frozen", frozen), ("finetune", finetune)):
        q = sub.add_parser(name)
        q.set_defaults(run=fn)
        q.add_argument("--data", type=Path, required=True, help=".npz written by the prepare step")
        q.add_argument("--gguf", help="model file (default: the embedded SmolLM2-135M-Instruct)")
        q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        q.add_argument("--out", type=Path, default=_RESULTS)
    p.set_defaults(run=prepare)
    f = sub.choices["frozen"]
    f.add_argument("--layer", type=int, default=20, help="hidden-state layer, 0 = embeddings (default 20)")
    f.add_argument(
        "--scale", type=float, default=0.05, help="weight of the standardised states (default 0.05)"
    )
    f.add_argument("--threads", type=int, default=2)
    t = sub.choices["finetune"]
    t.add_argument("--lr", type=float, nargs="+", default=[2e-5, 5e-5], help="language-model learning rates")
    t.add_argument("--head-lr", type=float, default=1e-3)
    t.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
