"""Times causaltensor's MC-NNM on a panel saved by the suite (run in a subprocess with a time limit).

Usage (by suite.py, from the repository root):
  python -m benchmarks.peer_causaltensor PANEL.npz KIND ARG REPEATS OUT.npz
  KIND: fixed (ARG = l on causaltensor's scale), rank (ARG = suggested rank) or cv (ARG = folds).
Writes OUT.npz with the median seconds, the number of runs and the baseline (N, T).
Only numpy and causaltensor are imported, so a slow peer can be stopped without touching JAX.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np


def main(argv):
    panel, kind, arg, repeats, out = argv[0], argv[1], float(argv[2]), int(argv[3]), argv[4]
    from causaltensor.cauest.MCNNM import MCNNMPanelSolver

    data = np.load(panel)
    y, w = data["y"], data["w"].astype(int)
    if kind == "fixed":
        call = lambda: MCNNMPanelSolver(Z=w).solve_with_regularizer(O=y, l=arg)  # noqa: E731
    elif kind == "rank":
        call = lambda: MCNNMPanelSolver(Z=w).solve_with_suggested_rank(O=y, suggest_r=int(arg))  # noqa: E731
    else:
        # list_l=[] explicitly: 0.1.12's mutable default would reuse an earlier panel's grid.
        call = lambda: MCNNMPanelSolver(Z=w).solve_with_cross_validation(O=y, K=int(arg), list_l=[])  # noqa: E731
    times = []
    while len(times) < max(repeats, 1):
        t0 = time.perf_counter()
        res = call()
        times.append(time.perf_counter() - t0)
        if times[0] > 5.0:  # a slow call is timed once
            break
    np.savez(out, seconds=statistics.median(times), runs=len(times), baseline=res.baseline)


if __name__ == "__main__":
    main(sys.argv[1:])
