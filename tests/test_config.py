import pytest

from stream_widgets import StreamConfig


def test_defaults_are_valid_and_documented():
    config = StreamConfig()
    assert (config.q_block, config.k_block, config.top_k, config.sink, config.window) == (64, 16, 32, 16, 64)
    assert config.score_rule == "representative"
    for name in ("q_block", "k_block", "top_k", "sink", "window", "score_rule"):
        assert name in StreamConfig.__doc__


@pytest.mark.parametrize(
    "field, value",
    [
        ("q_block", 0),
        ("k_block", -1),
        ("top_k", 0),
        ("sink", -1),
        ("window", -5),
        ("q_block", 2.0),
        ("top_k", True),
    ],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        StreamConfig(**{field: value})


@pytest.mark.parametrize("width", [3, 0, 8.0, True])
def test_search_width_must_be_at_least_top_k(width):
    with pytest.raises(ValueError, match="search_width"):
        StreamConfig(top_k=4, search_width=width)
    assert StreamConfig(top_k=4).width == 4 and StreamConfig(top_k=4, search_width=12).width == 12


@pytest.mark.parametrize("rounds", [-1, 65, 1.0, True, "0"])
def test_wide_rounds_must_be_a_round_count(rounds):
    with pytest.raises(ValueError, match="wide_rounds"):
        StreamConfig(search_width=64, wide_rounds=rounds)


@pytest.mark.parametrize("value", [1, "yes", None])
def test_exhaustive_must_be_a_bool(value):
    with pytest.raises(ValueError, match="exhaustive"):
        StreamConfig(exhaustive=value)


def test_exhaustive_is_in_the_dict_only_when_set():
    assert "exhaustive" not in StreamConfig().to_dict()  # saved traces and corpus hashes unchanged
    config = StreamConfig(exhaustive=True)
    assert config.to_dict()["exhaustive"] is True and StreamConfig.from_dict(config.to_dict()) == config


def test_wide_rounds_is_in_the_dict_only_when_set():
    assert "wide_rounds" not in StreamConfig().to_dict()  # saved traces and corpus hashes unchanged
    config = StreamConfig(search_width=64, wide_rounds=0)
    assert config.to_dict()["wide_rounds"] == 0 and StreamConfig.from_dict(config.to_dict()) == config


def test_bad_score_rule():
    with pytest.raises(ValueError, match="score_rule"):
        StreamConfig(score_rule="centre")


def test_frozen_and_round_trip():
    config = StreamConfig(top_k=4, score_rule="bound")
    with pytest.raises(AttributeError):
        config.top_k = 5
    assert StreamConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        StreamConfig.from_dict({"q_blok": 4})


@pytest.mark.parametrize(
    "q_block,k_block,window", [(64, 16, 64), (16, 16, 0), (8, 16, 3), (64, 1, 5), (5, 3, 7), (1, 4, 0)]
)
def test_window_bound_holds_and_is_reached(q_block, k_block, window):
    """`max_window_blocks` bounds the window + diagonal blocks of every query block, and is tight."""
    import torch

    from stream_widgets.search import layout

    config = StreamConfig(q_block=q_block, k_block=k_block, window=window, sink=0)
    t = 40 * q_block * k_block
    rows = layout(torch.arange(-(-t // q_block)), t, config)
    window_blocks = rows.last_block - rows.local_start + 1
    assert int(window_blocks.max()) <= config.max_window_blocks
    assert int(window_blocks.max()) >= config.max_window_blocks - 1  # the bound is off by at most one


def test_derived_block_counts():
    config = StreamConfig(q_block=64, k_block=16, sink=17, window=64, top_k=8)
    assert config.sink_blocks == 2  # 17 tokens need two 16-token blocks
    assert config.max_window_blocks == 9
    assert config.max_blocks_per_row == 19


def test_upper_bounds_are_inclusive_and_documented():
    from stream_widgets.config import MAX_BLOCK, MAX_TOKENS, MAX_TOP_K

    edge = StreamConfig(
        q_block=MAX_BLOCK, k_block=MAX_BLOCK, top_k=MAX_TOP_K, sink=MAX_TOKENS, window=MAX_TOKENS
    )
    assert edge.search_width is None and StreamConfig(top_k=4, search_width=MAX_TOP_K).width == MAX_TOP_K
    for name, too_big in (("q_block", MAX_BLOCK + 1), ("top_k", MAX_TOP_K + 1), ("window", MAX_TOKENS + 1)):
        with pytest.raises(ValueError, match=f"StreamConfig.{name} must be <= "):
            StreamConfig(**{name: too_big})
    with pytest.raises(ValueError, match="search_width"):
        StreamConfig(top_k=4, search_width=MAX_TOP_K + 1)
    for name in ("MAX_BLOCK", "MAX_TOP_K", "MAX_TOKENS"):
        assert name in StreamConfig.__doc__
