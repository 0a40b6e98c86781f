"""RULER needle routes: needle-in-a-haystack cases, scoring under dense and Stream-sparse attention, routes.

* `stream_widgets.ruler.cases` -- seeded RULER-style cases (`make_cases`, `RulerCase`, `KINDS`);
* `stream_widgets.ruler.scoring` -- dense vs sparse greedy answers and needle mass (`score_case`,
  `run_ruler`, `RulerResult`, `summarize`, `format_table`);
* `stream_widgets.ruler.routes` -- exact single-row attention from a capture pass, needle mass and the
  layer-by-layer route from the needle to the output (`capture_attention`, `find_route`, `Route`);
* `stream_widgets.ruler.decoding` -- greedy decoding with a KV cache, dense or Stream-sparse.

The names below are re-exported here: ``from stream_widgets.ruler import make_cases, score_case``.
"""

from stream_widgets.ruler.cases import HAYSTACKS, KINDS, NEEDLES, RulerCase, make_cases
from stream_widgets.ruler.routes import Route, RouteEdge, capture_attention, find_route, needle_mass
from stream_widgets.ruler.scoring import RulerResult, format_table, run_ruler, score_case, summarize

__all__ = [
    "HAYSTACKS",
    "KINDS",
    "NEEDLES",
    "Route",
    "RouteEdge",
    "RulerCase",
    "RulerResult",
    "capture_attention",
    "find_route",
    "format_table",
    "make_cases",
    "needle_mass",
    "run_ruler",
    "score_case",
    "summarize",
]
