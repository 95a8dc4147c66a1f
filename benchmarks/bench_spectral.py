"""Rate study and speed of the row-scaled spectral estimator.

Rate (reference section 7 design, oracle ranks):
  S1 balanced n = m: row-wise RMS error slope in n (theory: -0.5);
  S3 plateau: n fixed, m growing: slope close to that of sqrt(1/n + n/m^2);
  S5 per-unit averages vs m: spectral row means, the stacked projection and
     the plain difference in means (all about m^-0.5).
Speed: the estimator (exact thin SVD) at n = m next to two jnp.linalg.svd
calls of the same size (the floor: the estimator needs one SVD per arm), and
the crossover between the exact and the randomized SVD.

The estimator is ``codeal_jax.methods.spectral.fit`` (pure, unjitted), jitted
here with its config static: inside each replication's programme for the
rate study, on its own for the timings.

Usage (from the repository root):
  python -m benchmarks.bench_spectral            # full (~8 min on a 2-core CPU)
  python -m benchmarks.bench_spectral --quick    # smaller grids, ~2 min
  python -m benchmarks.bench_spectral --skip-rate --append   # add a speed section for another backend
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from codeal_jax.methods.spectral import SpectralConfig, difference_in_means, fit, randomized_svd
from codeal_jax.sim.spectral_dgp import SpectralDGPConfig, simulate, spectral_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "spectral.md")
FIGURE = os.path.join(HERE, "figures", "spectral_rate.png")


# ----------------------------------------------------------------------------- rate study


def replication_fn(n: int, m: int):
    """A jitted function key -> metrics for one replication at size (n, m)."""
    dgp = SpectralDGPConfig(n_units=n, n_periods=m)
    r0, r1 = dgp.ranks
    # Randomized SVD (like the reference's truncated svds): the exact SVD of a
    # 3200 x 3200 matrix takes minutes on a 2-core CPU. Tests check agreement.
    cfg = SpectralConfig(rank=(r0, r1), unit_effect="stacked", svd="randomized", power_iters=3)

    @jax.jit
    def one(key):
        k_sim, k_fit = jax.random.split(key)
        panel, truth = simulate(k_sim, dgp)
        res = fit(k_fit, panel, cfg)
        row_mean = jnp.mean(res.effects, axis=1)
        out = spectral_metrics(res.effects, row_mean, truth)
        out["tau_stacked_rms"] = jnp.sqrt(jnp.mean((res.unit_effect - truth.unit_effect) ** 2))
        out["tau_dm_rms"] = jnp.sqrt(jnp.mean((difference_in_means(panel) - truth.unit_effect) ** 2))
        out["status"] = res.status
        return out

    return one


def run_grid(points, reps: int, seed: int):
    rows = []
    for n, m in points:
        one = replication_fn(n, m)
        keys = jax.random.split(jax.random.PRNGKey(seed + 1000 * n + m), reps)
        t0 = time.perf_counter()
        outs = [jax.device_get(one(k)) for k in keys]  # a loop keeps memory at one replication
        row = {k: float(np.mean([o[k] for o in outs])) for k in outs[0] if k != "status"}
        row.update(n=n, m=m, bad=int(sum(int(o["status"]) != 0 for o in outs)), secs=time.perf_counter() - t0)
        rows.append(row)
        print(f"  n={n:5d} m={m:5d} row_rms={row['row_rms']:.4f} row_max={row['row_max']:.3f} "
              f"tau={row['tau_rms']:.4f} stacked={row['tau_stacked_rms']:.4f} dm={row['tau_dm_rms']:.4f} "
              f"({row['secs']:.1f}s)", flush=True)
    return rows


def slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def bound(n, m):
    return np.sqrt(1.0 / np.asarray(n, float) + np.asarray(n, float) / np.asarray(m, float) ** 2)


def rate_study(quick: bool, seed: int, figure: str):
    reps = 2 if quick else 5
    s1_sizes = [100, 200, 400, 800] if quick else [200, 400, 800, 1600, 3200]
    n_fix = 200 if quick else 400
    s3_ms = [n_fix * f for f in ((1, 2, 4, 8) if quick else (1, 2, 4, 8, 16))]
    print(f"S1 balanced n = m, {reps} replications", flush=True)
    s1 = run_grid([(n, n) for n in s1_sizes], reps, seed)
    print(f"S3 n = {n_fix}, m growing", flush=True)
    s3 = run_grid([(n_fix, m) for m in s3_ms], reps, seed)

    n1 = [r["n"] for r in s1]
    m3 = [r["m"] for r in s3]
    slopes = {
        "S1 row_rms vs n (n = m)": (slope(n1, [r["row_rms"] for r in s1]), -0.5, "[-0.65, -0.40]"),
        "S1 row_max vs n (n = m)": (slope(n1, [r["row_max"] for r in s1]), -0.5, "(log factors)"),
        f"S3 row_rms vs m (n = {n_fix})": (
            slope(m3, [r["row_rms"] for r in s3]), slope(m3, bound(n_fix, m3)), "(within 0.1)"),
        f"S5 tau_rms (row means) vs m (n = {n_fix})": (slope(m3, [r["tau_rms"] for r in s3]), -0.5, "[-0.6, -0.4]"),
        f"S5 tau_rms (stacked) vs m (n = {n_fix})": (slope(m3, [r["tau_stacked_rms"] for r in s3]), -0.5, "[-0.6, -0.4]"),
        f"S5 tau_rms (diff. in means) vs m (n = {n_fix})": (slope(m3, [r["tau_dm_rms"] for r in s3]), -0.5, "[-0.6, -0.4]"),
        "S5 tau_rms (row means) vs n (n = m)": (slope(n1, [r["tau_rms"] for r in s1]), -0.5, ""),
    }
    print("\nlog-log slopes:")
    for name, (got, want, tol) in slopes.items():
        print(f"  {name:48s} {got:+.3f}  (expected {want:+.3f} {tol})")
    write_plot(s1, s3, n_fix, figure)
    return s1, s3, slopes, reps


def write_plot(s1, s3, n_fix, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    n = np.array([r["n"] for r in s1], float)
    ax = axes[0]
    for key, mark in (("row_rms", "o-"), ("row_max", "s-")):
        ax.loglog(n, [r[key] for r in s1], mark, label=key)
    ref = s1[0]["row_rms"] * np.sqrt(n[0] / n)
    ax.loglog(n, ref, "k--", label="slope -1/2")
    ax.set(xlabel="n = m", ylabel="error of the effect rows", title="S1: balanced")
    ax.legend()

    m = np.array([r["m"] for r in s3], float)
    ax = axes[1]
    ax.loglog(m, [r["row_rms"] for r in s3], "o-", label="row_rms")
    b = bound(n_fix, m)
    ax.loglog(m, s3[0]["row_rms"] * b / b[0], "k--", label="sqrt(1/n + n/m^2), scaled")
    ax.set(xlabel=f"m (n = {n_fix})", title="S3: plateau in m")
    ax.legend()

    ax = axes[2]
    for key, mark, lab in (("tau_rms", "o-", "spectral row means"), ("tau_stacked_rms", "s-", "stacked projection"),
                           ("tau_dm_rms", "^-", "difference in means")):
        ax.loglog(m, [r[key] for r in s3], mark, label=lab)
    ax.loglog(m, s3[0]["tau_dm_rms"] * np.sqrt(m[0] / m), "k--", label="slope -1/2")
    ax.set(xlabel=f"m (n = {n_fix})", ylabel="RMS error of tau_i", title="S5: per-unit averages")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- speed


# A call slower than this is timed once: its first run after the ahead-of-time
# compilation is already steady state, and repeating it costs minutes.
LONG_CALL_S = 30.0


def timed(fn, args, reps: int):
    """(compile seconds, median steady-state seconds) of ``jax.jit(fn)`` (``fn`` closes over static configs)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))  # warm-up
    warm = time.perf_counter() - t0
    if warm > LONG_CALL_S:
        return compile_s, warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times)


def arm_matrix(panel, arm: int) -> jax.Array:
    """The row-scaled matrix 1{D = arm} Y / p_i(arm) whose SVD the estimator takes."""
    in_arm = panel.w if arm == 1 else ~panel.w
    p = jnp.mean(in_arm, axis=1, keepdims=True)
    return jnp.where(in_arm, panel.y, 0.0) / p


def speed_study(sizes, reps: int, max_svd_s: float):
    key = jax.random.PRNGKey(0)
    exact = SpectralConfig()
    rand = SpectralConfig(svd="randomized")
    rows, last = [], None
    for n in sizes:
        if last is not None and last[1] * (n / last[0]) ** 3 > max_svd_s:
            proj = last[1] * (n / last[0]) ** 3
            print(f"  n={n}: skipped (one SVD projected at {proj:.0f}s > --max-svd-seconds {max_svd_s:.0f})")
            rows.append(dict(n=n, skipped=proj))
            continue
        panel, _ = simulate(key, SpectralDGPConfig(n_units=n, n_periods=n))
        # The floor: thin SVDs of the estimator's own two row-scaled arm matrices
        # (SVD time depends on the spectrum, so raw outcomes would not do).
        arms = [arm_matrix(panel, a) for a in (0, 1)]
        c_svd, t_svd = timed(lambda a0, a1: (jnp.linalg.svd(a0, full_matrices=False),
                                             jnp.linalg.svd(a1, full_matrices=False)), arms, reps)
        t_svd /= 2
        c_est, t_est = timed(lambda k, p: fit(k, p, exact), (key, panel), reps)
        c_rnd, t_rnd = timed(lambda k, p: fit(k, p, rand), (key, panel), reps)
        last = (n, t_svd)
        row = dict(n=n, svd=t_svd, floor=2 * t_svd, est=t_est, ratio=t_est / (2 * t_svd), rnd=t_rnd,
                   c_est=c_est, c_rnd=c_rnd)
        rows.append(row)
        print(f"  n=m={n}: estimator {t_est:.4f}s, 2 x svd {2 * t_svd:.4f}s (ratio {row['ratio']:.2f}), "
              f"randomized estimator {t_rnd:.4f}s; compile {c_est:.1f}s / {c_rnd:.1f}s", flush=True)
    return rows


def crossover_study(sizes, ks, k_size: int, reps: int, max_svd_s: float):
    """Exact thin SVD vs randomized top-k SVD: time and accuracy of the rank-k part."""
    key = jax.random.PRNGKey(1)

    def matrix(n):
        panel, _ = simulate(key, SpectralDGPConfig(n_units=n, n_periods=n))
        return arm_matrix(panel, 1)

    def rank_k(u, s, vt, k):
        return jnp.matmul(u[:, :k] * s[:k], vt[:k], precision=jax.lax.Precision.HIGHEST)

    rows = []
    for n, k in [(n, 4) for n in sizes] + [(k_size, k) for k in ks]:
        if any(r["n"] == n and r["k"] == k for r in rows):
            continue
        done = [(r["n"], r["exact"]) for r in rows]
        if done and max(t * (n / m) ** 3 for m, t in done) > max_svd_s:
            print(f"  n={n} k={k}: skipped (exact SVD projected over --max-svd-seconds)")
            continue
        a = matrix(n)
        ce, te = timed(lambda a: jnp.linalg.svd(a, full_matrices=False), (a,), reps)
        cr, tr = timed(lambda a: randomized_svd(key, a, k, 10, 2), (a,), reps)
        ue, se, ve = jnp.linalg.svd(a, full_matrices=False)
        ur, sr, vr = randomized_svd(key, a, k, 10, 2)
        # Excess residual of the randomized rank-k part over the optimal (Eckart-Young) one.
        best = jnp.linalg.norm(a - rank_k(ue, se, ve, k))
        err = float(jnp.linalg.norm(a - rank_k(ur, sr, vr, k)) / best - 1.0)
        rows.append(dict(n=n, k=k, exact=te, rnd=tr, speedup=te / tr, err=err))
        print(f"  n={n} k={k}: exact {te:.4f}s randomized {tr:.4f}s (x{te / tr:.1f}), excess residual {err:.1e}",
              flush=True)
    return rows


# ----------------------------------------------------------------------------- report


def rate_markdown(s1, s3, slopes, reps, quick):
    lines = [f"### Rate study ({'quick' if quick else 'full'}; reference section 7 design, oracle ranks, "
             f"{reps} replications per point, randomized SVD with 3 power iterations)", ""]
    lines += ["| sweep | n | m | row_rms | row_max | tau_rms (row means) | tau_rms (stacked) | tau_rms (DM) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rows in (("S1", s1), ("S3", s3)):
        for r in rows:
            lines.append(f"| {name} | {r['n']} | {r['m']} | {r['row_rms']:.4f} | {r['row_max']:.3f} | "
                         f"{r['tau_rms']:.4f} | {r['tau_stacked_rms']:.4f} | {r['tau_dm_rms']:.4f} |")
    lines += ["", "| log-log slope | measured | expected |", "| --- | ---: | --- |"]
    for name, (got, want, tol) in slopes.items():
        lines.append(f"| {name} | {got:+.3f} | {want:+.3f} {tol} |")
    lines += ["", f"![rate](../figures/{os.path.basename(FIGURE)})", ""]
    return lines


def speed_markdown(speed, cross, k_size, reps):
    dev = jax.devices()[0]
    lines = [f"### Speed on {dev.platform.upper()} ({dev.device_kind}), median of {reps} runs after a warm-up "
             f"(calls over {LONG_CALL_S:.0f} s: the first run after compilation)", ""]
    lines += ["| n = m | estimator (exact) s | 2 x jnp.linalg.svd of the arm matrices s (floor) | ratio | estimator (randomized) s | "
              "compile exact / randomized s |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in speed:
        if "skipped" in r:
            lines.append(f"| {r['n']} | skipped | (one SVD projected at {r['skipped']:.0f} s) | | | |")
        else:
            lines.append(f"| {r['n']} | {r['est']:.4f} | {r['floor']:.4f} | {r['ratio']:.2f} | {r['rnd']:.4f} | "
                         f"{r['c_est']:.1f} / {r['c_rnd']:.1f} |")
    lines += ["", "Exact thin SVD vs randomized top-k SVD (oversample 10, 2 power iterations) of a row-scaled "
              "arm matrix (signal rank 4, then a flat noise bulk); excess = ||A - A_k(rand)||_F / ||A - A_k||_F - 1:",
              "", "| n = m | k | exact s | randomized s | speed-up | excess residual |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in cross:
        lines.append(f"| {r['n']} | {r['k']} | {r['exact']:.4f} | {r['rnd']:.4f} | {r['speedup']:.1f} | {r['err']:.1e} |")
    lines.append("")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller grids and fewer replications")
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--append", action="store_true", help="append to the results file instead of rewriting it")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--figure", default=FIGURE)
    ap.add_argument("--speed-sizes", default="500,1000,2000,4000")
    ap.add_argument("--max-svd-seconds", type=float, default=20.0,
                    help="skip speed sizes whose single SVD is projected (n^3) to take longer")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per speed point (median)")
    ap.add_argument("--cross-sizes", default="50,100,200,500,1000,2000,4000",
                    help="n = m of the exact-vs-randomized rows at k = 4 (empty: none)")
    ap.add_argument("--cross-k-size", type=int, default=2000, help="n = m of the sweep in k")
    ap.add_argument("--cross-ks", default="16,64,256,512", help="ranks k of the sweep in k")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    cmd = "python -m benchmarks.bench_spectral " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = []
    if not args.append:
        lines += ["# Row-scaled spectral estimator: rate study and speed", "",
                  f"Backend: {jax.devices()[0].platform.upper()} ({jax.devices()[0].device_kind}). Timings are "
                  "indicative (on CPU: 2 cores shared with other jobs). "
                  f"Command: `{cmd.strip()}`.", ""]
    else:
        lines += [f"Command: `{cmd.strip()}`.", ""]
    if not args.skip_rate:
        s1, s3, slopes, reps = rate_study(args.quick, args.seed, args.figure)
        lines += rate_markdown(s1, s3, slopes, reps, args.quick)
    if not args.skip_speed:
        sizes = [int(s) for s in args.speed_sizes.split(",")]
        if args.quick:
            sizes = [s for s in sizes if s <= 500]
        reps = args.repeats
        print("speed: estimator vs two SVDs", flush=True)
        speed = speed_study(sizes, reps, args.max_svd_seconds)
        cross_sizes = [int(s) for s in args.cross_sizes.split(",") if s.strip()]
        ks = [int(s) for s in args.cross_ks.split(",") if s.strip()]
        k_size = args.cross_k_size
        if args.quick:
            cross_sizes, ks, k_size = [s for s in cross_sizes if s <= 500], [16, 64, 128], 500
        print("crossover: exact vs randomized SVD", flush=True)
        cross = crossover_study(cross_sizes, ks, k_size, reps, args.max_svd_seconds)
        lines += speed_markdown(speed, cross, k_size, reps)
    lines.append(f"Total wall time of this run: {time.perf_counter() - t_start:.0f} s.")
    lines.append("")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a" if args.append else "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
