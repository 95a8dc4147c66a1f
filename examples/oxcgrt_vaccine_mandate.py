"""CoDEAL on real data: COVID-19 policies in US states and Canadian provinces (paper section 4).

The panel: 64 regions x 240 days (2021-04-16 to 2021-12-11) from the Oxford
COVID-19 Government Response Tracker (OxCGRT, CC BY 4.0; Hale et al. 2021,
Nature Human Behaviour 5, 529-538, https://doi.org/10.1038/s41562-021-01079-8).

* Outcomes: log10(cumulative confirmed cases + 1e-4) and log10(cumulative
  deaths + 1e-4), as in the reference code. Both are fitted in one vmapped
  call (same design, one compile).
* Covariates: the four OxCGRT indices (government response, containment and
  health, stringency, economic support), each averaged over the window per
  region, then log10.
* Treatment (``--policy``):
  - ``v4`` (default): a vaccination mandate in effect (``treat_v4``); 34
    regions adopt on 21 distinct dates, 30 never do; irreversible.
  - ``c7_end``: internal movement restrictions ended (``treat_c7_end``, the
    first end); 50 regions on 38 dates, 14 never. Four regions (CAN_BC,
    CAN_NB, US_KS, US_TX) bring restrictions back after the first end. By
    default (``--reversals itt``) they count as treated from their first end
    (intention to treat: the absorbing ``treat_c7_end`` column) and are listed
    in a printed note; ``--reversals drop`` removes them from the panel.
* Method: CoDEAL on the staggered design with the real-data settings of the
  reference notebook, ``CodealConfig.paper_real_data()`` (K = 2, 1000 Adam
  steps, learning rate 1e-4, decoders with two hidden layers of 64).
* Coarsening (``--max-groups``, default 6): 21 adoption dates plus the
  never-treated group would be 22 groups, i.e. 22 * 21 / 2 = 231 autoencoders
  (the first-end C7 design: 39 groups, 741). Six groups give 15; the dates
  are merged into runs that mask the fewest untreated cells (310 of 12,558
  untreated cells for V4, 2.5 %, are then imputed instead of fitted). The
  script prints this count.

Run (from the repository root)::

    python examples/oxcgrt_vaccine_mandate.py                 # V4, paper settings
    python examples/oxcgrt_vaccine_mandate.py --policy c7_end
    python examples/oxcgrt_vaccine_mandate.py --quick         # 20 steps, 3 groups: a smoke test
    python examples/oxcgrt_vaccine_mandate.py --tune          # CV first: MC-NNM's lambda, CoDEAL's rank

``--tune`` cross-validates (5 block folds of held-out untreated days, on
log10 cases) MC-NNM's lambda (9 values from the largest subproblem's
lambda_max down to 1e-4 of it) and CoDEAL's rank (1..4) at the run's settings, writes
``cv_mc_nnm.png``/``.csv`` and ``cv_codeal.png``/``.csv``, prints MC-NNM's ATT
at its chosen lambda and fits the chosen CoDEAL. To keep the 20 CV fits within
minutes on a CPU it defaults to 3 groups and 300 steps (``--max-groups`` and
``--steps`` override this).

It prints, for the regions with the policy in effect, the actual and the
counterfactual (no policy) cumulative cases and deaths on the last day (sums
over regions of 10^y), and writes into ``--out`` (default ``out/oxcgrt``):
``treatment.png`` (the paper's Figure 3), ``trajectories_cases.png`` and
``trajectories_deaths.png`` (Figure 4: totals over the treated regions, log
scale, 14-day moving averages), ``unit_effects_cases.png``,
``unit_effects.csv`` and ``long.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "oxcgrt_us_canada_2021.csv").resolve()
INDICES = ("GovernmentResponseIndex", "ContainmentHealthIndex", "StringencyIndex", "EconomicSupportIndex")
OFFSET = 1e-4  # log10(x + 1e-4), as the reference code
POLICIES = {
    # policy: (treatment column, raw indicator column, "policy in effect" test on the raw column, description)
    "v4": ("treat_v4", "V4_mandatory_vaccination", lambda v: v.fillna(0) > 0, "vaccination mandate in effect"),
    "c7_end": ("treat_c7_end", "C7M_internal_movement", lambda v: v == 0, "internal movement restrictions ended"),
}
CREDIT = (
    "Data: Oxford COVID-19 Government Response Tracker (OxCGRT), Blavatnik School of Government, "
    "University of Oxford; CC BY 4.0. Hale et al. (2021), Nature Human Behaviour 5, 529-538."
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help=f"the long CSV (default {DEFAULT_DATA})")
    p.add_argument("--policy", choices=sorted(POLICIES), default="v4")
    p.add_argument("--reversals", choices=("itt", "drop"), default="itt",
                   help="units whose policy switches back: keep them treated from the first adoption "
                        "(itt, default) or drop them")
    p.add_argument("--max-groups", type=int, default=None,
                   help="coarsen adoption dates into at most this many groups (default 6; 3 with --tune or --quick)")
    p.add_argument("--steps", type=int, default=None, help="autoencoder steps (default: the paper's 1000)")
    p.add_argument("--quick", action="store_true", help="smoke test: 20 steps, 3 groups, 20 covariate steps")
    p.add_argument("--tune", action="store_true",
                   help="choose CoDEAL's rank (1..4) and MC-NNM's lambda by 5-fold CV on the cases panel first, "
                        "plot the CV curves and fit the chosen CoDEAL (default then: --max-groups 3, --steps 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/oxcgrt", help="directory for figures and tables (default out/oxcgrt)")
    return p.parse_args(argv)


def reversing_units(df: pd.DataFrame, treat: str, raw: str, in_effect) -> list[str]:
    """Regions whose raw policy indicator turns off again after their first adoption."""
    on = in_effect(df[raw])
    after = df[treat].astype(bool)
    bad = df.loc[after & ~on, "region_code"]
    return sorted(bad.unique().tolist())


def masked_by_coarsening(w: np.ndarray, design) -> int:
    """Untreated cells of later adopters inside their (merged) group's treated block."""
    from codeal_jax.design import adoption_times

    t = w.shape[1]
    run_start = np.cumsum(design.block_sizes)[:-1]  # ascending starts of the adoption groups
    group_start = np.concatenate([[t], run_start[::-1]])  # never-treated first, then latest first
    coarse = np.repeat(group_start, design.group_sizes)
    actual = adoption_times(w)[list(design.order)]
    return int(np.sum(actual - coarse))


def build_panels(df: pd.DataFrame, treat: str):
    """The cases and deaths panels (same units, periods, treatment and covariates)."""
    import jax.numpy as jnp

    from codeal_jax.io.longdata import panel_from_long

    df = df.assign(
        log10_cases=np.log10(df["confirmed_cases"] + OFFSET),
        log10_deaths=np.log10(df["confirmed_deaths"] + OFFSET),
    )
    # Covariates: window means of the indices (covariate_agg="mean"), then log10.
    cases = panel_from_long(df, "region_code", "date", "log10_cases", treat, covariates=list(INDICES))
    cases = cases.replace(x=jnp.log10(cases.x))
    deaths = panel_from_long(df, "region_code", "date", "log10_deaths", treat)
    deaths = deaths.replace(x=cases.x)
    return cases, deaths


def last_day_totals(panel, result) -> tuple[float, float]:
    """Sum over ever-treated regions of 10^y (actual) and 10^y0_hat (counterfactual), last day."""
    treated = np.asarray(panel.w, bool)[:, -1]
    y = np.asarray(panel.y, np.float64)[treated, -1]
    y0 = np.asarray(result.y0_hat, np.float64)[treated, -1]
    return float(np.sum(10.0**y)), float(np.sum(10.0**y0))


TUNE_STEPS, TUNE_GROUPS = 300, 3  # --tune's defaults: 3 subproblems x 300 steps a fit
TUNE_RANKS = (1, 2, 3, 4)


def tune_both(key, panel, config, out, quick: bool = False):
    """CV curves of MC-NNM's lambda and CoDEAL's rank on ``panel`` (5 block folds); returns the tuned CoDEAL.

    Writes ``cv_mc_nnm.csv/.png`` and ``cv_codeal.csv/.png`` into ``out`` and
    prints both choices and MC-NNM's ATT at its chosen lambda (same groups).
    """
    import jax

    import codeal_jax as cj
    from codeal_jax.io.plots import plot_cv_curve

    k_mc, k_codeal, k_fit = jax.random.split(key, 3)
    folds = 2 if quick else 5
    mc_base = cj.MCNNMConfig(max_groups=config.max_groups, covariates=config.covariates)
    # One lambda for every subproblem: the grid starts at the largest subproblem's lambda_max.
    lam_max = float(np.max(cj.estimate(k_fit, panel, dataclasses.replace(mc_base, lam=1.0)).info["lambda_max"]))
    lams = [float(lam_max * 10.0**e) for e in np.linspace(0.0, -4.0, 4 if quick else 9)]
    searches = (("mc_nnm", k_mc, mc_base, {"lam": lams}), ("codeal", k_codeal, config,
                                                          {"rank": [1, 2] if quick else list(TUNE_RANKS)}))
    chosen = {}
    for name, k, base, grid in searches:
        t0 = time.perf_counter()
        values = {f: [v if isinstance(v, int) else float(f"{v:.4g}") for v in vs] for f, vs in grid.items()}
        print(f"tuning {name} over {values} ({folds} block folds) ...", flush=True)
        tuning = cj.tune(k, panel, base, grid, folds=folds)
        tuning.table().to_csv(os.path.join(out, f"cv_{name}.csv"), index=False)
        plot_cv_curve(tuning, os.path.join(out, f"cv_{name}.png"), title=f"OxCGRT log10 cases: CV of {name}")
        print(tuning.table().to_string(index=False))
        print(f"{name}: chose {', '.join(f'{f}={getattr(tuning.config, f):.4g}' for f in grid)} "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        chosen[name] = tuning.config
    mc = cj.estimate(k_fit, panel, chosen["mc_nnm"])
    print(f"MC-NNM at the CV lambda: ATT on log10 cases {float(mc.att):+.4f} ({cj.Status(int(mc.status)).name})")
    return chosen["codeal"]


def main(argv=None) -> int:
    args = parse_args(argv)
    path = Path(args.data)
    if not path.is_file():
        print(f"data file {path} not found; pass its path as the first argument", file=sys.stderr)
        return 2
    import jax
    import jax.numpy as jnp

    import codeal_jax as cj
    from codeal_jax.io import plots, tables

    cj.enable_compilation_cache(announce=True)  # a second run loads the compiled fits
    treat, raw, in_effect, what = POLICIES[args.policy]
    df = pd.read_csv(path, parse_dates=["date"])
    print(CREDIT)

    rev = reversing_units(df, treat, raw, in_effect)
    if rev:
        if args.reversals == "drop":
            df = df[~df["region_code"].isin(rev)]
            print(f"note: {len(rev)} regions switch the policy back after adopting ({', '.join(rev)}); "
                  "dropped (--reversals drop)")
        else:
            print(f"note: {len(rev)} regions switch the policy back after adopting ({', '.join(rev)}); they "
                  f"count as treated from their first adoption ({treat} is absorbing: intention to treat). "
                  "Use --reversals drop to remove them.")

    cases, deaths = build_panels(df, treat)
    n, t = cases.shape
    w = np.asarray(cases.w, bool)
    n_treated = int(w.any(axis=1).sum())
    steps = 20 if args.quick else args.steps
    max_groups = 3 if args.quick else args.max_groups
    if args.tune:  # 20 CV fits at the paper's 15 subproblems x 1000 steps would take hours on a CPU
        steps = TUNE_STEPS if steps is None else steps
        max_groups = TUNE_GROUPS if max_groups is None else max_groups
    max_groups = 6 if max_groups is None else max_groups
    overrides = {"max_groups": max_groups}
    if steps is not None:
        overrides["steps"] = steps
    if args.quick:
        overrides["covariates"] = cj.CovariateConfig(steps=20)
    config = cj.CodealConfig.paper_real_data(**overrides)
    os.makedirs(args.out, exist_ok=True)
    if args.tune:
        config = tune_both(jax.random.fold_in(jax.random.key(args.seed), 7), cases, config, args.out, args.quick)
    fit = cj.plan(cases, config)  # both outcomes share the treatment, hence the plan
    design = fit.design
    untreated = int((~w).sum())
    masked = masked_by_coarsening(w, design)
    print(f"policy: {what} ({treat}); panel {n} regions x {t} days "
          f"({cases.times[0]:%Y-%m-%d} .. {cases.times[-1]:%Y-%m-%d}), {n_treated} treated, "
          f"{n - n_treated} never treated")
    print(f"design: {design.r} groups (--max-groups {config.max_groups}) -> {design.r * (design.r - 1) // 2} "
          f"subproblems; coarsening imputes {masked} of {untreated} untreated cells "
          f"({100 * masked / untreated:.1f} %)")
    print(f"CoDEAL: K={config.rank}, {config.steps} steps, lr {config.learning_rate:g}, "
          f"covariate DNN {config.covariates.steps} steps; fitting cases and deaths together on "
          f"{jax.default_backend()} (compiles first) ...", flush=True)

    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), cases.without_labels(), deaths.without_labels())
    keys = jax.random.split(jax.random.key(args.seed), 2)
    t0 = time.perf_counter()
    both = jax.vmap(fit)(keys, stacked)
    jax.block_until_ready(both.y0_hat)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    res_cases, res_deaths = (jax.tree.map(lambda a, k=k: a[k], both) for k in range(2))

    print(f"\nRegions with the policy in effect on {cases.times[-1]:%Y-%m-%d}: {n_treated}")
    print(f"{'outcome':<8} {'actual':>12} {'counterfactual':>15} {'difference':>12} {'ratio':>7}  "
          f"{'ATT (log10)':>11}  status")
    for name, panel, res in (("cases", cases, res_cases), ("deaths", deaths, res_deaths)):
        actual, cf = last_day_totals(panel, res)
        status = cj.Status(int(res.status)).name
        print(f"{name:<8} {actual:>12,.0f} {cf:>15,.0f} {actual - cf:>+12,.0f} {actual / cf:>7.3f}  "
              f"{float(res.att):>+11.4f}  {status}")

    uc = tables.unit_table(cases, res_cases).rename(
        columns={"att": "att_log10_cases", "y_mean": "log10_cases_mean", "y0_hat_mean": "log10_cases_cf_mean"})
    ud = tables.unit_table(deaths, res_deaths)[["unit", "att", "y_mean", "y0_hat_mean"]].rename(
        columns={"att": "att_log10_deaths", "y_mean": "log10_deaths_mean", "y0_hat_mean": "log10_deaths_cf_mean"})
    units = uc.merge(ud, on="unit").rename(columns={"unit": "region_code"})
    units.to_csv(os.path.join(args.out, "unit_effects.csv"), index=False)
    lc = tables.long_table(cases, res_cases).rename(
        columns={"unit": "region_code", "time": "date", "outcome": "log10_cases", "y0_hat": "log10_cases_cf",
                 "effect": "effect_cases"})
    ld = tables.long_table(deaths, res_deaths)[["outcome", "y0_hat", "effect"]].rename(
        columns={"outcome": "log10_deaths", "y0_hat": "log10_deaths_cf", "effect": "effect_deaths"})
    pd.concat([lc, ld], axis=1).to_csv(os.path.join(args.out, "long.csv"), index=False)

    top = units.sort_values("att_log10_cases", ascending=False)
    print("\nlargest region effects on log10 cases: " + ", ".join(
        f"{r.region_code} {r.att_log10_cases:+.3f}" for r in top.head(5).itertuples()))
    print("smallest region effects on log10 cases: " + ", ".join(
        f"{r.region_code} {r.att_log10_cases:+.3f}" for r in top.tail(5).iloc[::-1].itertuples()))

    back = lambda v: 10.0**v  # noqa: E731  (log10 counts -> counts)
    out = Path(args.out)
    plots.plot_treatment(cases, out / "treatment.png", title=f"{what}: regions sorted by adoption date")
    for name, panel, res in (("cases", cases, res_cases), ("deaths", deaths, res_deaths)):
        plots.plot_trajectories(
            panel, res, agg="sum", transform=back, moving_average=14, log_y=True,
            path=out / f"trajectories_{name}.png", ylabel=f"cumulative {name} (sum over treated regions)",
            title=f"cumulative {name}, {n_treated} regions with the policy (14-day moving average)",
        )
    plots.plot_unit_effects(cases, res_cases, out / "unit_effects_cases.png", xlabel="ATT on log10 cumulative cases")
    print(f"\nwrote {out}/: treatment.png, trajectories_cases.png, trajectories_deaths.png, "
          "unit_effects_cases.png, unit_effects.csv, long.csv")
    return 0 if int(res_cases.status) == 0 and int(res_deaths.status) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
