"""Screenshot of the explorer as JupyterLab shows it (the README picture `docs/img/widgets_jupyter.png`).

Starts a JupyterLab server on localhost, opens a notebook that runs `stream_widgets.explore` on a saved
trace, runs it in headless Chromium (Debian's `chromium`, driven by Playwright) in a 1280 px wide window
with the file browser open (an output area of about 850 px), and checks what a person sees: the views'
first render (the shared browser-side renderer, run by the document-ready event through jupyter_bokeh),
no horizontal scrolling of the output, a click on a sentence selecting it in the text, the info panel and
Python (`explorer.selected`, synced back by jupyter_bokeh), no JavaScript error and no request off the
machine. Saves the output area.

    pip install jupyterlab            # not a project dependency
    stream-widgets demo --out out/demo
    python docs/jupyter_screenshot.py out/demo/trace.safetensors docs/img/widgets_jupyter.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from playwright.sync_api import sync_playwright

PORT = 8899
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def main(trace_path: str, out: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sw-jupyter-"))
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import stream_widgets as sw\nexplorer = sw.explore({str(Path(trace_path).resolve())!r})\nexplorer"
        ),
        nbformat.v4.new_code_cell("print('selected in Python:', explorer.selected)"),
    ]
    nbformat.write(notebook, folder / "explore.ipynb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--allow-root",
            "--no-browser",
            f"--port={PORT}",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--ServerApp.ip=127.0.0.1",
            "--LabApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={folder}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)
        off_machine, errors = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            # tall, so that the whole output area (one column at ~850 px) is on screen for the picture
            page = browser.new_page(viewport={"width": 1280, "height": 4200})
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith(("http://localhost", "data:", "blob:"))
                    else off_machine.append(r.url)
                ),
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://localhost:{PORT}/lab/tree/explore.ipynb")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            time.sleep(4)
            page.evaluate(
                "() => window.jupyterapp.commands.execute('filebrowser:activate')"
            )  # as a user has it
            time.sleep(1)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".jp-OutputArea canvas", timeout=180_000)
            page.wait_for_selector(".sw-sentence", timeout=60_000)  # the first render ran in the notebook
            time.sleep(3)
            assert page.locator("text=Click to show javascript error").count() == 0, (
                "the widget failed to render"
            )
            output = page.locator(".jp-OutputArea-output").filter(has=page.locator(".sw-text")).first
            width = output.evaluate("el => [el.scrollWidth, el.clientWidth]")
            print(f"output area: {width[1]} px wide, content {width[0]} px")
            assert width[0] <= width[1] + 1, f"the explorer scrolls sideways in a {width[1]} px output area"
            # A click on a sentence selects it in every view and in Python (synced back by jupyter_bokeh).
            span = page.locator(".sw-sentence[data-sw-index='5']")
            span.scroll_into_view_if_needed()
            x, y = span.evaluate(
                "el => { const r = el.getClientRects()[0]; return [r.x + 4, r.y + r.height / 2]; }"
            )
            page.mouse.click(x, y)
            page.wait_for_selector(".sw-info[data-sw-index='5']", timeout=30_000)
            page.evaluate(
                "() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 1;"
                " return window.jupyterapp.commands.execute('notebook:run-cell'); }"
            )
            page.wait_for_selector("text=selected in Python: 5", timeout=60_000)
            news = page.locator(".jp-toast-button", has_text="No")  # JupyterLab's "notify about news?" toast
            if news.count():
                news.first.click()
            page.mouse.move(1, 1)
            time.sleep(1)
            output.scroll_into_view_if_needed()
            output.screenshot(path=out)
            browser.close()
        assert not off_machine, f"requests off the machine: {off_machine}"
        assert not errors, f"page errors: {errors}"
        print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:3])
