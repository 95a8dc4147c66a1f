"""Tuned estimators on a small public panel: California's Proposition 99 (Abadie, Diamond & Hainmueller 2010).

The panel: cigarette sales per capita (packs) of 39 US states, 1970-2000;
California raised its cigarette tax from 1989 (19 pre-periods, 12 post), the
other 38 states never do. Outcomes are in levels, as the published ATTs
(Arkhangelsky et al. 2021, Table 1: synthdid -15.6, synthetic control -19.6,
DiD -27.3 packs per capita).

The data ships with the PyPI package ``causalpy`` (Apache-2.0) as
``causalpy/data/california_prop99.csv`` (a ``Year`` column and one column per
state). Install it without its dependencies (it is only read, never imported)::

    pip install --no-deps causalpy
    python examples/prop99.py                       # 10 keys, 50 placebo draws, out/prop99
    python examples/prop99.py --csv path/to/california_prop99.csv --keys 5 --draws 20

For every method: the ATT (California's mean effect over 1989-2000) under
``--keys`` fit keys (its mean, SD, min and max), the placebo SE
(``infer(..., procedure="placebo")`` with the tuned values held fixed) and
SD over keys / placebo SE. Methods: DiD, vertical regression (min-norm OLS of
California on the 38 other states, synthetic-control-like), MC-NNM with lambda
chosen by cross-validation, and CoDEAL and the Single AE at the paper's
defaults, tuned (training length x rank 1..8 by CV) and tuned with a 5-fit
ensemble. Writes into ``--out``: ``att.md``, ``att.csv``, and per tuned method
``cv_<method>.csv`` and ``cv_<method>.png`` (the CV curves).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RELATIVE = Path("data") / "california_prop99.csv"  # inside the causalpy package
TREATED, START = "California", 1989
PUBLISHED = "published (Arkhangelsky et al. 2021, Table 1): synthdid -15.6, synthetic control -19.6, DiD -27.3"
RANKS = tuple(range(1, 9))
STEPS = (50, 200)  # the paper's 50 and a longer run: CV chooses
COLUMNS = ("method", "tuned", "cv_mse", "att", "mean", "sd", "min", "max", "se", "sd_over_se", "keys", "failed")


def find_csv(path: str | None = None) -> Path:
    """The Prop 99 CSV: ``path`` if given, else the copy inside an installed ``causalpy`` (not imported).

    Raises:
      FileNotFoundError: with the install command, when neither exists.
    """
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} not found")
        return Path(path)
    spec = importlib.util.find_spec("causalpy")  # locates the package without importing it (and pymc)
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / RELATIVE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("the Prop 99 panel ships with causalpy: `pip install --no-deps causalpy`, "
                            "or pass --csv PATH to california_prop99.csv")


def load_panel(path, treated: str = TREATED, start: int = START, time_column: str = "Year"):
    """A wide CSV (one time column, one column per unit) as a panel with one treated unit.

    Args:
      path: the CSV (or a file-like object).
      treated: the treated unit's column.
      start: its first treated period (a value of ``time_column``).
      time_column: the periods' column.

    Returns:
      A :class:`codeal_jax.Panel` (N units x T periods, units in column order,
      periods sorted), ``w`` True for ``treated`` from ``start`` on.

    Raises:
      ValueError: a missing time or treated column, repeated periods, a
        ``start`` that leaves no pre- or post-period, or non-numeric or missing values.
    """
    import codeal_jax as cj

    df = pd.read_csv(path)
    if time_column not in df.columns:
        raise ValueError(f"no {time_column!r} column in {path}; columns: {list(df.columns)[:5]}...")
    units = [c for c in df.columns if c != time_column]
    if treated not in units:
        raise ValueError(f"treated unit {treated!r} is not a column of {path}")
    if df[time_column].duplicated().any():
        raise ValueError(f"repeated periods in {time_column!r}: {sorted(df[time_column][df[time_column].duplicated()])}")
    df = df.sort_values(time_column)
    times = df[time_column].tolist()
    if not times[0] < start <= times[-1]:
        raise ValueError(f"start {start} leaves no pre-period or no treated period in {times[0]}..{times[-1]}")
    values = df[units].apply(pd.to_numeric, errors="coerce")
    bad = values.columns[values.isna().any()].tolist()
    if bad:
        raise ValueError(f"missing or non-numeric outcomes in columns {bad[:8]}")
    y = values.to_numpy(np.float64).T  # (N, T)
    w = np.zeros(y.shape, bool)
    w[units.index(treated)] = np.asarray(times) >= start
    return cj.Panel.from_arrays(y, w, units=units, times=times)


def lambda_grid(key, panel, points: int = 13) -> list[float]:
    """MC-NNM lambdas from lambda_max (L = 0) down to lambda_max / 1000, log-spaced."""
    import codeal_jax as cj

    lam_max = float(cj.estimate(key, panel, cj.MCNNMConfig(lam=1.0)).info["lambda_max"])
    return [lam_max * 10.0**e for e in np.linspace(0.0, -3.0, points)]


def describe(config, fields) -> str:
    """``"steps=200, rank=7"``: a config's values of ``fields``."""
    return ", ".join(f"{f}={getattr(config, f):.3g}" if isinstance(getattr(config, f), float)
                     else f"{f}={getattr(config, f)}" for f in fields)


def row(key, panel, name, config, keys, draws, tuned="", cv_mse=np.nan) -> dict:
    """One table row: ATT under ``keys`` keys, the placebo SE and their ratio."""
    import jax

    import codeal_jax as cj
    from codeal_jax.inference import att_stability, key_atts

    k_fit, k_se = jax.random.split(key)
    atts, status = key_atts(k_fit, panel, config, keys=keys)
    placebo = cj.infer(k_se, panel, config, procedure="placebo", draws=draws)
    stats = att_stability(atts, float(placebo.se.att), status)
    return {"method": name, "tuned": tuned, "cv_mse": cv_mse, "att": float(atts[0]), **stats}


def markdown(table: pd.DataFrame) -> str:
    head = ("| method | tuned by CV | CV MSE | ATT (first key) | mean over keys | SD over keys | min | max | "
            "placebo SE | SD / SE |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        cv = "" if not np.isfinite(r.cv_mse) else f"{r.cv_mse:.0f}"
        lines.append(f"| {r.method} | {r.tuned} | {cv} | {r.att:.1f} | {r.mean:.1f} | {r.sd:.2f} | {r.min:.1f} | "
                     f"{r.max:.1f} | {r.se:.1f} | {r.sd_over_se:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=None, help="california_prop99.csv (default: the one inside causalpy)")
    ap.add_argument("--keys", type=int, default=10, help="fit keys per method (default 10)")
    ap.add_argument("--draws", type=int, default=50, help="placebo draws per method (default 50)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--rule", choices=("min", "1se"), default="min", help="CV rule (default min)")
    ap.add_argument("--ensemble", type=int, default=5, help="members of the tuned-ensemble rows (0: no such rows)")
    ap.add_argument("--methods", default="did,vert_reg,mc_nnm,codeal,single_ae")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/prop99")
    args = ap.parse_args(argv)
    try:
        path = find_csv(args.csv)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2

    import jax

    import codeal_jax as cj
    from codeal_jax.io.plots import plot_cv_curve
    from codeal_jax.tuning import with_fields

    cj.tune_cpu()
    panel = load_panel(path)
    n, t = panel.shape
    print(f"Prop 99: {n} states x {t} years ({panel.times[0]}-{panel.times[-1]}), {TREATED} treated from {START}; "
          f"{PUBLISHED}")
    os.makedirs(args.out, exist_ok=True)
    key = jax.random.key(args.seed)
    k_tune, k_rows = jax.random.split(key)
    methods = args.methods.split(",")
    rows = []

    def add(name, config, **extra):
        t0 = time.perf_counter()
        rows.append(row(jax.random.fold_in(k_rows, len(rows)), panel, name, config, args.keys, args.draws, **extra))
        r = rows[-1]
        print(f"{name:<28} ATT {r['mean']:7.2f} (sd {r['sd']:5.2f} over {r['keys']} keys, range {r['min']:.1f}.."
              f"{r['max']:.1f}), placebo SE {r['se']:5.2f}, sd/SE {r['sd_over_se']:.2f}  "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)

    def tuned(name, base, grid, fields):
        t0 = time.perf_counter()
        tuning = cj.tune(k_tune, panel, base, grid, folds=args.folds, rule=args.rule)
        tuning.table().to_csv(os.path.join(args.out, f"cv_{name}.csv"), index=False)
        plot_cv_curve(tuning, os.path.join(args.out, f"cv_{name}.png"),
                      title=f"Prop 99: CV of {name} ({args.folds} block folds, rule {args.rule})")
        print(f"{name}: CV chose {describe(tuning.config, fields)} [{time.perf_counter() - t0:.0f} s]", flush=True)
        return tuning.config, describe(tuning.config, fields), float(tuning.mean[tuning.chosen])

    def cv_error(config) -> float:
        """Held-out MSE of an untuned config on the same folds as the searches (a one-point grid)."""
        return float(cj.tune(k_tune, panel, config, {"centering": [config.centering]}, folds=args.folds).mean[0])

    if "did" in methods:
        add("DiD", cj.DiDConfig(), cv_mse=cv_error(cj.DiDConfig()))
    if "vert_reg" in methods:
        add("vertical regression", cj.VertRegConfig(), cv_mse=cv_error(cj.VertRegConfig()))
    if "mc_nnm" in methods:
        config, what, cv = tuned("mc_nnm", cj.MCNNMConfig(), {"lam": lambda_grid(key, panel)}, ("lam",))
        add("MC-NNM", config, tuned=what, cv_mse=cv)
    for name, cls in (("codeal", cj.CodealConfig), ("single_ae", cj.SingleAEConfig)):
        if name not in methods:
            continue
        label = "CoDEAL" if name == "codeal" else "Single AE"
        add(f"{label}, paper defaults", cls())
        config, what, cv = tuned(name, cls(), {"steps": list(STEPS), "rank": list(RANKS)}, ("steps", "rank"))
        add(f"{label}, tuned", config, tuned=what, cv_mse=cv)
        if args.ensemble > 1 and hasattr(config, "ensemble"):
            add(f"{label}, tuned, ensemble {args.ensemble}", with_fields(config, {"ensemble": args.ensemble}), tuned=what)

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.to_csv(os.path.join(args.out, "att.csv"), index=False)
    text = markdown(table)
    with open(os.path.join(args.out, "att.md"), "w") as fh:
        fh.write(text + "\n")
    print("\n" + text)
    linear = table[table.method.isin(["DiD", "vertical regression", "MC-NNM"])]
    if len(linear):
        lo, hi = linear["mean"].min(), linear["mean"].max()
        print(f"\nlinear methods' range: {lo:.1f} .. {hi:.1f}")
        for r in table[~table.index.isin(linear.index)].itertuples():
            where = "inside" if lo <= r.mean <= hi else "outside"
            print(f"  {r.method}: mean {r.mean:.1f} {where}; sd/SE {r.sd_over_se:.2f} "
                  f"({'meets' if r.sd_over_se < 0.25 else 'misses'} < 0.25)")
    print(f"wrote {args.out}/: att.md, att.csv, cv_*.csv, cv_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
