"""Time one Thurstonian fit on 2 * n * log2(n) random edges answered by a simulated Thurstonian agent.

    python benchmarks/fit.py --n 5000 [--seed 0] [--json]

JSON keys: n, n_edges, wall_s, iterations, converged, pearson_truth.
Reference points measured on this machine (METHOD.md): the reference implementation takes 4.2 s per fit at
n=510 (9k edges) and 20 s at n=5000.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from _report import print_result  # benchmarks/ is on sys.path when run as a script
from scipy.stats import pearsonr

from uetool.core.agents import ThurstonianAgent
from uetool.core.edges import edge_probabilities
from uetool.core.graph import sample_new_pairs
from uetool.core.thurstonian import fit_thurstonian

REFERENCE_S = {510: 4.2, 5000: 20.0}


def run(n: int, seed: int) -> dict:
    agent = ThurstonianAgent.random_truth(n, seed=seed)
    n_edges = int(math.ceil(2 * n * math.log2(n)))
    pairs = sample_new_pairs(n, n_edges, np.random.default_rng(seed))
    p, w = edge_probabilities(agent(pairs))
    start = time.perf_counter()
    fit = fit_thurstonian(n, pairs[:, 0], pairs[:, 1], p, w)
    wall = time.perf_counter() - start
    out = {"n": n, "n_edges": int(len(pairs)), "wall_s": wall, "iterations": fit.n_iter,
           "converged": fit.converged, "pearson_truth": float(pearsonr(fit.mean, agent.mean)[0])}
    if n in REFERENCE_S:
        out["reference_s"] = REFERENCE_S[n]
        out["speedup_vs_reference"] = REFERENCE_S[n] / wall
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=510)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = run(args.n, args.seed)
    print_result(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
