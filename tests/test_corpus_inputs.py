"""Corpus inputs: the JSONL schema and its errors, labels aligned to sentences or carried over from
chunks, text folders, the bundled traces, and safe file names for ids. No model."""

from __future__ import annotations

import json
import math

import pytest

from stream_widgets.corpus.inputs import CorpusInput, read_inputs, safe_name
from stream_widgets.sentences import split_sentences

TEXT = (
    "<think>\nFirst we add two and three. That gives five! Then we double it, which makes ten.\n\n"
    "Is that right? Yes, five times two is ten.\n</think>\nThe answer is ten."
)
SENTENCES = split_sentences(TEXT)


def _write(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_sentence_aligned_labels_carry_over_exactly(tmp_path):
    s = len(SENTENCES)
    tags = ["plan_generation", ["active_computation", "self_checking"], None] + ["fact_retrieval"] * (s - 3)
    values = [0.5, None] + [float(i) for i in range(s - 2)]
    source = _write(
        tmp_path / "in.jsonl",
        [{"id": "a", "text": TEXT, "group": 7, "labels": {"function_tag": tags, "importance": values}}],
    )
    (item,) = read_inputs(source)
    assert (item.id, item.group, item.name, item.mapped) == ("a", "7", "a", False)
    carried = item.labels.carry_over(SENTENCES)
    assert carried.function_tags == ("plan_generation", "active_computation", "unknown") + (
        "fact_retrieval",
    ) * (s - 3)
    got = carried.importance["importance"]
    assert got[0] == 0.5 and math.isnan(got[1]) and list(got[2:]) == [float(i) for i in range(s - 2)]


def test_chunk_labels_match_whitespace_and_carry_over_by_overlap(tmp_path):
    # chunks as Thought Anchors writes them: pieces joined by one space, whatever the text had
    chunks = [
        "First we add two and three.",
        "That gives five! Then we double it, which makes ten. Is that right?",
    ]
    source = _write(
        tmp_path / "in.jsonl",
        [
            {
                "id": "a",
                "text": TEXT,
                "labels": {"chunks": chunks, "function_tag": ["x", "y"], "kl": [1.0, 3.0]},
            }
        ],
    )
    (item,) = read_inputs(source)
    first, second = item.labels.spans
    assert TEXT[slice(*first)] == chunks[0]
    assert TEXT[slice(*second)].split() == chunks[1].split() and "\n\n" in TEXT[slice(*second)]
    carried = item.labels.carry_over(SENTENCES)
    assert carried.function_tags[:4] == ("x", "y", "y", "y")
    assert carried.importance["kl"][:4] == (1.0, 3.0, 3.0, 3.0)
    # "Yes, five times two is ten." overlaps no chunk
    assert carried.function_tags[4] == "unknown" and math.isnan(carried.importance["kl"][4])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"text": TEXT}, "the record has no 'id'"),
        ({"id": "a"}, "the record has no 'text'"),
        ({"id": "a", "text": "  "}, "'text' must be a non-empty string"),
        ({"id": True, "text": TEXT}, "'id' must be a string"),
        ({"id": "a", "text": TEXT, "lables": {}}, "unknown keys ['lables']"),
        ({"id": "a", "text": TEXT, "labels": []}, "'labels' must be an object"),
        ({"id": "a", "text": TEXT, "labels": {"kl": [1.0]}}, "labels.kl has 1 values but the text has"),
        ({"id": "a", "text": TEXT, "labels": {"kl": [1.0] * len(SENTENCES)}}, None),
        (
            {"id": "a", "text": TEXT, "labels": {"kl": ["high"] * len(SENTENCES)}},
            "labels.kl[0] must be a number",
        ),
        (
            {"id": "a", "text": TEXT, "labels": {"function_tag": [3] * len(SENTENCES)}},
            "labels.function_tag[0] must be a tag",
        ),
        ({"id": "a", "text": TEXT, "labels": {"chunks": ["Not in there."]}}, "labels.chunks[0]"),
        ({"id": "a", "text": TEXT, "labels": {"chunks": ["That gives five!", "First we add"]}}, "in order"),
    ],
)
def test_schema_errors_name_the_line_and_the_field(tmp_path, record, message):
    source = _write(tmp_path / "in.jsonl", [{"id": "ok", "text": TEXT}, record])
    if message is None:
        assert len(read_inputs(source)) == 2
        return
    with pytest.raises(ValueError) as error:
        read_inputs(source)
    assert "in.jsonl line 2" in str(error.value) and message in str(error.value)


def test_file_level_errors(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_inputs(path)
    _write(path, [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(ValueError, match="the id 'a' is used twice"):
        read_inputs(path)
    _write(path, [{"id": "Case", "text": "x"}, {"id": "case", "text": "y"}])
    with pytest.raises(ValueError, match="differ only in case"):
        read_inputs(path)
    path.write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="line 1 is not UTF-8"):
        read_inputs(path)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no records"):
        read_inputs(path)
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="not a .jsonl file"):
        read_inputs(tmp_path / "notes.csv")
    with pytest.raises(ValueError, match="no such folder or file"):
        read_inputs(tmp_path / "missing")
    with pytest.raises(TypeError, match="inputs must be"):
        read_inputs(42)


def test_unsafe_ids_are_mapped_to_distinct_safe_names(tmp_path):
    ids = ["plain-id_1.v2", "a/b", "a?b", "../etc/passwd", ".hidden", "x" * 200, "ünïcode"]
    items = read_inputs([{"id": i, "text": TEXT} for i in ids])
    names = [item.name for item in items]
    assert names[0] == "plain-id_1.v2" and not items[0].mapped
    assert all(item.mapped for item in items[1:])
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) <= 128
        assert name == safe_name(name)  # a mapped name is itself safe
    assert names[1].startswith("a_b-") and names[2].startswith("a_b-")


def test_text_folder(tmp_path):
    (tmp_path / "b.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "a.md").write_text("Another text. With two sentences.", encoding="utf-8")
    (tmp_path / "skip.json").write_text("{}", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    items = read_inputs(tmp_path)
    assert [(i.id, i.group_id, i.labels) for i in items] == [("a", "a", None), ("b", "b", None)]
    assert items[1].text == TEXT
    (tmp_path / "a.txt").write_text("clash", encoding="utf-8")
    with pytest.raises(ValueError, match="would both be the trace 'a'"):
        read_inputs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no text files"):
        read_inputs(empty)


def test_bundled_inputs_carry_the_bundled_labels():
    from stream_widgets.data import list_bundled_traces, load_bundled_trace

    items = read_inputs("bundled")
    names = list_bundled_traces()
    assert len(items) == len(names) == 33
    assert all(not item.mapped for item in items)
    assert len({item.group for item in items}) == 9
    assert read_inputs("bundled", limit=3) == items[:3]
    bundled = load_bundled_trace(names[0])
    item = items[0]
    assert item.group == bundled.problem_id and item.text == bundled.full_cot
    sentences = split_sentences(bundled.full_cot)
    expected = bundled.labels_for(sentences)
    carried = item.labels.carry_over(sentences)
    assert carried.function_tags == expected.function_tags
    for column, values in carried.importance.items():
        assert values == pytest.approx(expected.importance[column], nan_ok=True)
    with pytest.raises(ValueError, match="limit must be"):
        read_inputs("bundled", limit=0)


def test_records_in_python(tmp_path):
    given = CorpusInput(id="x", text=TEXT)
    items = read_inputs([given, {"id": "y", "text": TEXT, "meta": {"anything": [1, 2]}}])
    assert items[0] is given and items[1].id == "y"
    with pytest.raises(ValueError, match="input 2: a record must be a JSON object"):
        read_inputs([given, "text"])


def test_the_corpus_modules_import_nothing_heavy():
    import subprocess
    import sys

    script = (
        "import sys, stream_widgets.corpus, stream_widgets.corpus.inputs, stream_widgets.corpus.runner\n"
        "import stream_widgets.corpus.analysis\n"
        "from stream_widgets.corpus import run_corpus, corpus_report, load_corpus_heads\n"
        "heavy = [m for m in ('torch', 'transformers', 'bokeh', 'spacy', 'tagging') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
