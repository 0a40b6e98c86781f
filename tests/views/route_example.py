"""A small hand-built needle route over `synthetic_example` data, for the route panel's tests."""

import dataclasses

from stream_widgets.ruler.routes import Route, RouteEdge
from stream_widgets.views.data import ExploreData

TOKENS_PER_SENTENCE = 10  # sentence i holds tokens [10 i, 10 i + 8); tokens 10 i + 8 and + 9 lie between


def with_route(data: ExploreData, token_spans: bool = True) -> ExploreData:
    """`data` with 10 tokens per sentence and a route: needle in sentence 2, via sentence 5, to the last.

    Edges, in order: layer 0 (needle -> sentence 5), layer 1 (sentence 5 -> output); one pruned dense edge
    at the last layer (needle -> output).
    """
    s, per = data.n_sentences, TOKENS_PER_SENTENCE
    spans = [(i * per, i * per + per - 2) for i in range(s)]
    needle, via, output = 2 * per + 3, 5 * per + 1, (s - 1) * per + 4
    last = data.n_layers - 1
    route = Route(
        edges=(RouteEdge(0, 0, via, needle, 0.6, True), RouteEdge(1, 0, output, via, 0.4, True)),
        pruned=(RouteEdge(last, 0, output, needle, 0.3, False),),
        sources=(needle, needle + 1),
        output=output,
        num_layers=data.n_layers,
        num_heads=data.n_heads,
        seq_len=s * per,
        min_weight=0.05,
        tokens={needle: " 42", via: " five", output: "?"},
        spans={"needle": ((needle, needle + 2),)},
    )
    return dataclasses.replace(
        data, token_spans=spans if token_spans else None, route=route, meta={**data.meta, "tokens": s * per}
    )
