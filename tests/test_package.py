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
    import stream_widgets.explore  # noqa: F401  (a submodule import must not shadow the function)
    import stream_widgets.faithfulness  # noqa: F401

    for name in sw.__all__:
        assert getattr(sw, name) is not None, name
    assert callable(sw.fidelity) and callable(sw.explore) and callable(sw.report) and callable(sw.trace)
    assert not isinstance(sw.fidelity, type(sys))
