"""Command-line errors that need no model: clear messages and exit status 2."""

import pytest

from stream_widgets.cli import main


def test_unknown_bundled_trace(tmp_path, capsys):
    assert main(["demo", "--trace", "no_such_problem", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stream-widgets: error: no bundled trace 'no_such_problem'")
    assert not list(tmp_path.iterdir())


def test_bad_config_value_names_the_field(tmp_path, capsys):
    assert main(["trace", "Some text.", "--out", str(tmp_path / "t.safetensors"), "--top-k", "0"]) == 2
    assert "StreamConfig.top_k must be >= 1" in capsys.readouterr().err
    assert (
        main(["trace", "x", "--out", str(tmp_path / "t.safetensors"), "--top-k", "8", "--search-width", "4"])
        == 2
    )
    assert "search_width" in capsys.readouterr().err


def test_missing_trace_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "out")]) == 2
    assert "stream-widgets: error:" in capsys.readouterr().err


def test_command_is_required():
    with pytest.raises(SystemExit):
        main([])
