"""CoDEAL's autoencoder with its per-unit decoders split over host devices: does a fit use both cores?

Usage (from the repository root):
  python -m benchmarks.bench_shard [--devices 2 --units 200 --periods 120 --keys 3 --repeats 5]

XLA:CPU runs a batched matmul (the stacked decoders' products) on one thread,
but it runs each host device's share of a programme on its own thread. This
script forces ``--devices`` host devices (before JAX starts), then times the
autoencoder stage of a four-block CoDEAL fit (paper settings, no covariate
stage, no block layout) on a simulated Config 2 panel (half the units treated
from the middle period) two ways, side by side:

- ``one device``: ``codeal.fit_autoencoder`` as the library runs it;
- ``decoders split``: the same initialisation, loss, optimiser and steps
  (composed from ``init_autoencoder``, ``apply_autoencoder``,
  ``masked_mse`` and ``train``), the decoder stack and the panel's rows
  constrained to lie split over the devices along the unit axis; XLA
  partitions the programme (the shared encoder's gradient becomes a sum over
  devices).

It prints compile and steady-state times (medians, ``block_until_ready``),
their ratio, and the counterfactual MAE of each on the treated cells of
``--keys`` panels, beside the difference between the library's fit and the
same fit under ``vmap`` (another programme with other rounding): splitting
the sum over devices changes the float32 rounding of every step, and Adam
carries such differences forward, so the two fits agree statistically, not
digit for digit. This is a measurement of a lever, not a library option yet.
"""

from __future__ import annotations

import argparse
import statistics
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=2, help="host devices to force (default 2)")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--periods", type=int, default=120)
    ap.add_argument("--keys", type=int, default=3, help="panels whose MAE is compared (default 3)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from codeal_jax import runtime

    runtime.force_host_devices(args.devices)  # before JAX's backend exists
    runtime.tune_cpu()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from codeal_jax import sim
    from codeal_jax.methods import codeal
    from codeal_jax.train import masked_mse, train

    from . import _timing as tm

    if len(jax.devices()) < args.devices:
        print(f"only {len(jax.devices())} devices: set XLA_FLAGS before anything starts JAX", file=sys.stderr)
        return 2
    mesh = Mesh(np.array(jax.devices()[: args.devices]), ("units",))
    by_unit = NamedSharding(mesh, PartitionSpec("units"))
    cfg = codeal.CodealConfig()  # the paper's four-block settings, K = 3 (Config 2's rank)

    def library(key, y, mask):
        return codeal.fit_autoencoder(key, y, mask, cfg)[0]

    def split(key, y, mask):
        y, mask = (jax.lax.with_sharding_constraint(a, by_unit) for a in (y, mask))
        present = jnp.sum(jnp.any(mask, axis=1))
        params = codeal.init_autoencoder(key, y.shape[0], cfg, fan_in=present)
        params["decoders"] = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, by_unit), params["decoders"])
        loss = lambda p: masked_mse(codeal.apply_autoencoder(p, y), y, mask)
        params, _ = train(loss, params, optax.adam(cfg.learning_rate), cfg.steps)
        return codeal.apply_autoencoder(params, y)

    one, two = jax.jit(library), jax.jit(split)
    batched = jax.jit(jax.vmap(library, in_axes=(None, 0, 0)))
    dgp = sim.config_preset(2, n_units=args.units, n_periods=args.periods, n_control=args.units // 2,
                            t_pre=args.periods // 2, covariate="none", n_covariates=0)

    def panel(seed):
        p, truth = sim.simulate(jax.random.key(seed), dgp)
        mask = jnp.asarray(p.observed) & ~jnp.asarray(p.w)
        return jnp.where(mask, p.y, 0.0), mask, jnp.asarray(truth.y0), jnp.asarray(p.w)

    y, mask, _, _ = panel(0)
    key = jax.random.key(1)
    rows = []
    for name, fn in (("one device", one), ("decoders split", two)):
        compile_s = tm.compile_seconds(fn, key, y, mask)
        _, median, runs = tm.time_call(fn, key, y, mask, repeats=args.repeats)
        rows.append((name, compile_s, median, runs))
    # A second round, so the ratio is not one moment of a shared machine.
    again = [statistics.median(tm.time_call(fn, key, y, mask, repeats=args.repeats)[2]) for fn in (one, two)]

    maes = {"one device": [], "decoders split": [], "one device under vmap": []}
    gaps = {"decoders split": [], "one device under vmap": []}
    for seed in range(args.keys):
        y, mask, y0, w = panel(seed)
        outs = {"one device": one(key, y, mask), "decoders split": two(key, y, mask),
                "one device under vmap": batched(key, y[None], mask[None])[0]}
        for name, out in outs.items():
            maes[name].append(float(jnp.sum(jnp.abs(out - y0) * w) / jnp.sum(w)))
            if name != "one device":
                gaps[name].append(float(jnp.sum(jnp.abs(out - outs["one device"]) * w) / jnp.sum(w)))

    print(f"Machine: {tm.machine()}; {len(jax.devices())} host devices")
    print(f"CoDEAL autoencoder stage, four-block Config 2 panel N = {args.units}, T = {args.periods}, paper settings "
          f"(K = 3, 50 Adam steps), no covariate stage; medians of {args.repeats} calls, two rounds\n")
    print("| programme | compile s | steady s (round 1) | steady s (round 2) |")
    print("|---|---:|---:|---:|")
    for (name, compile_s, median, _), second in zip(rows, again):
        print(f"| {name} | {compile_s:.1f} | {median:.3f} | {second:.3f} |")
    speed = [rows[0][2] / rows[1][2], again[0] / again[1]]
    print(f"\none device / decoders split: {speed[0]:.2f}x, {speed[1]:.2f}x")
    print(f"\ncounterfactual MAE on the treated cells over {args.keys} panels (one fit each, same key):\n")
    print("| fit | MAE per panel | mean | mean abs difference from the one-device fit |")
    print("|---|---|---:|---:|")
    for name, vals in maes.items():
        gap = f"{statistics.mean(gaps[name]):.4f}" if name in gaps else ""
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in vals)} | {statistics.mean(vals):.4f} | {gap} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
