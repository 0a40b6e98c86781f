"""Needle mass and routes from a capture: exact rows against a dense reference, route search properties."""

import torch

from stream_widgets.ruler.routes import Route, RouteEdge, _best_paths, find_route, needle_mass
from tests.ruler.captures import random_capture as _capture


def test_rows_and_needle_mass_match_dense_reference():
    cap = _capture()
    positions, needle = [60, 69], [5, 6, 30]
    dense, kept = needle_mass(cap, positions, needle)
    assert dense.shape == kept.shape == (3, 4) and (kept <= dense + 1e-6).all()
    for layer in range(3):
        k = cap.keys[layer].repeat_interleave(2, dim=0)
        logits = torch.einsum("htd,hsd->hts", cap.queries[layer], k) * cap.scale
        probs = torch.softmax(
            logits.masked_fill(~torch.ones(70, 70, dtype=torch.bool).tril(), float("-inf")), -1
        )
        keep = cap.masks[layer].to_dense()[0]
        want = probs[:, positions][..., needle].sum(dim=(1, 2))
        want_kept = (probs * keep)[:, positions][..., needle].sum(dim=(1, 2))
        torch.testing.assert_close(dense[layer], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kept[layer], want_kept, atol=1e-5, rtol=1e-5)


def test_best_paths_chain_through_layers():
    e = RouteEdge
    per_layer = [
        [e(0, 0, 10, 2, 0.9, True), e(0, 1, 12, 40, 0.9, True)],  # 40 is no needle: ignored
        [e(1, 0, 20, 10, 0.5, True), e(1, 2, 20, 11, 0.9, True)],  # 11 carries nothing
        [e(2, 1, 30, 20, 0.8, True), e(2, 0, 30, 2, 0.1, True), e(2, 0, 30, 12, 0.9, True)],
    ]
    route = _best_paths(per_layer, [2], 30, num_paths=1)
    assert [(x.layer, x.query, x.key) for x in route] == [(0, 10, 2), (1, 20, 10), (2, 30, 20)]
    assert len(_best_paths(per_layer, [2], 30, num_paths=5)) == 4  # plus the direct edge 2 -> 30


def test_find_route_on_random_capture_is_consistent():
    cap = _capture()
    route = find_route(cap, [5, 6], 69, min_weight=0.01)
    assert route.reaches_output and all(e.retained for e in route.edges)
    assert all(not e.retained for e in route.pruned)
    assert all(e.key <= e.query and e.weight >= 0.01 for e in route.edges)
    back = Route.from_dict(route.to_dict())
    assert back == route and set(back.heads()) <= set(range(3))
