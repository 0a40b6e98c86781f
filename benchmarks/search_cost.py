"""The work of the estimator's search, counted: halves scored per query block (each a q_block x k_block
block product), for the paper's search, a full-width search and a wide start, at given lengths.

    python benchmarks/search_cost.py --tokens 8192 32768 131072 1048576 --widths 128 256

Default `StreamConfig` otherwise. The paper's search scores 2 x top_k halves in each of its
`search.num_rounds` rounds; a search of width W scores 2 x W in each of its rounds; a wide start
(``wide_rounds=0``) scores 2 x W once, then 2 x top_k in each remaining round. No model, no timing:
the estimator's time follows this count (docs/benchmarks.md compares it with measured CPU times).
"""

from __future__ import annotations

import argparse

from stream_widgets import StreamConfig, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192, 32768, 131072, 1048576])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()
    heads = ["paper search: halves scored"]
    for w in args.widths:
        heads += [f"full width {w}", f"wide start {w}"]
    print("| T | " + " | ".join(heads) + " |\n|---:|" + "---:|" * len(heads))
    for tokens in args.tokens:
        paper = search.halves_scored(tokens, StreamConfig())
        cells = [str(paper)]
        for w in args.widths:
            for rounds in (None, 0):
                cells.append(
                    f"{search.halves_scored(tokens, StreamConfig(search_width=w, wide_rounds=rounds)) / paper:.2f}x"
                )
        print(f"| {tokens:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
