"""Are the tuned neural methods stable on small panels? 40 x 30 panels with 1 or 3 treated units.

Issue #24's acceptance item: on panels of a few dozen units, the tuned neural
methods' ATT should vary over 10 fit keys by less than a quarter of its
placebo SE, and stay in the range of the linear methods' estimates on the same
panel (unless the CV curve says why not).

Each panel is a draw of the paper's four-block DGP (``codeal_jax.sim``; linear
factors of rank 3, noise SD 0.5, no covariates, unit effects N(12, 5^2)) with
40 units x 30 periods, the last ``treated`` units treated from period 20 (20
pre-periods, 10 post, like Prop 99's 19 and 12). On each panel, with the panel
fixed and the tuning done once:

- DiD, vertical regression and MC-NNM with lambda chosen by cross-validation
  (13 values from lambda_max to lambda_max / 1000): the linear methods;
- CoDEAL and the Single AE tuned by CV over training length (50 or 200 steps)
  x rank 1..8, and CoDEAL tuned with a 5-fit ensemble;

each fitted under ``--keys`` keys (ATT mean, SD, min, max) with its placebo SE
(``--draws`` draws, tuned values held fixed) and SD / SE.

Usage (from the repository root)::

    python -m reproduction.small_panels                # one panel each with 1 and 3 treated, 10 keys, 30 draws
    python -m reproduction.small_panels --panels 3 --draws 50
    python -m reproduction.small_panels --quick --methods did,codeal   # a smoke test on a tiny panel
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

COMMAND = "python -m reproduction.small_panels"
LINEAR = ("DiD", "vertical regression", "MC-NNM")


def panel_config(treated: int, units: int = 40, periods: int = 30, t_pre: int = 20):
    """The four-block DGP of one design: ``treated`` units (the last ones) treated from ``t_pre``."""
    from codeal_jax import sim

    return sim.DGPConfig(n_units=units, n_periods=periods, n_control=units - treated, t_pre=t_pre,
                         n_covariates=0, covariate="none", rank=3, factor="linear")


def lambda_grid(key, panel, points: int = 13) -> list[float]:
    """MC-NNM lambdas from lambda_max (L = 0) down to lambda_max / 1000, log-spaced."""
    import codeal_jax as cj

    lam_max = float(cj.estimate(key, panel, cj.MCNNMConfig(lam=1.0)).info["lambda_max"])
    return [lam_max * 10.0**e for e in np.linspace(0.0, -3.0, points)]


def method_rows(key, panel, *, keys: int, draws: int, folds: int, rule: str, quick: bool = False,
                ensemble: int = 5,
                methods: tuple[str, ...] = ("did", "vert_reg", "mc_nnm", "codeal", "single_ae")):
    """Every method's stability rows on one panel (see the module docstring) and the CV searches.

    Returns:
      ``(rows, curves)``: a list of dicts (method, tuned, cv_mse and
      :func:`~codeal_jax.inference.att_stability`'s fields) and a dict of the
      tuned methods' :class:`~codeal_jax.Tuning`.
    """
    import jax

    import codeal_jax as cj
    from codeal_jax.inference import att_stability, key_atts
    from codeal_jax.tuning import with_fields

    k_tune, k_rows = jax.random.split(key)
    small = {"encoder_hidden": (8,), "decoder_hidden": (8,)} if quick else {}
    steps = [5] if quick else [50, 200]
    ranks = [1, 2] if quick else list(range(1, 9))
    rows = []

    def add(name, config, tuned="", cv_mse=np.nan):
        k_fit, k_se = jax.random.split(jax.random.fold_in(k_rows, len(rows)))
        atts, status = key_atts(k_fit, panel, config, keys=keys)
        placebo = cj.infer(k_se, panel, config, procedure="placebo", draws=draws)
        rows.append({"method": name, "tuned": tuned, "cv_mse": cv_mse,
                     **att_stability(atts, float(placebo.se.att), status)})

    def tuned(base, grid):
        tuning = cj.tune(k_tune, panel, base, grid, folds=folds, rule=rule)
        what = ", ".join(f"{f}={getattr(tuning.config, f):.3g}" if f == "lam" else f"{f}={getattr(tuning.config, f)}"
                         for f in grid)
        return tuning, what, float(tuning.mean[tuning.chosen])

    curves = {}
    if "did" in methods:
        add("DiD", cj.DiDConfig())
    if "vert_reg" in methods:
        add("vertical regression", cj.VertRegConfig())
    if "mc_nnm" in methods:
        tuning, what, cv = tuned(cj.MCNNMConfig(), {"lam": lambda_grid(key, panel, 4 if quick else 13)})
        add("MC-NNM", tuning.config, what, cv)
        curves["mc_nnm"] = tuning
    for name, label, cls in (("codeal", "CoDEAL", cj.CodealConfig), ("single_ae", "Single AE", cj.SingleAEConfig)):
        if name not in methods:
            continue
        tuning, what, cv = tuned(cls(**small), {"steps": steps, "rank": ranks})
        add(f"{label}, tuned", tuning.config, what, cv)
        curves[name] = tuning
        if name == "codeal" and ensemble > 1:
            add(f"{label}, tuned, ensemble {ensemble}", with_fields(tuning.config, {"ensemble": ensemble}), what)
    return rows, curves


def flag_range(table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``in_linear_range``: the mean over keys lies within [min, max] of the linear methods' ATTs on the panel."""
    out = []
    for _, group in table.groupby(["treated", "panel"], sort=False):
        lin = group[group.method.isin(LINEAR)]["mean"]
        out.append(group.assign(in_linear_range=group["mean"].between(lin.min(), lin.max())))
    return pd.concat(out)


def markdown(table: pd.DataFrame) -> str:
    head = ("| treated | panel | true ATT | method | tuned by CV | CV MSE | mean ATT | SD over keys | min | max | "
            "placebo SE | SD / SE | in linear range |")
    lines = [head, "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in table.itertuples():
        inside = "" if r.method in LINEAR else ("yes" if r.in_linear_range else "no")
        cv = "" if not np.isfinite(r.cv_mse) else f"{r.cv_mse:.3f}"
        lines.append(f"| {r.treated} | {r.panel} | {r.true_att:.2f} | {r.method} | {r.tuned} | {cv} | {r.mean:.2f} | "
                     f"{r.sd:.3f} | {r.min:.2f} | {r.max:.2f} | {r.se:.3f} | {r.sd_over_se:.2f} | {inside} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--treated", default="1,3", help="treated units per design (default 1,3)")
    ap.add_argument("--panels", type=int, default=1, help="panels drawn per design (default 1)")
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--draws", type=int, default=30, help="placebo draws per method and panel (default 30)")
    ap.add_argument("--ensemble", type=int, default=5, help="members of CoDEAL's tuned-ensemble row (0: none)")
    ap.add_argument("--methods", default="did,vert_reg,mc_nnm,codeal,single_ae")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--rule", choices=("min", "1se"), default="min")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: one 12 x 10 panel with 1 treated unit, tiny networks, 2 keys, 4 draws")
    ap.add_argument("--out", default="out/small_panels")
    args = ap.parse_args(argv)

    import jax

    import codeal_jax as cj
    from codeal_jax import sim
    from codeal_jax.io.plots import plot_cv_curve

    cj.tune_cpu()
    os.makedirs(args.out, exist_ok=True)
    shape = {"units": 12, "periods": 10, "t_pre": 6} if args.quick else {}
    keys, draws, folds = (2, 4, 2) if args.quick else (args.keys, args.draws, args.folds)
    designs, panels = ([1], 1) if args.quick else ([int(v) for v in args.treated.split(",")], args.panels)
    ensemble = 2 if args.quick and args.ensemble > 1 else args.ensemble
    rows = []
    t_start = time.perf_counter()
    for treated in designs:
        dgp = panel_config(treated, **shape)
        for p in range(panels):
            k_panel, k_fit = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), 100 * treated + p))
            panel, truth = sim.simulate(k_panel, dgp)
            true_att = float(np.asarray(truth.tau)[np.asarray(panel.w).any(axis=1)].mean())
            t0 = time.perf_counter()
            got, curves = method_rows(k_fit, panel, keys=keys, draws=draws, folds=folds, rule=args.rule,
                                      quick=args.quick, ensemble=ensemble, methods=tuple(args.methods.split(",")))
            for name, tuning in curves.items():
                plot_cv_curve(tuning, os.path.join(args.out, f"cv_{name}_t{treated}_p{p}.png"),
                              title=f"{name}, {treated} treated, panel {p}")
            rows += [{"treated": treated, "panel": p, "true_att": true_att, **r} for r in got]
            print(f"{treated} treated, panel {p}: {time.perf_counter() - t0:.0f} s", flush=True)
    table = flag_range(pd.DataFrame(rows))
    table.to_csv(os.path.join(args.out, "small_panels.csv"), index=False)
    text = markdown(table)
    with open(os.path.join(args.out, "small_panels.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)
    print(f"total {time.perf_counter() - t_start:.0f} s; wrote {args.out}/small_panels.md, .csv, cv_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
