"""Evidence a test can compute from data it has: the bundled trace's black-box importance columns."""

import numpy as np

TRACE = "deepseek-r1-distill-qwen-14b/correct_base_solution/problem_330"  # the `real_trace` fixture's text


def bundled_importance(sentences: list[str], name: str = TRACE) -> dict[str, np.ndarray]:
    """The bundled black-box importance columns, mapped 1:1 to `sentences` where the texts agree
    (whitespace aside): the `real_trace` fixture is the bundled trace cut to ~1,200 tokens, so its last
    sentence may be cut (NaN there), and a splitter with other rules gives NaN where it differs."""
    from stream_widgets.data import load_bundled_trace

    bundled = load_bundled_trace(name)
    out = {}
    for column in ("counterfactual_importance_kl", "resampling_importance_accuracy"):
        values = np.full(len(sentences), np.nan)
        for i, sentence in enumerate(sentences):
            if i < len(bundled.chunks) and " ".join(bundled.chunks[i].split()) == " ".join(sentence.split()):
                values[i] = bundled.importance[column][i]
        out[column] = values
    return out
