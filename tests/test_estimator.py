"""The hierarchical search against its properties and against the exact oracle."""

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_widgets import StreamConfig, estimate_mask, oracle_mask, search


def _inputs(b, h, hkv, t, d, seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t, d, generator=generator).to(dtype)
    k = torch.randn(b, hkv, t, d, generator=generator).to(dtype)
    return q, k


def _reference_layout(t, config):
    """Per query block, in plain Python: (sink blocks, candidate blocks, local blocks)."""
    rows = []
    for i in range(-(-t // config.q_block)):
        q_start = i * config.q_block
        q_end = min(q_start + config.q_block, t)
        local_start = max(q_start - config.window, 0) // config.k_block
        last = (q_end - 1) // config.k_block
        sink_end = min(config.sink_blocks, local_start)
        rows.append(
            (set(range(sink_end)), set(range(sink_end, local_start)), set(range(local_start, last + 1)))
        )
    return rows


def _kept(mask, b, h, i):
    n = int(mask.kv_num_blocks[b, h, i])
    return mask.kv_indices[b, h, i, :n].tolist()


def _block_scores(q, k, config):
    """Exact score of every (query block, key block), the slow obvious way: [B, H, Qb, Kb]."""
    b, h, t, _ = q.shape
    group = h // k.shape[1]
    logits = torch.einsum("bhtd,bhsd->bhts", q.float(), k.float().repeat_interleave(group, dim=1))
    qn, kn = -(-t // config.q_block), -(-t // config.k_block)
    scores = torch.full((b, h, qn, kn), float("-inf"))
    for i in range(qn):
        for j in range(kn):
            block = logits[
                :,
                :,
                i * config.q_block : (i + 1) * config.q_block,
                j * config.k_block : (j + 1) * config.k_block,
            ]
            scores[:, :, i, j] = block.amax(dim=(-1, -2))
    return scores


shapes = st.fixed_dictionaries(
    {
        "b": st.integers(1, 2),
        "hkv": st.integers(1, 3),
        "group": st.integers(1, 3),
        "t": st.integers(1, 300),
        "d": st.sampled_from([4, 8, 16]),
        "seed": st.integers(0, 2**16),
    }
)
configs = st.builds(
    StreamConfig,
    q_block=st.integers(1, 40),
    k_block=st.integers(1, 40),
    top_k=st.integers(1, 8),
    sink=st.integers(0, 40),
    window=st.integers(0, 80),
    score_rule=st.sampled_from(["representative", "bound"]),
    search_width=st.one_of(st.none(), st.integers(8, 24)),
    wide_rounds=st.one_of(st.none(), st.integers(0, 3)),
    exhaustive=st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, config=configs)
def test_mask_properties(shape, config):
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    mask = estimate_mask(q, k, config)

    assert mask.kv_num_blocks.shape == (b, h, -(-t // config.q_block))
    assert mask.kv_indices.shape[-1] == search.fit(config, t).max_blocks_per_row <= config.max_blocks_per_row
    layout = _reference_layout(t, config)
    for bi in range(b):
        for hi in range(h):
            for i, (sinks, candidates, local) in enumerate(layout):
                kept = _kept(mask, bi, hi, i)
                assert kept == sorted(set(kept)), "indices ascending and unique"
                assert sinks | local <= set(kept), "sinks, window and diagonal always kept"
                chosen = set(kept) - sinks - local
                assert chosen <= candidates, "causal: nothing past the diagonal block"
                assert len(chosen) == min(config.top_k, len(candidates)), "top_k chosen per query block"
    dense = mask.to_dense()
    assert not (dense & ~torch.ones(t, t, dtype=torch.bool).tril()).any(), "token-level causal"
    assert estimate_mask(q, k, config).equal(mask), "deterministic"


@settings(max_examples=40, deadline=None)
@given(shape=shapes, config=configs)
def test_search_is_exact_when_candidates_fit_top_k(shape, config):
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    roomy = StreamConfig(**{**config.to_dict(), "top_k": -(-t // config.k_block), "search_width": None})
    assert estimate_mask(q, k, roomy).equal(oracle_mask(q, k, roomy))


@settings(max_examples=30, deadline=None)
@given(shape=shapes, config=configs)
def test_a_search_as_wide_as_the_candidates_is_exact(shape, config):
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    wide = StreamConfig(**{**config.to_dict(), "search_width": max(config.top_k, -(-t // config.k_block))})
    assert estimate_mask(q, k, wide).equal(oracle_mask(q, k, wide))


@settings(max_examples=30, deadline=None)
@given(shape=shapes, config=configs)
def test_wide_rounds_between_the_paper_search_and_the_full_width_one(shape, config):
    """No narrowing before the last round is the full-width search; a width of top_k is the paper's."""
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    wide = StreamConfig(**{**config.to_dict(), "search_width": config.top_k + 8, "wide_rounds": None})
    late = StreamConfig(**{**wide.to_dict(), "wide_rounds": 64})  # more rounds than any search here
    assert estimate_mask(q, k, late).equal(estimate_mask(q, k, wide))
    paper = StreamConfig(**{**config.to_dict(), "search_width": None, "wide_rounds": None})
    narrow = StreamConfig(**{**paper.to_dict(), "search_width": config.top_k, "wide_rounds": 0})
    assert estimate_mask(q, k, narrow).equal(estimate_mask(q, k, paper))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, config=configs)
def test_exhaustive_scores_every_block_where_that_is_cheaper_and_searches_elsewhere(shape, config):
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    on = StreamConfig(**{**config.to_dict(), "exhaustive": True})
    off = StreamConfig(**{**config.to_dict(), "exhaustive": False})
    fitted = search.fit(on, t)
    expected = oracle_mask(q, k, on) if search.exhaustive_is_cheaper(t, fitted) else estimate_mask(q, k, off)
    assert estimate_mask(q, k, on).equal(expected)


def test_exhaustive_keeps_the_oracle_where_the_search_misses_and_costs_no_more():
    q, k = _planted(t=1024, seed=3)
    q = q + torch.randn(q.shape, generator=torch.Generator().manual_seed(4))
    base = StreamConfig(q_block=32, k_block=16, top_k=12, sink=0, window=32)
    exhaustive = StreamConfig(**{**base.to_dict(), "exhaustive": True})
    assert search.exhaustive_is_cheaper(1024, exhaustive)
    exact = oracle_mask(q, k, base).to_block_dense()
    searched = estimate_mask(q, k, base).to_block_dense()
    assert (searched & exact).sum() < exact.sum()  # the search loses some of the oracle's blocks here
    assert estimate_mask(q, k, exhaustive).to_block_dense().equal(exact)
    # block products per query block: at most T / k_block candidates against the search's halves
    assert 20 * search.max_candidates(1024, base) <= 17 * search.halves_scored(1024, base)


def test_the_default_sizes_score_every_block_up_to_about_2_7k_tokens():
    config = StreamConfig(exhaustive=True)
    assert search.halves_scored(8192, config) == 4 * 2 * 32  # four rounds of 2 x top_k halves
    assert search.exhaustive_is_cheaper(1536, config) and search.exhaustive_is_cheaper(2752, config)
    assert not search.exhaustive_is_cheaper(4096, config) and not search.exhaustive_is_cheaper(8192, config)
    wide = StreamConfig(search_width=128, wide_rounds=0)
    assert search.halves_scored(131072, wide) == 2 * 128 + 5 * 2 * 32  # 1.125x the paper search's 512


def test_a_wide_start_finds_more_of_the_oracle_at_about_the_paper_search_cost():
    q, k = _planted(t=2048, seed=3)
    q = q + torch.randn(q.shape, generator=torch.Generator().manual_seed(4))
    base = StreamConfig(q_block=32, k_block=16, top_k=4, sink=0, window=32)
    exact = oracle_mask(q, k, base).to_block_dense()
    start = StreamConfig(**{**base.to_dict(), "search_width": 16, "wide_rounds": 0})
    recall = [
        ((estimate_mask(q, k, c).to_block_dense() & exact).sum() / exact.sum()).item() for c in (base, start)
    ]
    assert recall[1] > recall[0]
    # halves scored: the paper's search 2 x top_k per round; the wide start 2 x width once, then 2 x top_k
    rounds = [search.num_rounds(2048, c) for c in (base, start)]
    assert 2 * 16 + 2 * 4 * (rounds[1] - 1) <= 2 * 4 * (rounds[0] + 2)


def test_a_wider_search_finds_more_of_the_oracle():
    q, k = _planted(t=2048, seed=3)
    q = q + torch.randn(q.shape, generator=torch.Generator().manual_seed(4))  # less uniform scores
    base = StreamConfig(q_block=32, k_block=16, top_k=4, sink=0, window=32)
    exact = oracle_mask(q, k, base).to_block_dense()
    recall = []
    for width in (None, 8, 32):
        kept = estimate_mask(q, k, StreamConfig(**{**base.to_dict(), "search_width": width})).to_block_dense()
        recall.append(((kept & exact).sum() / exact.sum()).item())
    assert recall[0] <= recall[1] + 1e-9 <= recall[2] + 2e-9 and recall[2] > recall[0]


@settings(max_examples=30, deadline=None)
@given(shape=shapes, config=configs)
def test_oracle_keeps_the_highest_scoring_candidates(shape, config):
    b, h, t = shape["b"], shape["hkv"] * shape["group"], shape["t"]
    q, k = _inputs(b, h, shape["hkv"], t, shape["d"], shape["seed"])
    mask = oracle_mask(q, k, config)
    scores = _block_scores(q, k, config)
    for bi in range(b):
        for hi in range(h):
            for i, (sinks, candidates, local) in enumerate(_reference_layout(t, config)):
                chosen = set(_kept(mask, bi, hi, i)) - sinks - local
                dropped = candidates - chosen
                if chosen and dropped:
                    worst_kept = min(scores[bi, hi, i, j] for j in chosen)
                    best_dropped = max(scores[bi, hi, i, j] for j in dropped)
                    assert worst_kept >= best_dropped - 1e-4


def _planted(t=1024, d=16, strong_block=5, seed=0):
    """Keys of one block point along the queries' shared direction, far above the rest."""
    q, k = _inputs(1, 2, 1, t, d, seed)
    direction = torch.zeros(d)
    direction[0] = 1.0
    q = q + 3.0 * direction
    k[:, :, strong_block * 16 + 3] += 40.0 * direction  # one key, off the range's centre block
    return q, k


def test_bound_rule_finds_a_strong_key_the_representative_can_miss():
    q, k = _planted()
    config = StreamConfig(q_block=32, k_block=16, top_k=2, sink=0, window=32, score_rule="bound")
    mask = estimate_mask(q, k, config)
    oracle = oracle_mask(q, k, config)
    late_rows = range(8, mask.num_q_blocks)  # rows whose candidates include block 5 among many
    for i in late_rows:
        assert 5 in _kept(oracle, 0, 0, i)
        assert 5 in _kept(mask, 0, 0, i), f"bound search lost the planted block at query block {i}"


def test_recall_against_the_oracle_on_structured_input():
    # Queries attend mostly to a few key blocks (as trained heads do): the search should find them.
    q, k = _planted()
    config = StreamConfig(q_block=32, k_block=16, top_k=8, sink=16, window=32)
    kept = estimate_mask(q, k, config).to_block_dense()
    exact = oracle_mask(q, k, config).to_block_dense()
    assert (kept & exact).sum() / exact.sum() > 0.8


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    q, k = _inputs(1, 4, 2, 200, 16, 3, dtype)
    config = StreamConfig(q_block=16, k_block=8, top_k=4)
    mask = estimate_mask(q, k, config)
    # Scores are computed in fp32 from the given values, so the mask equals the fp32 one of those values.
    assert mask.equal(estimate_mask(q.float(), k.float(), config))


def test_gqa_heads_share_keys_but_get_their_own_masks():
    q, k = _inputs(1, 6, 2, 256, 16, 7)
    config = StreamConfig(q_block=16, k_block=8, top_k=2, sink=0, window=0)
    mask = estimate_mask(q, k, config)
    # Each query head's mask equals that of a lone head attending to its own KV head.
    for h in range(6):
        alone = estimate_mask(q[:, h : h + 1], k[:, h // 3 : h // 3 + 1], config)
        assert torch.equal(alone.kv_indices[0, 0], mask.kv_indices[0, h])
    assert not torch.equal(mask.kv_indices[0, 0], mask.kv_indices[0, 1])


def test_chunking_does_not_change_the_result():
    q, k = _inputs(1, 3, 1, 500, 16, 11)
    for rule in ("representative", "bound"):
        config = StreamConfig(q_block=8, k_block=4, top_k=3, score_rule=rule)
        whole = estimate_mask(q, k, config)
        # budgets of a few block rows per chunk: dozens of chunks, each with its own edge cases
        assert estimate_mask(q, k, config, max_chunk_bytes=60_000).equal(whole)
        assert oracle_mask(q, k, config, max_chunk_bytes=100_000).equal(oracle_mask(q, k, config))


@pytest.mark.parametrize(
    "q_shape, k_shape, dtype, error, match",
    [
        ((2, 64, 8), (1, 2, 64, 8), torch.float32, ValueError, "dim"),
        ((1, 4, 64, 8), (1, 3, 64, 8), torch.float32, ValueError, "multiple"),
        ((1, 4, 64, 8), (1, 2, 32, 8), torch.float32, ValueError, "agree"),
        ((1, 4, 64, 8), (1, 2, 64, 4), torch.float32, ValueError, "agree"),
        ((1, 4, 0, 8), (1, 2, 0, 8), torch.float32, ValueError, "empty"),
        ((1, 4, 64, 8), (1, 2, 64, 8), torch.int64, TypeError, "floating"),
    ],
)
def test_bad_inputs_raise_clear_errors(q_shape, k_shape, dtype, error, match):
    q, k = torch.zeros(q_shape, dtype=dtype), torch.zeros(k_shape, dtype=dtype)
    with pytest.raises(error, match=match):
        estimate_mask(q, k)
    with pytest.raises(error, match=match):
        oracle_mask(q, k)


def test_bad_config_type():
    q, k = _inputs(1, 2, 1, 16, 8, 0)
    with pytest.raises(TypeError, match="StreamConfig"):
        estimate_mask(q, k, {"top_k": 4})


@pytest.mark.slow
@pytest.mark.parametrize("score_rule", ["representative", "bound"])
def test_compiles_fullgraph_and_matches_eager(score_rule, monkeypatch):
    from stream_widgets import estimator

    config = StreamConfig(q_block=16, k_block=8, top_k=4, sink=8, window=16, score_rule=score_rule)
    compiled = torch.compile(estimate_mask, fullgraph=True)
    # small integers: every q.k exact in bf16 too, so the CPU's bf16 rounds cannot round differently
    generator = torch.Generator().manual_seed(5)
    q = torch.randint(-2, 3, (1, 4, 300, 16), generator=generator).float()
    k = torch.randint(-2, 3, (1, 2, 300, 16), generator=generator).float()
    assert compiled(q, k, config).equal(estimate_mask(q, k, config))
    # Gaussian inputs, fp32 throughout (a CPU without bf16 units): the same mask, bit for bit
    monkeypatch.setattr(estimator, "_native_bf16", lambda: False)
    torch._dynamo.reset()
    q, k = _inputs(1, 4, 2, 300, 16, 5)
    assert torch.compile(estimate_mask, fullgraph=True)(q, k, config).equal(estimate_mask(q, k, config))


@pytest.mark.slow
def test_memory_stays_far_below_t_squared():
    # k_block=1 makes (T / k_block)^2 = T^2: a 16k x 16k fp32 buffer would be 1 GiB. Peak RSS growth of a
    # fresh process must stay far below that; the inputs and the mask take a few MiB.
    script = textwrap.dedent(
        """
        import resource, torch
        from stream_widgets import StreamConfig, estimate_mask
        torch.set_num_threads(1)
        q, k = torch.randn(1, 2, 16384, 16), torch.randn(1, 1, 16384, 16)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for rule in ("representative", "bound"):
            estimate_mask(q, k, StreamConfig(q_block=16, k_block=1, top_k=8, score_rule=rule))
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
        """
    )
    growth = int(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert growth < 256 * 2**20, f"peak memory grew by {growth / 2**20:.0f} MiB"


def test_top_k_is_fitted_to_the_text_and_bad_values_are_refused():
    q, k = _inputs(1, 2, 1, 200, 8, 3)
    huge = StreamConfig(q_block=16, k_block=8, top_k=10**4, search_width=2 * 10**4)
    fitted = estimate_mask(q, k, huge)
    exact = estimate_mask(q, k, StreamConfig(q_block=16, k_block=8, top_k=search.max_candidates(200, huge)))
    assert fitted.equal(exact) and fitted.kv_indices.shape[-1] < 100  # not 10,000 columns
    assert fitted.sparsity().item() == 0.0  # every candidate kept
    for bad in (float("nan"), float("inf")):
        poisoned = q.clone()
        poisoned[0, 1, 17, 3] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            estimate_mask(poisoned, k)
        poisoned_k = k.clone()
        poisoned_k[0, 0, 150, 5] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            oracle_mask(q, poisoned_k)
    for shape in ((0, 2, 16, 8), (1, 2, 16, 0)):
        with pytest.raises(ValueError, match="empty"):
            estimate_mask(torch.zeros(shape), torch.zeros(shape[0], 1, shape[2], shape[3]))


def test_the_cpu_fast_path_is_the_reference_up_to_rounding(monkeypatch):
    from stream_widgets import estimator
    from stream_widgets.estimator import estimate_mask_reference

    config = StreamConfig(q_block=16, k_block=4, top_k=4, sink=4, window=8)
    assert search.num_rounds(1500, config) >= 3  # several rounds before the last
    generator = torch.Generator().manual_seed(5)
    # small integers: every q.k is exact in bf16 as in fp32, so the rounds agree bit for bit
    q = torch.randint(-2, 3, (1, 4, 1500, 16), generator=generator).float()
    k = torch.randint(-2, 3, (1, 2, 1500, 16), generator=generator).float()
    assert estimate_mask(q, k, config).equal(estimate_mask_reference(q, k, config))
    q, k = _inputs(1, 4, 2, 1500, 16, seed=6)
    reference = estimate_mask_reference(q, k, config).to_block_dense()
    found = estimate_mask(q, k, config).to_block_dense()
    assert (found & reference).sum() / reference.sum() >= 0.97  # near-ties may flip, little else
    monkeypatch.setattr(estimator, "_native_bf16", lambda: False)  # a CPU without bf16 units: fp32 only
    assert estimate_mask(q, k, config).to_block_dense().equal(reference)


def test_an_unknown_cpu_feature_query_means_the_fp32_path():
    from stream_widgets import estimator

    assert estimator._cpu_has("no_such_feature") is False
    assert isinstance(estimator._native_bf16(), bool)


def test_cpu_block_scores_a_few_rows_per_product_and_only_the_needed_ones(monkeypatch):
    from stream_widgets import estimator

    generator = torch.Generator().manual_seed(8)
    q_rows = torch.randn(21, 8, 16, generator=generator)  # 21 rows: not a multiple of the rows per product
    k_blocks = torch.randn(2 * 30, 4, 16, generator=generator)
    kv_row = torch.randint(0, 2, (21,), generator=generator)
    blocks = torch.randint(-3, 33, (21, 5), generator=generator)  # out-of-range indices are clamped
    scores = estimator._block_scores(q_rows, k_blocks, kv_row, blocks, 30)
    keys = k_blocks.view(2, 30, 4, 16)[kv_row[:, None], blocks.clamp(0, 29)]  # [R, N, k_block, D]
    expected = torch.einsum("rqd,rnkd->rnqk", q_rows, keys).amax(dim=(2, 3))
    torch.testing.assert_close(scores, expected)
    needed = torch.rand(21, 5, generator=generator) < 0.6
    needed[:8] = False  # a whole product with nothing to score
    skipped = estimator._block_scores(q_rows, k_blocks, kv_row, blocks, 30, needed)
    torch.testing.assert_close(skipped[needed], expected[needed])  # the others: any value
    assert (skipped[:8] == float("-inf")).all()
    q, k = _inputs(1, 4, 2, 700, 16, seed=9)
    config = StreamConfig(q_block=8, k_block=4, top_k=3)
    mask = estimate_mask(q, k, config)
    monkeypatch.setattr(estimator, "_CPU_SCORE_ROWS", 10**9)  # one product per round, as before
    assert estimate_mask(q, k, config).equal(mask)
