"""One study over one process and over two (``jax.distributed`` on 127.0.0.1), side by side.

    python -m benchmarks.bench_distributed                          # DiD, Config 2, 16 replications, chunks of 8
    python -m benchmarks.bench_distributed --methods did,mc_nnm --reps 64 --chunk-size 16

Each layout runs in fresh processes: one process with one CPU device, one process with two host
devices (the same parallelism without a second process), and two processes with one device each
(a coordinator port chosen free at run time). Every process runs ``run_study`` twice on the same
study: the first call compiles and runs, the second reuses the compiled programmes (steady state);
compilation is the difference. Start-up is the time from launching a process to its first
``run_study`` call (imports, ``jax.distributed.initialize``). The tables of all layouts must be equal.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

LAYOUTS = (("1 process x 1 device", 1, 1), ("1 process x 2 devices", 1, 2), ("2 processes x 1 device", 2, 1))
TIMEOUT_S = 1200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(args) -> int:
    """One process of a layout: times two ``run_study`` calls, process 0 prints them as JSON."""
    launched = float(os.environ["BENCH_LAUNCHED"])
    from codeal_jax.runtime import force_host_devices, start_distributed, tune_cpu

    tune_cpu()
    force_host_devices(args.local_devices)
    if args.num_processes > 1:
        start_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    from codeal_jax import sim

    dgp = sim.config_preset(args.config)
    runs = sim.paper_methods(args.methods.split(","), dgp, covariates=None)
    study = dict(covariates=None, chunk_size=args.chunk_size, progress=False)
    started = time.time() - launched
    first = sim.run_study(jax.random.key(0), dgp, runs, args.reps, out_dir=os.path.join(args.out, "first"), **study)
    second = sim.run_study(jax.random.key(0), dgp, runs, args.reps, out_dir=os.path.join(args.out, "second"), **study)
    if jax.process_index() == 0:
        same = first.data.equals(second.data)
        print(json.dumps({"start_s": started, "first_s": first.elapsed, "steady_s": second.elapsed,
                          "devices": len(jax.devices()), "same_twice": bool(same),
                          "table": second.table(("cf_mae", "cf_mse")).to_dict()}), flush=True)
    return 0


def launch(args, n_proc: int, n_local: int, out: str) -> dict:
    """Starts one layout's processes together and returns process 0's JSON record."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CODEAL_JAX_CACHE": "0", "BENCH_LAUNCHED": repr(time.time())}
    env.pop("XLA_FLAGS", None)
    port = str(_free_port())
    common = [sys.executable, "-m", "benchmarks.bench_distributed", "--worker", "--config", str(args.config),
              "--methods", args.methods, "--reps", str(args.reps), "--chunk-size", str(args.chunk_size),
              "--num-processes", str(n_proc), "--local-devices", str(n_local), "--coordinator", f"127.0.0.1:{port}",
              "--out", out]
    procs = [subprocess.Popen([*common, "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n_proc)]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        if p.returncode:
            raise RuntimeError(f"a worker failed ({p.returncode}):\n{stderr[-3000:]}")
        outs.append(stdout)
    return json.loads(outs[0].strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=int, default=2, choices=[1, 2, 3, 4], help="paper Config (default 2)")
    ap.add_argument("--methods", default="did", help="comma-separated method names (default did)")
    ap.add_argument("--reps", type=int, default=16)
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--local-devices", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.reps < 1 or args.chunk_size < 1:
        raise SystemExit("--reps and --chunk-size must be >= 1")

    import platform

    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, n_proc, n_local in LAYOUTS:
            rec = launch(args, n_proc, n_local, os.path.join(tmp, f"{n_proc}x{n_local}"))
            rows.append((name, rec))
    ref = rows[0][1]["table"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Config {args.config}, methods {args.methods}, {args.reps} replications, chunk {args.chunk_size}; "
          f"{cores} CPU cores usable, {platform.processor() or platform.machine()}; "
          f"1-min load average before {load:.2f}, after {os.getloadavg()[0]:.2f}")
    print()
    print("| layout | start-up s | first run_study s (compile + run) | steady run_study s | compile s (difference) "
          "| reps/s steady | table = 1-process table |")
    print("|---|---|---|---|---|---|---|")
    for name, rec in rows:
        print(f"| {name} | {rec['start_s']:.1f} | {rec['first_s']:.2f} | {rec['steady_s']:.2f} | "
              f"{rec['first_s'] - rec['steady_s']:.2f} | {args.reps / rec['steady_s']:.1f} | "
              f"{'yes' if rec['table'] == ref and rec['same_twice'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
