"""Screenshot of the explorer as JupyterLab shows it (the README picture `docs/img/widgets_jupyter.png`).

Starts a JupyterLab server on localhost, opens a notebook that runs `stream_widgets.explore` on a saved
trace, runs it in headless Chromium (Debian's `chromium`, driven by Playwright), checks that the Bokeh
views rendered with no JavaScript error and no request off the machine, and saves the output area.

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
        )
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
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
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
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".jp-OutputArea canvas", timeout=180_000)
            time.sleep(5)
            assert page.locator("text=Click to show javascript error").count() == 0, (
                "the widget failed to render"
            )
            page.locator(".jp-OutputArea-output").last.screenshot(path=out)
            browser.close()
        assert not off_machine, f"requests off the machine: {off_machine}"
        assert not errors, f"page errors: {errors}"
        print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:3])
