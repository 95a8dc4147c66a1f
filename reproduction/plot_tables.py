"""One picture of how our simulation tables agree with the paper's.

Reads the CSVs that :mod:`reproduction.paper_tables` writes (``results/paper_table_<t>.csv``)
and draws, per table, our counterfactual MAE against the published one (one
point per method and cell, coloured by method, ringed where |z| > 3), plus the
histogram of every z-score (MAE and MSE) over the standard normal density that
it would follow if the two agreed up to noise.

Usage (from the repository root):
  python -m reproduction.plot_tables                    # -> reproduction/figures/paper_agreement.png
  python -m reproduction.plot_tables --tables 2,3 --out /tmp/agreement.png
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

from .paper_tables import PAPER_METHODS, RESULTS, TABLES

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURE = os.path.join(HERE, "figures", "paper_agreement.png")
COMMAND = ("python", "-m", "reproduction.plot_tables")
LABELS = {"codeal": "CoDEAL", "single_ae": "Single AE", "aemc_ne": "AEMC-NE", "did": "DiD",
          "vert_reg": "Vert-Reg", "mc_nnm": "MC-NNM"}
TITLES = {"2": "Table 2 (Config 1)", "3": "Table 3 (Config 2)", "4a": "Table 4a (Configs 1-2)",
          "4b": "Table 4b (Configs 3-4)"}


def load_tables(tables, results: str = RESULTS) -> dict[str, pd.DataFrame]:
    """{table: its CSV's available rows}; tables without a CSV are left out."""
    out = {}
    for t in tables:
        path = os.path.join(results, f"paper_table_{t}.csv")
        if os.path.exists(path):
            frame = pd.read_csv(path, dtype={"table": str})
            out[t] = frame[frame["available"].astype(bool)]
    return out


def agreement_figure(frames: dict[str, pd.DataFrame], path: str | None = None):
    """Scatter panels (ours vs published MAE), one per table, and the z histogram.

    Args:
      frames: {table: rows with ``method``, ``metric``, ``mean``, ``pub_mean``, ``z``, ``reps``}.
      path: where to save the PNG (None: do not save).

    Returns:
      The matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(frames) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.6), constrained_layout=True)
    colours = dict(zip(PAPER_METHODS, plt.get_cmap("tab10").colors))
    for ax, (table, frame) in zip(axes, frames.items()):
        mae = frame[frame["metric"] == "cf_mae"]
        for method, rows in mae.groupby("method", sort=False):
            label = LABELS.get(method, method)
            ax.scatter(rows["pub_mean"], rows["mean"], s=12, color=colours.get(method), label=label)
            far = rows[rows["z"].abs() > 3]
            ax.scatter(far["pub_mean"], far["mean"], s=60, facecolors="none", edgecolors="black", linewidths=0.7)
        lo, hi = np.nanmin(mae[["pub_mean", "mean"]].to_numpy()), np.nanmax(mae[["pub_mean", "mean"]].to_numpy())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, zorder=0)
        reps = "/".join(str(r) for r in sorted(set(mae["reps"])))
        ax.set_title(f"{TITLES.get(table, table)}, {reps} reps", fontsize=9)
        ax.set_xlabel("published MAE")
        ax.set_ylabel("ours")
    axes[0].legend(fontsize=7, loc="upper left", title="ringed: |z| > 3", title_fontsize=7)
    z = pd.concat(frames.values())["z"].dropna().to_numpy()
    ax = axes[-1]
    ax.hist(np.clip(z, -10, 10), bins=np.arange(-10, 10.5, 0.5), density=True, color="0.6")
    grid = np.linspace(-10, 10, 401)
    ax.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), color="black", lw=1, label="N(0, 1)")
    ax.set_title(f"all {len(z)} z-scores (MAE, MSE), clipped at ±10", fontsize=9)
    ax.set_xlabel("z = (ours - published) / se")
    ax.legend(fontsize=7)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=" ".join(COMMAND), description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, from {','.join(TABLES)}")
    ap.add_argument("--results", default=RESULTS, help="directory of the paper_table_<t>.csv files")
    ap.add_argument("--out", default=FIGURE, help="PNG to write")
    args = ap.parse_args(argv)
    tables = [t for t in args.tables.split(",") if t]
    if unknown := [t for t in tables if t not in TABLES]:
        ap.error(f"unknown tables {unknown}; choose from {list(TABLES)}")
    frames = load_tables(tables, args.results)
    if not frames:
        ap.error(f"no paper_table_<t>.csv for tables {tables} in {args.results}; run reproduction.paper_tables first")
    agreement_figure(frames, args.out)
    print(f"wrote {args.out} ({', '.join(frames)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
