"""The standalone report in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Checks that the file renders offline with no console error and no network request, that a click on an
anchor bar (a real mouse click at the bar's pixel position) highlights the sentence in the text view,
the heatmap and the info panel, and that the heatmap Select swaps the matrix. Saves screenshots of the
report and of the explorer's Bokeh views to `docs/img/`.
"""

import re
import shutil
from pathlib import Path

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
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "img"

if CHROMIUM is None:
    pytest.skip("no chromium binary found: install Debian's package (make browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the python playwright package is not installed")

from stream_widgets.html_report import write_report  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflinePage:
    """A page that may load only `url` itself; records every request and every console error."""

    def __init__(self, browser, url: str) -> None:
        self.url = url
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1000, "height": 1250})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(url)
        self.page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_anchor_bars')) != null"
        )
        self.page.wait_for_timeout(300)  # let the canvas paint

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if route.request.url == self.url:
            route.continue_()
        else:
            route.abort()

    def evaluate(self, code: str):
        return self.page.evaluate(code)


def _bar_position(page: OfflinePage, index: int) -> tuple[float, float]:
    """Page pixel of the middle of anchor bar `index`, from the figure's own scales."""
    return tuple(
        page.evaluate(
            f"""() => {{
        const doc = Bokeh.documents[0];
        const view = Bokeh.index.find_one(doc.get_model_by_name('sw_anchor_bars'));
        const source = doc.get_model_by_name('sw_sentences');
        const x = view.frame.x_scale.compute({index});
        const y = view.frame.y_scale.compute(source.data.anchor[{index}] / 2);
        const box = view.el.getBoundingClientRect();
        return [box.x + x, box.y + y];
    }}"""
        )
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, real_explore_data):
    """The report of a real trace (the default model on a bundled reasoning trace): the README picture."""
    data = real_explore_data
    # The problem statement holds TeX ($...$): it must not make BokehJS fetch MathJax from a CDN.
    assert "$" in data.text
    path = write_report(data, tmp_path_factory.mktemp("report"))
    return data, path


def test_report_renders_offline_and_links_views(browser, report):
    data, path = report
    page = OfflinePage(browser, path.resolve().as_uri())
    assert page.page.locator(".bk-Column, [data-root-id]").count() > 0
    assert page.page.locator(".sw-sentence").count() == data.n_sentences
    assert page.page.locator(".sw-selected").count() == 0

    target = data.top_anchors(1)[0]
    page.page.mouse.click(*_bar_position(page, target))
    page.page.wait_for_selector(".sw-selected")
    assert page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('sw_sentences').selected.indices)"
    ) == [target]
    selected = page.page.locator(".sw-selected")
    assert selected.count() == 1
    assert selected.get_attribute("data-sw-index") == str(target)
    assert page.page.locator(f".sw-info[data-sw-index='{target}']").count() == 1
    highlight = page.evaluate("() => Bokeh.documents[0].get_model_by_name('sw_highlight').data.x")
    assert highlight[0] == pytest.approx(target + 0.5)
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('sw_anchor_select').value") == str(
        target
    )

    IMAGES.mkdir(parents=True, exist_ok=True)
    page.page.mouse.move(1, 1)  # no hover tooltip over the picture
    page.page.wait_for_timeout(200)
    page.page.screenshot(path=str(IMAGES / "report.png"), full_page=True)

    # Clicking a sentence in the text view selects it everywhere.
    page.page.locator(".sw-sentence[data-sw-index='3']").click()
    page.page.wait_for_selector(".sw-info[data-sw-index='3']")
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == "3"

    # The heatmap Select swaps in another matrix (layer 1, mean of heads), decoded in the browser.
    before = page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('sw_heat').data.image[0])")
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('sw_matrix_select').value = 'm2'; }")
    page.page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('sw_heatmap').title.text.includes('layer 1, mean')"
    )
    after = page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('sw_heat').data.image[0])")
    expected = data.sentence_attention[1].mean(axis=0)
    assert after != before
    assert after[0] == pytest.approx(float(expected[0, 0]), abs=float(expected.max()) / 255 + 1e-6)
    size = data.n_sentences
    assert after[10 * size + 3] == pytest.approx(
        float(expected[10, 3]), abs=float(expected.max()) / 255 + 1e-6
    )

    # The tag filter dims the unchecked tags in the text view.
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('sw_tag_filter').active = [0]; }")
    first_hidden = next(i for i, t in enumerate(data.tags) if t != data.tags_present()[0])
    first_shown = data.tags.index(data.tags_present()[0])
    dimmed = re.compile("opacity")
    sync_api.expect(page.page.locator(f".sw-sentence[data-sw-index='{first_hidden}']")).to_have_attribute(
        "style", dimmed
    )
    sync_api.expect(page.page.locator(f".sw-sentence[data-sw-index='{first_shown}']")).not_to_have_attribute(
        "style", dimmed
    )

    assert page.requests == [page.url], f"network requests besides the page: {page.requests}"
    assert page.errors == [], f"console errors: {page.errors}"


def test_explorer_views_render(browser, tmp_path, real_explore_data):
    """The explorer's Bokeh views (what the notebook shows under its ipywidgets controls)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from stream_widgets.widgets import build_explorer

    data = real_explore_data
    explorer = build_explorer(data)
    explorer.set_layer_head(2, None)
    explorer.select(data.top_anchors(1)[0])
    path = tmp_path / "explorer.html"
    path.write_text(file_html(explorer.views.layout, resources=INLINE, title="explorer"), encoding="utf-8")
    page = OfflinePage(browser, path.resolve().as_uri())
    page.page.wait_for_timeout(200)
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == str(explorer.selected)
    assert "layer 2, mean" in page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('sw_heatmap').title.text"
    )
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(IMAGES / "widgets.png"), full_page=True)
    assert page.requests == [page.url]
    assert page.errors == []


def test_report_route_view_renders_and_links(browser, tmp_path):
    """The needle route view of a report with a (hand-built) route: drawn offline, an edge click selects."""
    from stream_widgets.widgets import synthetic_example
    from tests.widgets.route_example import with_route

    data = with_route(synthetic_example(S=30, L=3, H=2, seed=3))
    page = OfflinePage(browser, write_report(data, tmp_path).resolve().as_uri())
    page.page.wait_for_function(
        "() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_route')) != null"
    )
    # Click the middle of the second kept edge (sentence 5 -> the output), a real mouse click.
    edge = data.route.edges[1]
    x, y = page.evaluate(
        f"""() => {{
        const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_route'));
        view.el.scrollIntoView();
        const box = view.el.getBoundingClientRect();
        return [box.x + view.frame.x_scale.compute({(edge.key + edge.query) / 2}),
                box.y + view.frame.y_scale.compute({edge.layer + 0.5})];
    }}"""
    )
    page.page.wait_for_timeout(100)
    page.page.mouse.click(x, y)
    page.page.wait_for_selector(".sw-selected")
    assert page.page.locator(".sw-selected").get_attribute("data-sw-index") == "5"
    assert page.page.locator(".sw-info[data-sw-index='5']").count() == 1
    assert page.requests == [page.url], f"network requests besides the page: {page.requests}"
    assert page.errors == [], f"console errors: {page.errors}"
