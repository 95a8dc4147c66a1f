"""What a study returns: per-replication rows, and the paper's mean (standard error) tables."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import jax
import numpy as np
import pandas as pd

from .metrics import METRICS, TUNED


@dataclasses.dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
      data: one row per replication and method: ``rep``, ``method`` (the
        label), ``status`` and every metric of :data:`~codeal_jax.sim.METRICS`;
        in a study of a tuned method also ``tuned_point`` (the grid point its
        cross-validation chose; NaN for the other methods).
      settings: the study's settings (as written to ``settings.json``).
      elapsed: wall seconds of this call (compilation included).
    """

    data: pd.DataFrame
    settings: dict
    elapsed: float = 0.0

    @property
    def methods(self) -> list[str]:
        return [m["label"] for m in self.settings["methods"]]

    @property
    def failures(self) -> pd.Series:
        """Replications with ``status != 0``, per method."""
        bad = self.data.assign(failed=self.data["status"] != 0).groupby("method", sort=False)["failed"].sum()
        return bad.reindex(self.methods, fill_value=0).astype(int)

    def summary(self) -> pd.DataFrame:
        """Mean and standard error of every metric, per method (the paper's tables).

        The standard error is ``std(ddof=1) / sqrt(n)`` over the replications
        whose metric is finite (n = reps unless a fit failed).

        Returns:
          DataFrame indexed by method with columns ``<metric>`` (mean),
          ``<metric>_se``, then ``reps`` and ``failures`` (status != 0).
        """
        rows = {}
        for label in self.methods:
            sub = self.data[self.data["method"] == label]
            row = {}
            for name in METRICS:
                v = sub[name].to_numpy(np.float64)
                v = v[np.isfinite(v)]
                row[name] = v.mean() if v.size else np.nan
                row[f"{name}_se"] = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else np.nan
            row["reps"] = len(sub)
            row["failures"] = int((sub["status"] != 0).sum())
            rows[label] = row
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "method"
        return out

    def choices(self) -> pd.DataFrame:
        """How often each tuned method's cross-validation chose each grid point.

        Returns:
          DataFrame with columns ``method`` (the label), one column per grid
          field (the point's values), ``count`` and ``share`` of the
          replications with a choice; one row per grid point of every tuned
          method (empty if the study ran none).
        """
        rows = []
        for run in self.settings["methods"]:
            if run.get("method") != "tuned" or TUNED not in self.data:
                continue
            grid = run["config"]["grid"]
            names = [name for name, _ in grid]
            picked = self.data.loc[self.data["method"] == run["label"], TUNED].dropna().astype(int)
            picked = picked[picked >= 0]  # -1: every grid point failed
            counts = picked.value_counts()
            for i, values in enumerate(itertools.product(*(v for _, v in grid))):
                rows.append({"method": run["label"], **dict(zip(names, values)), "count": int(counts.get(i, 0)),
                             "share": counts.get(i, 0) / max(len(picked), 1)})
        return pd.DataFrame(rows)

    def table(self, metrics: Sequence[str] = ("cf_mse", "cf_mae"), digits: int = 3) -> pd.DataFrame:
        """``"mean (se)"`` strings, methods by metrics, as printed in the paper."""
        s = self.summary()
        return pd.DataFrame(
            {m: [f"{a:.{digits}f} ({b:.{digits}f})" for a, b in zip(s[m], s[f"{m}_se"])] for m in metrics},
            index=s.index,
        )


def chunk_rows(out: dict, idx: np.ndarray, n_real: int, labels: list[str]) -> pd.DataFrame:
    """Host-side table of one chunk's metrics (padding dropped)."""
    out = jax.device_get(out)
    frames = []
    for label in labels:
        m = out[label]
        cols = {"rep": idx[:n_real], "method": label, "status": np.asarray(m["status"][:n_real], np.int64)}
        cols.update({name: np.asarray(m[name][:n_real], np.float64) for name in METRICS})
        if TUNED in m:
            cols[TUNED] = np.asarray(m[TUNED][:n_real], np.float64)
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def sorted_rows(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    order = {label: i for i, label in enumerate(labels)}
    df = df.drop_duplicates(["rep", "method"], keep="first")
    df = df.assign(_o=df["method"].map(order)).sort_values(["rep", "_o"]).drop(columns="_o")
    tuned = [TUNED] if TUNED in df and df[TUNED].notna().any() else []  # a study with a tuned method
    return df.reset_index(drop=True)[["rep", "method", "status", *METRICS, *tuned]]
