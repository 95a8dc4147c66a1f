"""Coverage studies: how often an inference procedure's intervals contain the true effects.

Each replication j draws a panel from ``fold_in(key, j)`` (the data key of
:func:`~codeal_jax.sim.run_study`, so its panels are the study's) and runs
:func:`codeal_jax.inference.infer` on it with the fit key; the rows record the
interval of the overall ATT, whether it covers the true ATT (the average of
tau_i over the treated cells), and, for procedures with per-unit intervals,
the share of treated units whose interval covers their tau_i. The plan and
the draws' programme compile once for all replications.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..driver import UNSET, configure
from ..inference import infer
from .dgp import DGPConfig, simulate

COLUMNS = ("rep", "att", "true_att", "se", "ci_low", "ci_high", "covered", "width", "unit_coverage",
           "unit_width", "failed_draws", "status")


@dataclasses.dataclass
class CoverageResult:
    """Per-replication rows of a coverage study and their summary.

    Attributes:
      data: one row per replication (:data:`COLUMNS`).
      procedure, draws, level: the inference settings.
      elapsed: wall seconds, compilation included.
    """

    data: pd.DataFrame
    procedure: str
    draws: int
    level: float
    elapsed: float

    def summary(self) -> dict:
        """Coverage of the ATT interval with its Monte Carlo SE, mean widths, per-unit coverage."""
        ok = self.data[self.data["status"] == 0]
        covered = ok["covered"].to_numpy(float)
        n = covered.size
        unit = ok["unit_coverage"].to_numpy(float)
        unit = unit[np.isfinite(unit)]
        return {
            "reps": int(n),
            "coverage": covered.mean() if n else np.nan,
            "coverage_se": covered.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan,
            "mean_width": ok["width"].mean(),
            "bias": (ok["att"] - ok["true_att"]).mean(),
            "sd_att": ok["att"].std(ddof=1),
            "mean_se": ok["se"].mean(),
            "unit_coverage": unit.mean() if unit.size else np.nan,
            "unit_coverage_se": unit.std(ddof=1) / np.sqrt(unit.size) if unit.size > 1 else np.nan,
            "unit_width": ok["unit_width"].mean(),
            "failed_fits": int((self.data["status"] != 0).sum()),
        }


def coverage_study(
    key: jax.Array,
    dgp: DGPConfig,
    config,
    reps: int,
    *,
    method: str | None = None,
    covariates=UNSET,
    procedure: str = "placebo",
    draws: int | None = None,
    level: float = 0.95,
    chunk_size: int | None = 64,
    progress: bool = True,
) -> CoverageResult:
    """Runs ``reps`` replications of ``dgp`` with :func:`~codeal_jax.inference.infer` on each.

    Args:
      key: the study key; replication j's panel is drawn from ``fold_in(key, j)``.
      dgp: the data-generating process.
      config, method, covariates: the method (as in :func:`codeal_jax.estimate`).
      reps: replications.
      procedure, draws, level, chunk_size: as in :func:`~codeal_jax.inference.infer`.
      progress: a progress bar over the replications.

    Returns:
      A :class:`CoverageResult`.
    """
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    config = configure(config, method=method, covariates=covariates)
    start = time.perf_counter()
    rows = []
    n_draws = None
    for j in tqdm(range(int(reps)), disable=not progress, desc=f"coverage ({procedure})", unit="rep"):
        k_data, k_fit = jax.random.split(jax.random.fold_in(key, j))
        panel, truth = simulate(k_data, dgp)
        res = infer(k_fit, panel, config, procedure=procedure, draws=draws, level=level, chunk_size=chunk_size)
        n_draws = res.n_draws
        w = np.asarray(panel.w & panel.observed)
        tau = np.asarray(truth.tau, np.float64)
        treated = w.any(axis=1)
        true_att = float((w.sum(axis=1) * tau).sum() / w.sum())
        lo, hi = float(res.ci_low.att), float(res.ci_high.att)
        unit_lo, unit_hi = res.ci_low.unit_att[treated], res.ci_high.unit_att[treated]
        has_unit = np.isfinite(unit_lo).all()
        rows.append({
            "rep": j, "att": float(res.estimate.att), "true_att": true_att, "se": float(res.se.att),
            "ci_low": lo, "ci_high": hi, "covered": bool(lo <= true_att <= hi), "width": hi - lo,
            "unit_coverage": float(np.mean((unit_lo <= tau[treated]) & (tau[treated] <= unit_hi))) if has_unit else np.nan,
            "unit_width": float(np.mean(unit_hi - unit_lo)) if has_unit else np.nan,
            "failed_draws": res.n_failed, "status": int(res.result.status),
        })
    data = pd.DataFrame(rows, columns=list(COLUMNS))
    return CoverageResult(data, procedure, int(n_draws), float(level), time.perf_counter() - start)
