"""The package root: a small public API and no import side effects."""

import subprocess
import sys


def test_import_loads_no_heavy_dependency():
    script = (
        "import sys, stream_widgets\n"
        "heavy = [m for m in ('transformers', 'bokeh', 'spacy', 'ipywidgets', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves_and_functions_stay_functions():
    import stream_widgets as sw
    import stream_widgets.faithfulness  # noqa: F401  (a submodule import must not shadow the function)
    import stream_widgets.views.api  # noqa: F401
    import stream_widgets.views.report_files  # noqa: F401

    for name in sw.__all__:
        assert getattr(sw, name) is not None, name
    assert callable(sw.fidelity) and callable(sw.explore) and callable(sw.report) and callable(sw.trace)
    assert not isinstance(sw.fidelity, type(sys))
    for name in sw.views.__all__:
        value = getattr(sw.views, name)
        assert not isinstance(value, type(sys)), f"stream_widgets.views.{name} is a module"
    assert sw.explore is sw.views.explore and sw.report is sw.views.report


def test_views_import_no_bokeh_ipywidgets_or_tagging():
    script = (
        "import sys, stream_widgets.views, stream_widgets.views.data, stream_widgets.views.matrices\n"
        "import stream_widgets.views.sources, stream_widgets.views.corrections, stream_widgets.views.api\n"
        "from stream_widgets.views import ExploreData, synthetic_example\n"
        "synthetic_example(S=6, L=1, H=1)\n"
        "heavy = [m for m in ('bokeh', 'ipywidgets', 'jupyter_bokeh', 'tagging', 'spacy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_bokeh_is_imported_only_inside_the_views_package():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    outside = [
        str(p.relative_to(root))
        for folder in ("stream_widgets", "tagging")
        for p in (root / folder).rglob("*.py")
        if "views" not in p.parts and ("import bokeh" in p.read_text() or "from bokeh" in p.read_text())
    ]
    assert outside == []
