"""The views in a real headless Chromium (Debian's `chromium`, driven by Playwright).

The explorer and the report share one renderer: the browser-side callbacks of `views.figures`. These
tests open the report (and the explorer's Bokeh document) from disk with every request off the page
refused, and check what a person sees: the rendered text, info panel, notes and tooltips, real mouse
clicks on bars and cells, the layer/head pickers, the layout at 850 px, tag correction and its download,
the evidence, suppression and token views, and PNG/SVG export. Saves the README picture
`docs/img/report.png` and `docs/img/widgets.png` (the explorer's Bokeh views).
"""

import csv
import dataclasses
import json
import re
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
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"

if CHROMIUM is None:
    pytest.skip("no chromium binary found: install Debian's package (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the python playwright package is not installed")

from stream_widgets.views import synthetic_example  # noqa: E402
from stream_widgets.views.report_files import write_report  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflinePage:
    """A page that may load only `url` itself; records every request and every console error."""

    def __init__(self, browser, url: str, width: int = 1280) -> None:
        self.url = url
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": 1250}, accept_downloads=True)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(url)
        self.page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_anchor_bars')) != null"
        )
        self.page.wait_for_selector(".sw-sentence")  # the first render (document ready) ran
        self.page.wait_for_timeout(300)  # let the canvas paint

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if route.request.url == self.url:
            route.continue_()
        else:
            route.abort()

    def evaluate(self, code: str):
        return self.page.evaluate(code)

    def model(self, name: str, attribute: str):
        return self.evaluate(f"() => Bokeh.documents[0].get_model_by_name('{name}').{attribute}")

    def set_value(self, name: str, value) -> None:
        self.evaluate(
            f"() => {{ Bokeh.documents[0].get_model_by_name('{name}').value = {json.dumps(value)}; }}"
        )

    def pixel(self, figure: str, x: float, y: float) -> tuple[float, float]:
        """Page pixel of data point (x, y) of a figure, from the figure's own scales."""
        return tuple(
            self.evaluate(
                f"""() => {{
            const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{figure}'));
            view.el.scrollIntoView({{block: 'center'}});
            const box = view.el.getBoundingClientRect();
            return [box.x + view.frame.x_scale.compute({x}), box.y + view.frame.y_scale.compute({y})];
        }}"""
            )
        )

    def click_sentence(self, i: int) -> None:
        """A real mouse click on the first line of sentence `i` in the text view (a wrapped inline span's
        bounding-box centre can lie on another sentence)."""
        span = self.page.locator(f".sw-sentence[data-sw-index='{i}']")
        span.scroll_into_view_if_needed()
        rect = span.evaluate(
            "el => { const r = el.getClientRects()[0]; return [r.x + r.width / 2, r.y + r.height / 2]; }"
        )
        self.page.mouse.click(*rect)

    def box(self, name: str) -> dict:
        return self.evaluate(
            f"""() => {{ const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('{name}'));
            const b = v.el.getBoundingClientRect(); return {{x: b.x, y: b.y + window.scrollY, w: b.width}}; }}"""
        )

    def clean(self) -> None:
        assert self.requests == [self.url], f"network requests besides the page: {self.requests}"
        assert self.errors == [], f"console errors: {self.errors}"


def _evidence_data(S=60):
    data = synthetic_example(S=S, L=4, H=3, seed=5, tokens=True)
    rng = np.random.default_rng(1)
    noisy = data.anchor_scores + rng.normal(0, 0.01, S)
    noisy[::7] = np.nan
    suppression = np.tril(rng.random((S, S)), k=-1)
    return dataclasses.replace(
        data, evidence={**data.evidence, "suppression importance": noisy}, suppression=suppression
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, real_explore_data):
    """The report of a real trace (the default model on a bundled reasoning trace): the README picture."""
    from tests.views.evidence_example import bundled_importance

    data = real_explore_data
    # The problem statement holds TeX ($...$): it must not make BokehJS fetch MathJax from a CDN.
    assert "$" in data.text
    evidence = bundled_importance(data.sentences)
    data = dataclasses.replace(
        data, evidence={"counterfactual_importance_kl": evidence["counterfactual_importance_kl"]}
    )
    path = write_report(data, tmp_path_factory.mktemp("report"))
    return data, path


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    data = _evidence_data()
    return data, write_report(data, tmp_path_factory.mktemp("synthetic"))


def test_report_renders_offline_and_links_views(browser, report):
    data, path = report
    page = OfflinePage(browser, path.resolve().as_uri())
    assert page.page.locator(".sw-sentence").count() == data.n_sentences
    assert page.page.locator(".sw-selected").count() == 0
    assert "click a cell to select its column j" in page.page.locator(".sw-note").first.inner_text()
    assert "heatmap cell (it selects its column j" in page.page.locator(".sw-info").inner_text()

    target = data.top_anchors(1)[0]
    page.page.mouse.click(*page.pixel("sw_anchor_bars", target, data.anchor_scores[target] / 2))
    page.page.wait_for_selector(".sw-selected")
    assert page.model("sw_sentences", "selected.indices") == [target]
    selected = page.page.locator(".sw-selected")
    assert selected.count() == 1 and selected.get_attribute("data-sw-index") == str(target)
    info = page.page.locator(f".sw-info[data-sw-index='{target}']")
    assert data.sentences[target][:40] in info.inner_text()
    assert "anchor score (raw, receiver heads)" in info.inner_text()
    assert page.model("sw_highlight", "data.x")[0] == pytest.approx(target + 0.5)
    assert page.model("sw_anchor_select", "value") == str(target)

    IMAGES.mkdir(parents=True, exist_ok=True)
    page.page.mouse.move(1, 1)  # no hover tooltip over the picture
    page.evaluate("() => window.scrollTo(0, 0)")
    page.page.wait_for_timeout(200)
    page.page.screenshot(path=str(IMAGES / "report.png"), full_page=True)

    # Clicking a sentence in the text view selects it everywhere.
    page.click_sentence(3)
    page.page.wait_for_selector(".sw-info[data-sw-index='3']")
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == "3"

    # The tag filter dims the unchecked tags in the text view.
    page.set_value("sw_tag_filter", [data.tags_present()[0]])
    first_hidden = next(i for i, t in enumerate(data.tags) if t != data.tags_present()[0])
    first_shown = data.tags.index(data.tags_present()[0])
    dimmed = re.compile("opacity")
    expect = sync_api.expect
    expect(page.page.locator(f".sw-sentence[data-sw-index='{first_hidden}']")).to_have_attribute(
        "style", dimmed
    )
    expect(page.page.locator(f".sw-sentence[data-sw-index='{first_shown}']")).not_to_have_attribute(
        "style", dimmed
    )
    page.clean()


def test_heatmap_tooltip_names_the_cell_under_the_cursor_and_a_click_selects_its_column(
    browser, synthetic_report
):
    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    xy = page.pixel("sw_heatmap", 10.8, 40.8)
    page.page.mouse.move(*xy)
    tooltip = page.page.locator(".bk-tooltip-content").first
    tooltip.wait_for()
    text = tooltip.inner_text()
    assert f"#40 {data.sentences[40][:30]}" in text and f"#10 {data.sentences[10][:30]}" in text
    from stream_widgets.views.matrices import select_matrix

    value = float(re.search(r"value:\s*([0-9.e-]+)", text).group(1))
    assert value == pytest.approx(float(select_matrix(data, None, None)[40, 10]), abs=1e-4)
    page.page.mouse.click(*xy)
    page.page.wait_for_selector(".sw-info[data-sw-index='10']")  # the column: the attended sentence
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == "10"
    page.clean()


def test_colour_bars_units_and_clipping_are_on_the_page(browser, synthetic_report):
    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    bars = page.evaluate(
        """() => { const out = [];
        for (const name of ['sw_heatmap', 'sw_tag_heatmap', 'sw_suppression_heatmap']) {
          const fig = Bokeh.documents[0].get_model_by_name(name);
          const bar = fig.right.find(r => r.type === 'ColorBar' || (r.constructor && r.constructor.name === 'ColorBar'));
          out.push(bar ? bar.title : null);
        } return out; }"""
    )
    assert bars == ["mean token attention probability", "mean token attention probability", "KL (nats)"]
    note = page.page.locator(".sw-note").first.inner_text()
    high = page.model("sw_state", "data.high[0]")
    clipped = page.model("sw_state", "data.clipped[0]")
    assert f"{clipped} of {data.n_sentences * (data.n_sentences + 1) // 2} cells lie above" in note
    assert "magenta" in note and "99th percentile" in note and f"{high:.3g}"[:4] in note
    assert page.model("sw_heatmap", "renderers[0].glyph.color_mapper.high_color") == "#ff00ff"
    assert "grey" in page.page.locator("[class='sw-note']").nth(1).inner_text()
    page.clean()


def test_unscored_sentences_are_not_drawn_as_zero(browser, synthetic_report):
    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    unscored = [int(i) for i in np.flatnonzero(~data.scored)]
    assert page.model("sw_unscored_marks", "data.x") == unscored  # an 'x' marker, no bar
    bars = page.model("sw_sentences", "data.bar")
    assert all(bars[i] is None or bars[i] != bars[i] for i in unscored)  # NaN: nothing drawn
    summary = page.page.locator(".sw-summary-note").inner_text()
    assert f"{int(data.scored.sum())} scored of {data.n_sentences} sentences" in summary
    assert "not counted as 0" in summary
    page.click_sentence(unscored[-1])
    assert "not scored (fewer than 4 later sentences" in page.page.locator(".sw-info").inner_text()
    page.clean()


def test_a_short_trace_report_says_why_the_anchor_parts_are_empty(browser, tmp_path):
    data = synthetic_example(S=7, L=2, H=2, seed=0)
    data = dataclasses.replace(
        data,
        receiver_heads=[(layer, head) for layer in range(2) for head in range(2)],
        meta={**data.meta, "receiver_heads_source": "all heads"},
    )
    page = OfflinePage(browser, write_report(data, tmp_path).resolve().as_uri())
    summary = page.page.locator(".sw-summary-note").inner_text()
    assert "0 scored of 7 sentences" in summary and "mean over all 4 heads instead" in summary
    assert "No sentence has an anchor score" in page.page.locator(".sw-evidence").inner_text()
    assert "too few scored sentences to pick receiver heads" in page.model("sw_anchor_bars", "title.text")
    page.clean()


def test_every_layer_and_head_is_reachable(browser, tmp_path):
    data = synthetic_example(S=80, L=6, H=4, seed=2)
    path = write_report(data, tmp_path, max_matrix_bytes=60_000)  # small budget: single heads are pooled
    page = OfflinePage(browser, path.resolve().as_uri())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["heatmap_matrices_left_out"] == [] and len(summary["heatmap_matrices"]) == 1 + 6 + 24
    page.set_value("sw_layer_select", "3")
    page.set_value("sw_head_select", "2")
    page.page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('sw_heatmap').title.text.includes('layer 3, head 2')"
    )
    bins = page.model("sw_state", "data.bins[0]")
    image = np.array(
        page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('sw_heat').data.image[0])")
    )
    from stream_widgets.views.matrices import downsample

    expected = downsample(data.sentence_attention[3, 2], bins)
    got = image.reshape(bins, bins)
    tol = float(expected.max()) / 255 + 1e-6
    assert np.allclose(np.tril(got), np.tril(expected), atol=tol)
    bars = np.array([np.nan if v is None else v for v in page.model("sw_sentences", "data.bar")], dtype=float)
    vertical = data.vertical_scores[3, 2]
    finite = np.isfinite(vertical)
    assert np.isnan(bars[~finite]).all()
    assert np.allclose(bars[finite], vertical[finite], atol=np.ptp(vertical[finite]) / 254 + 1e-9)
    assert "layer 3, head 2: its 'raw' vertical score" in page.model("sw_anchor_bars", "title.text")
    if bins < data.n_sentences:
        assert f"at {bins} x {bins} bins" in page.page.locator(".sw-note").first.inner_text()
    page.clean()


@pytest.mark.parametrize("width", [850, 1280])
def test_layout_fits_the_window_and_goes_to_one_column_below_900_px(browser, synthetic_report, width):
    _, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri(), width=width)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    text, heat = page.box("sw_text"), page.box("sw_heatmap")
    if width < 900:
        assert heat["y"] > text["y"] + 300  # below the text view: one column
    else:
        assert abs(heat["y"] - text["y"]) < 50 and heat["x"] > text["x"] + 300  # side by side
    page.clean()


def test_tag_correction_round_trip(browser, tmp_path):
    data = synthetic_example(S=20, L=2, H=2, seed=4)
    out = tmp_path / "report"
    page = OfflinePage(browser, write_report(data, out).resolve().as_uri())
    old = data.tags[6]
    new = next(t for t in data.tag_vocabulary if t != old)
    page.click_sentence(6)
    page.page.wait_for_selector(".sw-info[data-sw-index='6']")
    assert page.model("sw_tag_correct", "value") == old
    page.set_value("sw_tag_correct", new)
    sync_api.expect(page.page.locator(".sw-sentence[data-sw-index='6']")).to_have_attribute(
        "data-sw-tag", new
    )
    assert f"the tagger said {old}" in page.page.locator(".sw-info").inner_text()
    with page.page.expect_download() as download:
        page.page.locator(".bk-btn", has_text="download tag_corrections.json").click()
    assert download.value.suggested_filename == "tag_corrections.json"
    saved = out / "tag_corrections.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text())
    assert [(c["index"], c["tag"], c["tagger_tag"]) for c in document["corrections"]] == [(6, new, old)]
    page.clean()
    # Rebuilt into the same folder, the report keeps the correction.
    write_report(data, out)
    with open(out / "sentences.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f))[6]["tag"] == new
    again = OfflinePage(browser, (out / "report.html").resolve().as_uri())
    assert again.page.locator(".sw-sentence[data-sw-index='6']").get_attribute("data-sw-tag") == new
    assert "corrected by hand" in again.page.locator(".sw-sentence[data-sw-index='6']").get_attribute("title")
    again.clean()


def test_tag_confidence_is_shown(browser, synthetic_report):
    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    title = page.page.locator(".sw-sentence[data-sw-index='2']").get_attribute("title")
    assert f"tagger probability {data.tag_confidence[2]:.2f}" in title
    page.clean()


def test_evidence_table_scatter_and_spearman(browser, synthetic_report):
    from stream_widgets.views.matrices import spearman

    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    table = page.page.locator(".sw-evidence")
    rows = page.page.locator(".sw-evidence-row")
    assert rows.count() == 8 and rows.first.get_attribute("data-sw-index") == str(data.top_anchors(1)[0])
    assert "suppression importance" in table.inner_text() and "position baseline" in table.inner_text()
    name = "suppression importance"
    page.set_value("sw_evidence_select", name)
    rho, n = spearman(data.anchor_scores, data.evidence[name])
    sync_api.expect(page.page.locator(".sw-spearman")).to_contain_text(f"{rho:.3f}")
    assert f"over {n} sentences" in page.page.locator(".sw-spearman").inner_text()
    assert len(page.model("sw_scatter", "data.x")) == n
    page.clean()


def test_suppression_matrix_view_links(browser, synthetic_report):
    _, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    page.page.mouse.click(*page.pixel("sw_suppression_heatmap", 12.5, 30.5))
    page.page.wait_for_selector(".sw-info[data-sw-index='12']")
    assert page.model("sw_highlight_suppression", "data.x")[0] == pytest.approx(12.5)
    page.clean()


def test_token_view_shows_the_selected_sentence_rows(browser, synthetic_report):
    data, path = synthetic_report
    page = OfflinePage(browser, path.resolve().as_uri())
    page.click_sentence(9)
    page.page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('sw_token_heatmap').title.text.includes('sentence #9')"
    )
    start, end = data.token_spans[9]
    image = page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('sw_tokens').data.image[0])")
    expected = data.token_view.values[0, start:end]
    assert len(image) == expected.size  # this sentence's rows only, never T x T
    scale = data.token_view.values[0].max()  # 8-bit over the head's largest value
    assert np.allclose(np.array(image).reshape(expected.shape), expected, atol=scale / 255 + 1e-6)
    page.clean()


@pytest.mark.parametrize(("backend", "suffix"), [("canvas", ".png"), ("svg", ".svg")])
def test_figures_export_to_png_and_svg(browser, tmp_path, backend, suffix):
    data = synthetic_example(S=20, L=2, H=2)
    page = OfflinePage(browser, write_report(data, tmp_path, output_backend=backend).resolve().as_uri())
    with page.page.expect_download() as download:
        page.page.locator("[title='Save']").first.click()
    assert download.value.suggested_filename.endswith(suffix)
    content = Path(download.value.path()).read_bytes()
    assert content.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in content[:400]
    page.clean()


def test_explorer_views_render(browser, tmp_path, real_explore_data):
    """The explorer's Bokeh document (what the notebook shows under its ipywidgets controls), rendered by
    the same callbacks: Python only set the sources."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from stream_widgets.views import build_explorer

    data = real_explore_data
    explorer = build_explorer(data)
    explorer.set_layer_head(2, None)
    explorer.select(data.top_anchors(1)[0])
    path = tmp_path / "explorer.html"
    path.write_text(
        file_html(explorer.views.layout.document, resources=INLINE, title="explorer"), encoding="utf-8"
    )
    page = OfflinePage(browser, path.resolve().as_uri())
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == str(explorer.selected)
    assert page.page.locator(f".sw-info[data-sw-index='{explorer.selected}']").count() == 1
    assert "layer 2, mean" in page.model("sw_heatmap", "title.text")
    assert "not the receiver-head anchor score" in page.model("sw_anchor_bars", "title.text")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(IMAGES / "widgets.png"), full_page=True)
    page.clean()


def test_report_route_view_renders_and_links(browser, tmp_path):
    """The needle route view of a report with a (hand-built) route: drawn offline, an edge click selects."""
    from tests.views.route_example import with_route

    data = with_route(synthetic_example(S=30, L=3, H=2, seed=3))
    page = OfflinePage(browser, write_report(data, tmp_path).resolve().as_uri())
    page.page.wait_for_function(
        "() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_route')) != null"
    )
    edge = data.route.edges[1]  # sentence 5 -> the output
    x, y = page.pixel("sw_route", (edge.key + edge.query) / 2, edge.layer + 0.5)
    page.page.wait_for_timeout(100)
    page.page.mouse.click(x, y)
    page.page.wait_for_selector(".sw-info[data-sw-index='5']")
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == "5"
    page.clean()
