"""`tagging.tag_sentences`: given sentences tagged as one trace, without re-splitting."""

import pytest
from tagging_toy_data import TOY_TRACES

import tagging
from tagging import FunctionTag, tag_sentences


def test_tags_match_the_pipeline_on_the_same_sentences(toy_nlp):
    text = "<think>" + " ".join(TOY_TRACES[0]) + "</think>"
    doc = toy_nlp(text)
    spans = list(doc.spans["cot"])
    tagged = tag_sentences([s._.cot_sentence.text for s in spans], nlp=toy_nlp)
    assert [t.tag for t in tagged] == [s._.function_tag for s in spans]
    for t, span in zip(tagged, spans, strict=True):
        assert isinstance(t, FunctionTag)
        assert set(t.scores) == set(tagging.FUNCTION_TAGS)
        assert sum(t.scores.values()) == pytest.approx(1.0)
        assert t.confidence == pytest.approx(max(t.scores.values()))
        assert t.scores[t.tag] == pytest.approx(span._.function_tag_scores[t.tag])


def test_no_resplitting_even_when_think_closes_right_after(toy_nlp):
    # A sentence ending right at `</think>` (or holding text the chunker would cut) is tagged as given.
    sentences = [
        "Okay, I need the sum.",
        "3 + 4 = 7. Wait, let me check that.",
        "So the answer is 7.</think>",
    ]
    assert len(tag_sentences(sentences, nlp=toy_nlp)) == 3


def test_threshold_empty_sentences_and_bad_input(toy_nlp):
    tagged = tag_sentences(["Let me compute 2 + 2.", "   "], nlp=toy_nlp, min_confidence=0.999)
    assert tagged[0].tag == tagging.UNKNOWN_TAG and tagged[0].confidence < 0.999
    assert tagged[1] == FunctionTag(tagging.UNKNOWN_TAG, 1.0, tagged[1].scores)
    assert tag_sentences([], nlp=toy_nlp) == []
    with pytest.raises(ValueError, match="min_confidence"):
        tag_sentences(["x"], nlp=toy_nlp, min_confidence=1.0)
    with pytest.raises(ValueError, match="strings"):
        tag_sentences(["x", 3], nlp=toy_nlp)
