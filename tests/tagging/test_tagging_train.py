"""`python -m tagging.train --corrections`: tag corrections as extra labelled data."""

import json

import pytest
from tagging_toy_data import TOY_TAGS, TOY_TRACES

from tagging import train
from tagging.dataset import LabelledTrace


def _corrections_file(tmp_path, corrections):
    document = {
        "format": "stream-widgets/tag-corrections",
        "version": 1,
        "text_sha256": "0" * 64,
        "sentences": list(TOY_TRACES[0]),
        "corrections": corrections,
    }
    path = tmp_path / "tag_corrections.json"
    path.write_text(json.dumps(document))
    return path


def _correction(i, tag):
    return {
        "index": i,
        "char_start": 0,
        "char_end": 1,
        "sentence": TOY_TRACES[0][i],
        "tag": tag,
        "tagger_tag": "x",
    }


def test_corrected_sentences_become_labels_and_the_rest_is_left_out(tmp_path):
    path = _corrections_file(tmp_path, [_correction(4, "self_checking"), _correction(1, "plan_generation")])
    (trace,) = train.corrections_traces([path])
    assert trace.sentences == tuple(TOY_TRACES[0])
    texts, tags = train.training_pairs([trace])
    assert texts == [[TOY_TRACES[0][1], TOY_TRACES[0][4]]] and tags == [["plan_generation", "self_checking"]]


def test_bad_corrections_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown is not a class"):
        train.corrections_traces([_corrections_file(tmp_path, [_correction(0, "unknown")])])
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "x"}')
    with pytest.raises(ValueError, match="not a tag corrections file"):
        train.corrections_traces([bad])


def test_main_trains_with_corrections(tmp_path, monkeypatch, capsys):
    toy = [
        LabelledTrace(f"toy{i}", f"p{i}", tuple(s), tuple(t))
        for i, (s, t) in enumerate(zip(TOY_TRACES, TOY_TAGS, strict=True))
    ]
    monkeypatch.setattr(train, "labelled_traces", lambda: toy * 3)
    from tagging.features import FeatureConfig

    small = FeatureConfig(min_df=1, max_word_features=500, max_char_features=500, max_neighbour_features=100)
    monkeypatch.setattr(
        train,
        "fit_classifier",
        lambda traces: train.FunctionTagClassifier(small).fit(*train.training_pairs(traces)),
    )
    path = _corrections_file(tmp_path, [_correction(4, "self_checking")])
    assert train.main(["--output", str(tmp_path / "model"), "--corrections", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "1 corrected sentences from 1 corrections files" in out
        and (tmp_path / "model" / "config.cfg").is_file()
    )
    with pytest.raises(SystemExit):
        train.main(["--output", str(tmp_path / "model"), "--corrections", str(tmp_path / "missing.json")])
