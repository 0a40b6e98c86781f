"""Scoring RULER cases: greedy answers under dense and Stream-sparse attention, needle mass, routes.

`score_case` answers a case (`stream_widgets.ruler.cases.RulerCase`) greedily twice -- with the model's own
(dense) attention and with Stream ``sparse`` attention -- and measures, in ``observe`` mode, how much of
the attention the final query positions pay to the needle tokens the Stream mask keeps
(`stream_widgets.ruler.routes`). `run_ruler` scores a grid of lengths and kinds; `summarize` and
`format_table` turn the results into the benchmark's table.

Cost of `score_case`: two forward passes over the prompt (observe with the dense model's KV cache, and
sparse) plus a few cached decoding steps; the observe pass keeps every layer's queries and keys
(L x (H + Hkv) x T x D floats: ~0.75 GB for SmolLM2 at 8k tokens) for the needle mass and the route.
"""

from __future__ import annotations

import contextlib
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from stream_widgets.ruler.cases import KINDS, RulerCase, make_cases

__all__ = ["RulerResult", "format_table", "is_correct", "run_ruler", "score_case", "summarize"]


@dataclass(frozen=True)
class RulerResult:
    """How the model did on one case, dense vs Stream-sparse.

    Attributes:
        case: The case (without its prompt in `to_dict`).
        dense_answer: Greedy answer with the model's own attention (text after the answer prefix).
        sparse_answer: Greedy answer with Stream ``sparse`` attention.
        dense_correct: Every expected number appears among the numbers of `dense_answer` (RULER's
            string-match-all; for one needle: the number was given).
        sparse_correct: The same for `sparse_answer`.
        sparsity: Mean share of causal pairs the sparse pass's masks drop (over layers and heads).
        needle_mass_dense: float ``[L][H]``: attention the final query positions pay to the asked-about
            needle tokens, summed over those positions (true dense probabilities).
        needle_mass_retained: float ``[L][H]``: the part of it at entries the Stream mask keeps.
        query_positions: The final query positions measured.
        route: The needle route (`stream_widgets.ruler.routes.Route`), or None if not asked for.
        seconds: Wall-clock time of the scoring.
    """

    case: RulerCase
    dense_answer: str
    sparse_answer: str
    dense_correct: bool
    sparse_correct: bool
    sparsity: float
    needle_mass_dense: list[list[float]]
    needle_mass_retained: list[list[float]]
    query_positions: tuple[int, ...]
    route: object | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def agree(self) -> bool:
        """Dense and sparse answers are the same text."""
        return self.dense_answer.strip() == self.sparse_answer.strip()

    @property
    def needle_mass_kept(self) -> float:
        """Share of the needle attention the mask keeps, over all layers and heads (mass-weighted)."""
        dense = sum(map(sum, self.needle_mass_dense))
        return sum(map(sum, self.needle_mass_retained)) / dense if dense > 0 else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready dict (the case without its prompt; the route as its own dict)."""
        return {
            "case": self.case.to_dict(),
            "dense_answer": self.dense_answer,
            "sparse_answer": self.sparse_answer,
            "dense_correct": self.dense_correct,
            "sparse_correct": self.sparse_correct,
            "agree": self.agree,
            "sparsity": self.sparsity,
            "needle_mass_kept": self.needle_mass_kept,
            "needle_mass_dense": self.needle_mass_dense,
            "needle_mass_retained": self.needle_mass_retained,
            "query_positions": list(self.query_positions),
            "route": None if self.route is None else self.route.to_dict(),
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        mark = {True: "ok", False: "wrong"}
        return (
            f"{self.case.kind:<10} T={self.case.length:<5} depth={self.case.depth:.2f}  "
            f"dense {mark[self.dense_correct]:<5} sparse {mark[self.sparse_correct]:<5} "
            f"sparsity {self.sparsity:.1%}  needle mass kept {self.needle_mass_kept:.3f}  "
            f"expected {','.join(self.case.answers)}  dense {self.dense_answer.strip()[:40]!r}  "
            f"sparse {self.sparse_answer.strip()[:40]!r}"
        )


def is_correct(answer: str, expected: tuple[str, ...]) -> bool:
    """Every expected number appears among the whole numbers in `answer`."""
    found = set(re.findall(r"\d+", answer))
    return all(value in found for value in expected)


def score_case(
    model,
    tokenizer,
    case: RulerCase,
    config=None,
    *,
    route: bool = True,
    num_query_positions: int = 8,
    max_new_tokens: int | None = None,
) -> RulerResult:
    """Answer a case with dense and with Stream-sparse attention; measure the needle mass the mask keeps.

    Args:
        model: A transformers causal LM (see `stream_widgets.load_model`).
        tokenizer: Its fast tokenizer (the one the case was made with).
        case: The case.
        config: Estimator settings; `StreamConfig()` if None.
        route: Also find the needle route (`stream_widgets.ruler.routes.find_route`).
        num_query_positions: The final prompt positions whose needle attention is measured (the answer
            prefix, which names the key).
        max_new_tokens: Greedy decoding budget; by default enough for the expected numbers.

    Returns:
        The `RulerResult`.

    Decoding: dense = the observe pass (the model's own attention) fills the KV cache, then the usual
    cached steps; sparse = a Stream ``sparse`` prefill fills the cache with the sparse model's keys and
    values, then each new token attends to the sink, the local window and the `top_k` key blocks with the
    highest max q.k (the exact block top-k for that one query). Cost: two prompt passes + O(T) per step.
    """
    import time

    from stream_widgets.config import StreamConfig
    from stream_widgets.models import check_context_length
    from stream_widgets.ruler.decoding import decode_attention, greedy_tokens
    from stream_widgets.ruler.routes import capture_attention, find_route, needle_mass
    from stream_widgets.tokens import tokenize
    from stream_widgets.tracer import stream_attention

    config = config or StreamConfig()
    started = time.perf_counter()
    input_ids = tokenize(tokenizer, case.prompt).input_ids
    if input_ids.shape[1] != case.length:
        raise ValueError(
            f"the case has {case.length} tokens but this tokenizer gives {input_ids.shape[1]}: "
            "score a case with the tokenizer it was made with"
        )
    digits = max(len(a) for a in case.answers)
    # Room for list formatting (":\n\n1. 1234567\n2. ..." or "* key: 1234567"), which SmolLM2 uses for several numbers.
    budget = max_new_tokens or len(case.answers) * (digits + 8) + 8
    check_context_length(model, case.length + budget)
    stop = {
        i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if i is not None
    }
    stop.discard(tokenizer.unk_token_id)

    captured, sparse_run = [], []

    def observe_prefill():
        return _Keep(capture_attention(model, config), captured)

    def sparse_prefill():
        return _Keep(stream_attention(model, config, "sparse"), sparse_run)

    dense_ids = greedy_tokens(model, input_ids, budget, observe_prefill, contextlib.nullcontext, stop)
    sparse_ids = greedy_tokens(
        model, input_ids, budget, sparse_prefill, lambda: decode_attention(model, config), stop
    )
    capture = captured[0]
    sparse_masks = sparse_run[0].result().masks
    positions = tuple(range(max(0, case.length - num_query_positions), case.length))
    needle = [p for a, b in case.needle_spans for p in range(a, b)]
    dense_mass, kept_mass = needle_mass(capture, positions, needle)
    found = None
    if route:
        sources = [p for a, b in case.value_spans for p in range(a, b)]
        found = find_route(capture, sources, case.length - 1).labelled(
            tokenizer.convert_ids_to_tokens(input_ids[0].tolist()),
            {"needle": case.needle_spans, "distractor": case.distractor_spans},
        )
    dense_answer = tokenizer.decode(dense_ids, skip_special_tokens=True)
    sparse_answer = tokenizer.decode(sparse_ids, skip_special_tokens=True)
    sparsity = sum(float(m.sparsity()) for m in sparse_masks) / len(sparse_masks)
    return RulerResult(
        case=case,
        dense_answer=dense_answer,
        sparse_answer=sparse_answer,
        dense_correct=is_correct(dense_answer, case.answers),
        sparse_correct=is_correct(sparse_answer, case.answers),
        sparsity=sparsity,
        needle_mass_dense=dense_mass.tolist(),
        needle_mass_retained=kept_mass.tolist(),
        query_positions=positions,
        route=found,
        seconds=time.perf_counter() - started,
    )


def run_ruler(
    model,
    tokenizer,
    lengths: list[int],
    kinds: tuple[str, ...] | list[str] = KINDS,
    cases: int = 1,
    *,
    haystack: str = "filler",
    config=None,
    seed: int = 0,
    route: bool = False,
    progress: bool = True,
    on_result: Callable[[RulerResult], None] | None = None,
) -> list[RulerResult]:
    """Score `cases` cases of every (length, kind); depths spread evenly over [0.1, 0.9].

    `on_result`, if given, is called with each result as soon as it is scored (e.g. to save partial
    results of a long run).

    Returns:
        The results, length-major then kind.
    """
    todo = [(length, kind) for length in lengths for kind in kinds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo) * cases, desc="RULER cases", unit="case")
    results = []
    depths = [0.1 + 0.8 * i / max(1, cases - 1) for i in range(cases)] if cases > 1 else [0.5]
    for length, kind in todo:
        for case in make_cases(kind, cases, length, depths, haystack, tokenizer, seed):
            results.append(score_case(model, tokenizer, case, config, route=route))
            if on_result is not None:
                on_result(results[-1])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(str(results[-1])[:60])
    if bar is not None:
        bar.close()
    return results


def summarize(results: list[RulerResult]) -> list[dict]:
    """One row per (length, kind): cases, dense and sparse accuracy, agreement, sparsity, needle mass kept
    (mean and median over the cases).

    Length is the requested length bucket (the largest power of two >= the case length, for grouping).
    """
    groups: dict[tuple[int, str], list[RulerResult]] = {}
    for r in results:
        bucket = 1 << max(0, (r.case.length - 1).bit_length())
        groups.setdefault((bucket, r.case.kind), []).append(r)
    rows = []
    for (length, kind), rs in sorted(groups.items(), key=lambda g: (g[0][0], KINDS.index(g[0][1]))):
        n = len(rs)
        rows.append(
            {
                "length": length,
                "kind": kind,
                "cases": n,
                "dense_accuracy": sum(r.dense_correct for r in rs) / n,
                "sparse_accuracy": sum(r.sparse_correct for r in rs) / n,
                "agreement": sum(r.agree for r in rs) / n,
                "sparsity": sum(r.sparsity for r in rs) / n,
                "needle_mass_kept": sum(r.needle_mass_kept for r in rs) / n,
                "needle_mass_kept_median": statistics.median(r.needle_mass_kept for r in rs),
                "seconds": sum(r.seconds for r in rs),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of `summarize` as a Markdown table."""
    lines = [
        "| length | kind | cases | dense acc | sparse acc | agreement | sparsity | needle mass kept "
        "| median kept | s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length']} | {r['kind']} | {r['cases']} | {r['dense_accuracy']:.2f} | {r['sparse_accuracy']:.2f} "
            f"| {r['agreement']:.2f} | {r['sparsity']:.1%} | {r['needle_mass_kept']:.3f} "
            f"| {r['needle_mass_kept_median']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


class _Keep(contextlib.AbstractContextManager):
    """Enters a context manager and appends what it yields to a list (to get it out of `greedy_tokens`)."""

    def __init__(self, context, into: list) -> None:
        self.context, self.into = context, into

    def __enter__(self):
        value = self.context.__enter__()
        self.into.append(value)
        return value

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)
