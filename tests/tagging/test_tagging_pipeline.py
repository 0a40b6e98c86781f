"""The spaCy pipeline: components, extensions, serialisation, errors and robustness."""

from __future__ import annotations

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_widgets.sentences import split_sentences
from tagging import make_pipeline
from tagging.errors import TaggingError
from tagging.tags import ALL_TAGS, FUNCTION_TAGS, UNKNOWN_TAG

TEXT = (
    "Solve it. <think>\nOkay, so the problem asks for 3 + 4. Let me compute 3 + 4 = 7.\n\n"
    "Wait, is that right? Let me check: 7 - 4 = 3. So the answer is \\boxed{7}.</think> It is 7."
)


def _check_doc(doc) -> None:
    spans = doc.spans["cot"]
    sentences = split_sentences(doc.text)
    assert len(spans) == len(sentences)
    for span, sentence in zip(spans, sentences, strict=True):
        assert span._.cot_sentence.text == sentence.text
        assert span._.function_tag in ALL_TAGS
        scores = span._.function_tag_scores
        assert set(scores) == set(ALL_TAGS)
        assert sum(scores[t] for t in FUNCTION_TAGS) == pytest.approx(1.0, abs=1e-4)


def test_pipeline_tags_every_sentence(toy_nlp):
    doc = toy_nlp(TEXT)
    _check_doc(doc)
    texts = [s._.cot_sentence.text for s in doc.spans["cot"]]
    assert texts[0] == "Okay, so the problem asks for 3 + 4."
    assert texts[-1] == "So the answer is \\boxed{7}."
    # doc.sents follows the CoT boundaries: every CoT sentence starts a spaCy sentence
    sent_starts = {sent.start for sent in doc.sents}
    assert {span.start for span in doc.spans["cot"]} <= sent_starts
    tags = [s._.function_tag for s in doc.spans["cot"]]
    assert tags[-1] == "final_answer_emission"
    assert "uncertainty_management" in tags


def test_predict_does_not_annotate(toy_nlp):
    doc = toy_nlp.get_pipe("cot_chunker")(toy_nlp.make_doc(TEXT))
    tagger = toy_nlp.get_pipe("function_tagger")
    scores = tagger.predict([doc])
    assert scores[0].shape == (len(doc.spans["cot"]), len(FUNCTION_TAGS))
    assert all(span._.function_tag is None for span in doc.spans["cot"])
    tagger.set_annotations([doc], scores)
    assert all(span._.function_tag in FUNCTION_TAGS for span in doc.spans["cot"])


def test_pipe_matches_call(toy_nlp):
    texts = [TEXT, "One short line here.", ""]
    piped_docs = list(toy_nlp.pipe(texts))
    called_docs = [toy_nlp(t) for t in texts]
    piped = [[s._.function_tag for s in d.spans["cot"]] for d in piped_docs]
    called = [[s._.function_tag for s in d.spans["cot"]] for d in called_docs]
    assert piped == called


def test_to_disk_round_trip(toy_nlp, tmp_path):
    toy_nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["cot_chunker", "function_tagger"]
    doc_a, doc_b = toy_nlp(TEXT), loaded(TEXT)
    a = [s._.function_tag_scores for s in doc_a.spans["cot"]]
    b = [s._.function_tag_scores for s in doc_b.spans["cot"]]
    assert len(a) == len(b)
    assert all(x == pytest.approx(y, abs=1e-5) for x, y in zip(a, b, strict=True))


def test_doc_serialises(toy_nlp):
    doc = toy_nlp(TEXT)
    assert doc.to_bytes()


def test_untrained_tagger_errors():
    nlp = make_pipeline()
    with pytest.raises(TaggingError, match="E002"):
        nlp(TEXT)


def test_tagger_without_chunker_errors(toy_classifier):
    nlp = spacy.blank("en")
    nlp.add_pipe("function_tagger").classifier = toy_classifier
    with pytest.raises(TaggingError, match="E006"):
        nlp(TEXT)


def test_bad_config_errors():
    with pytest.raises(TaggingError, match="E005.*min_confidence"):
        make_pipeline(min_confidence=1.5)


def test_min_confidence_gives_unknown(toy_nlp):
    toy_nlp.get_pipe("function_tagger").min_confidence = 0.99
    doc = toy_nlp("Some sentence that matches nothing in particular here.")
    span = doc.spans["cot"][0]
    assert span._.function_tag == UNKNOWN_TAG
    assert span._.function_tag_scores[UNKNOWN_TAG] > 0


def test_non_str_input_errors(toy_nlp):
    with pytest.raises(ValueError):
        toy_nlp(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n  ",
        "no sentence boundary at all",
        "Plain text without think tags. Still two sentences.",
        "<think></think>",
        "<think>unclosed reasoning. goes on and on",
        "Ünïcödé text — ça va? 数学很有趣。 Wait!  Encore une phrase ici.",
        "a. " * 40_000,  # 120k characters, 10k sentences (short pieces merge)
    ],
)
def test_robust_inputs(toy_nlp, text):
    _check_doc(toy_nlp(text))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("ab .?!\n\u00e9\u4e2d<>/think")), max_size=150))
def test_never_crashes(toy_nlp, text):
    _check_doc(toy_nlp(text))


FORMULA = "<think>The total is 9! / (5! * 2! * 2! * 1!) arrangements. Then we divide.</think>"


def _chunker_texts(rules: str | None) -> list[str]:
    nlp = spacy.blank("en")
    nlp.add_pipe("cot_chunker", config={} if rules is None else {"rules": rules})
    doc = nlp(FORMULA)
    return [span._.cot_sentence.text for span in doc.spans["cot"]]


def test_chunker_rules_setting():
    from tagging import components  # noqa: F401  (registers the factories)

    default = ["The total is 9! / (5! * 2! * 2! * 1!) arrangements.", "Then we divide."]
    assert _chunker_texts(None) == default == _chunker_texts("default")
    assert (
        _chunker_texts("thought-anchors")
        == [s.text for s in split_sentences(FORMULA, rules="thought-anchors")]
        != default
    )


def test_bad_chunker_rules_errors():
    from tagging import components  # noqa: F401

    nlp = spacy.blank("en")
    with pytest.raises(TaggingError, match="E005.*rules"):
        nlp.add_pipe("cot_chunker", config={"rules": "spacy"})


def test_config_saved_without_rules_loads_the_default(toy_nlp, tmp_path):
    """Pipelines saved before the `rules` setting existed get the default rule set."""
    toy_nlp.to_disk(tmp_path / "pipeline")
    config = tmp_path / "pipeline" / "config.cfg"
    lines = config.read_text(encoding="utf-8").splitlines()
    assert 'rules = "default"' in lines
    config.write_text("\n".join(line for line in lines if not line.startswith("rules =")), encoding="utf-8")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("cot_chunker").rules == "default"
    doc = loaded(FORMULA)
    assert doc.spans["cot"][0]._.cot_sentence.text.endswith("arrangements.")
