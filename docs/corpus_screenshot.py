"""Screenshot of a corpus report (the picture `docs/img/corpus_report.png` in docs/corpus.md).

Opens the report from disk in headless Chromium (Debian's `chromium`, driven by Playwright) at 900 px,
with every request off the page refused, waits for the first render and saves the whole page.

    python benchmarks/corpus.py --out out/corpus-bench          # or: stream-widgets corpus bundled --out ... --report
    python docs/corpus_screenshot.py out/corpus-bench/report/report.html docs/img/corpus_report.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


def main(report: str, image: str) -> None:
    url = Path(report).resolve().as_uri()
    refused = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 1200})

        def route(request):
            if request.request.url == url:
                request.continue_()
            else:
                refused.append(request.request.url)
                request.abort()

        page.route("**/*", route)
        page.goto(url)
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('sw_corpus_positions')) != null"
        )
        page.wait_for_timeout(1000)
        page.screenshot(path=image, full_page=True)
        browser.close()
    if refused:
        raise SystemExit(f"the report asked for {refused}: it must work offline")
    print(f"screenshot: {image}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
