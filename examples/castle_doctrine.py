"""Standard errors on a public panel, side by side with a peer: castle-doctrine laws and homicides.

    pip install causaldata                          # the data: Cheng & Hoekstra (2013), 50 states, 2000-2010
    python examples/castle_doctrine.py
    python examples/castle_doctrine.py --peer-python /path/to/venv/bin/python   # with diff-diff installed there

The outcome is log homicides per 100,000; 21 states adopt a castle-doctrine law between 2006 and
2010, 29 never do. The estimator is imputation DiD on all untreated cells at once
(``DiDConfig(staggered="whole")``, Borusyak, Jaravel & Spiess), the estimator peers report; its
standard error comes from codeal_jax's placebo and conformal draws on all 50 states, and from the
stratified bootstrap and the jackknife on the 48 states outside the two one-state cohorts (2006 and
2010: a stratum of one unit cannot be resampled). With ``--peer-python``, diff-diff's
``ImputationDiD`` (analytic SE clustered by state) runs on the same data in that interpreter (keep
peers out of codeal_jax's environment).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PEER = """
import json, sys
from causaldata import castle
from diff_diff import ImputationDiD
df = castle.load_pandas().data[["sid", "year", "l_homicide", "post"]].copy()
df["first_treat"] = df.sid.map(df[df.post == 1].groupby("sid").year.min()).fillna(0).astype(int)
out = {}
for name, d in (("50", df), ("48", df[~df.first_treat.isin([2006, 2010])])):
    r = ImputationDiD(cluster="sid").fit(d, outcome="l_homicide", unit="sid", time="year", first_treat="first_treat")
    out[name] = [float(r.overall_att), float(r.overall_se)]
print(json.dumps(out))
"""


def load():
    try:
        from causaldata import castle
    except ImportError:
        sys.exit("this example reads the castle-doctrine panel of the causaldata package: pip install causaldata")
    return castle.load_pandas().data[["sid", "year", "l_homicide", "post"]].copy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default=None, help="an interpreter with diff-diff and causaldata installed")
    ap.add_argument("--draws", type=int, default=200, help="bootstrap and placebo draws (conformal: 39)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import jax

    import codeal_jax as cj

    cj.tune_cpu()
    cj.enable_compilation_cache(announce=True)  # a second run loads the compiled fits
    df = load()
    first = df[df.post == 1].groupby("sid").year.min()
    panels = {
        "50": cj.panel_from_long(df, unit="sid", time="year", outcome="l_homicide", treatment="post"),
        "48": cj.panel_from_long(df[~df.sid.map(first).isin([2006, 2010])], unit="sid", time="year",
                                 outcome="l_homicide", treatment="post"),
    }
    config = cj.DiDConfig(staggered="whole", covariates=cj.CovariateConfig(method="none"))
    key = jax.random.key(args.seed)
    rows = []
    for states, procedures in (("50", (("placebo", args.draws), ("conformal", 39))),
                               ("48", (("bootstrap", args.draws), ("jackknife", None)))):
        for procedure, draws in procedures:
            res = cj.infer(key, panels[states], config, procedure=procedure, draws=draws)
            rows.append((states, f"codeal_jax {procedure} ({res.n_draws} draws)", float(res.estimate.att),
                         float(res.se.att), float(res.ci_low.att), float(res.ci_high.att)))
    if args.peer_python:
        out = subprocess.run([args.peer_python, "-c", PEER], capture_output=True, text=True, check=True)
        for states, (att, se) in json.loads(out.stdout.strip().splitlines()[-1]).items():
            rows.append((states, "diff-diff ImputationDiD, analytic SE clustered by state", att, se,
                         att - 1.959964 * se, att + 1.959964 * se))
    print("| states | standard error from | ATT | SE | 95% interval |")
    print("|---|---|---:|---:|---|")
    for states, what, att, se, lo, hi in sorted(rows, key=lambda r: r[0], reverse=True):
        print(f"| {states} | {what} | {att:.5f} | {se:.4f} | [{lo:.4f}, {hi:.4f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
