"""The corpus report in a real headless Chromium: it renders from disk with every request off the page
refused, and shows the per-tag view (both tabs), the position view, the correlation table, the receiver
heads and the traces, with tooltips that read the data."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]

if CHROMIUM is None:
    pytest.skip("no chromium binary found: install Debian's package (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the python playwright package is not installed")


@pytest.fixture(scope="module")
def corpus_page(tmp_path_factory):
    """The report of a corpus of 4 labelled texts traced by a tiny random model."""
    from stream_widgets.config import StreamConfig
    from stream_widgets.corpus import corpus_report, run_corpus
    from tests.corpus_example import records
    from tests.tiny_models import tiny_model, tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny")
    tiny_model().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    out = tmp_path_factory.mktemp("corpus")
    inputs = records()
    inputs[0]["text"] += " Costs are $5 and $10, so $x = 2$."  # "$": no MathJax may be fetched
    config = StreamConfig(q_block=8, k_block=4, top_k=2, sink=4, window=8)
    run_corpus(inputs, out, model=str(folder), config=config, progress=False)
    html = corpus_report(out, progress=False, top_heads=4)
    return html, json.loads((html.parent / "summary.json").read_text())


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, corpus_page):
    html, _ = corpus_page
    url = html.as_uri()
    requests, errors = [], []
    page = browser.new_page(viewport={"width": 1100, "height": 1200})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(request_route):
        requests.append(request_route.request.url)
        if request_route.request.url == url:
            request_route.continue_()
        else:
            request_route.abort()

    page.route("**/*", route)
    page.goto(url)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && "
        "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_corpus_positions')) != null"
    )
    page.wait_for_timeout(400)
    yield page
    assert requests == [url], f"network requests besides the page: {requests}"
    assert errors == [], f"console errors: {errors}"
    page.close()


def _shown(page, text: str) -> bool:
    """True when `text` is on the page (Playwright's text locators look inside Bokeh's shadow roots)."""
    return page.get_by_text(text).count() > 0


def _view(page, name: str) -> bool:
    return page.evaluate(
        f"() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{name}')) != null"
    )


def _pixels(page, name: str) -> np.ndarray:
    """``[N, 3]`` RGB pixels of a rendered figure, from a screenshot of it."""
    from PIL import Image

    page.evaluate(
        f"() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{name}')).el.scrollIntoView()"
    )
    box = page.evaluate(
        f"""() => {{ const r = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{name}'))
        .el.getBoundingClientRect(); return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }}"""
    )
    image = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
    return np.asarray(image, dtype=np.float64).reshape(-1, 3)


def _drawn(pixels: np.ndarray, colour: str, alpha: float = 1.0) -> bool:
    """True when some pixel shows `colour` (``#rrggbb``) drawn at `alpha` over white."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    expected = alpha * rgb + (1 - alpha) * 255.0
    return bool((np.abs(pixels - expected).max(axis=1) <= 12).any())


def test_the_corpus_report_renders_offline(page, corpus_page):
    _, summary = corpus_page
    assert _shown(page, f"Corpus report: {summary['traces']} traces of")
    assert _shown(page, "split-half reliability of per-head kurtosis")
    assert _shown(page, f"r = {summary['split_half_reliability']['mean_r']:.3f}")
    for name in (
        "sw_corpus_tags",
        "sw_corpus_positions",
        "sw_corpus_correlations",
        "sw_corpus_heads",
        "sw_corpus_traces",
    ):
        assert _view(page, name), name


def test_the_per_tag_view_draws_every_tag(page, corpus_page):
    from stream_widgets.views.data import DEFAULT_TAG_COLORS

    _, summary = corpus_page
    tags = [row["tag"] for row in summary["tags"] if row["scored"]]
    points = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('sw_corpus_tags_points').data.tag.length"
    )
    assert points == sum(row["scored"] for row in summary["tags"])
    factors = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('sw_corpus_tags').x_range.factors)"
    )
    assert factors == tags
    pixels = _pixels(page, "sw_corpus_tags")
    assert all(_drawn(pixels, DEFAULT_TAG_COLORS[tag], 0.35) for tag in tags)  # the boxes
    # the second tab: the anchor score itself
    page.get_by_text("anchor score", exact=True).first.click()
    page.wait_for_timeout(300)
    assert _view(page, "sw_corpus_tags_raw")
    pixels = _pixels(page, "sw_corpus_tags_raw")
    assert all(_drawn(pixels, DEFAULT_TAG_COLORS[tag], 0.35) for tag in tags)


def test_the_position_view_and_its_tooltip(page, corpus_page):
    _, summary = corpus_page
    data = page.evaluate(
        "() => { const d = Bokeh.documents[0].get_model_by_name('sw_corpus_position_bins').data;"
        " return {anchors: Array.from(d.anchor_count), sentences: Array.from(d.sentence_count)}; }"
    )
    assert data == {
        "anchors": summary["positions"]["anchors"],
        "sentences": summary["positions"]["sentences"],
    }
    pixels = _pixels(page, "sw_corpus_positions")
    assert _drawn(pixels, "#d62728") and _drawn(pixels, "#7f7f7f")
    # hover the anchors' bar of the fullest bin
    counts = summary["positions"]["anchors"]
    b = int(np.argmax(counts))
    edges = summary["positions"]["edges"]
    x = (edges[b] + edges[b + 1]) / 2 - 0.22 * (edges[1] - edges[0])
    share = counts[b] / sum(counts)
    point = page.evaluate(
        f"""() => {{ const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_corpus_positions'));
        const r = v.el.getBoundingClientRect();
        return [r.x + v.frame.x_scale.compute({x}), r.y + v.frame.y_scale.compute({share / 2})]; }}"""
    )
    page.mouse.move(*point)
    page.wait_for_timeout(400)
    assert page.locator(".bk-tooltip").count() > 0 or _shown(page, "scored sentences")
    assert _shown(page, f"{counts[b]} ({100 * share:.1f}%)")


def test_the_tables_hold_the_correlations_and_the_traces(page, corpus_page):
    _, summary = corpus_page
    (row,) = summary["correlations"]
    assert _shown(page, "position baseline: pooled")
    assert _shown(
        page, f"{row['anchor_score']['pooled']:+.3f} ({row['anchor_score']['pooled_sentences']} sentences)"
    )
    for trace in summary["per_trace"]:
        assert _shown(page, trace["id"])
