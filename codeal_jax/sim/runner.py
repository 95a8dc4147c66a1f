"""The Monte Carlo runner: simulate, fit every method and score, replications batched.

For each chunk of replications one jit-compiled program draws the data and a
second fits every method for all replications of the chunk with ``jax.vmap``
(the fit programme depends only on the panel's shapes and treatment pattern, so
DGPs of the same sizes share its compilation); the
replications of a chunk are split across devices with ``jax.sharding`` (a
``Mesh`` over the devices). Replication j always uses the key
``fold_in(key, j)``, so results do not depend on the chunk size, the number of
devices or on which chunks were resumed from disk.

With ``out_dir`` every finished chunk is written atomically as a CSV (one row
per replication and method) next to a JSON of the settings; running again with
the same settings resumes, and a directory written with other settings is
refused. Config fields that only change how the work is batched (e.g.
``max_buckets``; the results agree to rounding) are recorded but not compared.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import tempfile
import time
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .. import api, memory
from .dgp import DGPConfig, draw_primitives, outcomes, simulate, treatment
from .metrics import METRICS, evaluate

SETTINGS_FILE = "settings.json"
# Config fields that change how work is batched, not what is computed: a study
# may resume under other values (tests/test_staggered.py checks exactness).
EXECUTION_ONLY = frozenset({"max_buckets"})
_CHUNK_RE = re.compile(r"^chunk_(\d+)-(\d+)\.csv$")
_FORMAT = 1
DEFAULT_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """One method of a study: its label in the tables, registry name and config."""

    label: str
    method: str
    config: Any = None


@dataclasses.dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
      data: one row per replication and method: ``rep``, ``method`` (the
        label), ``status`` and every metric of :data:`~codeal_jax.sim.METRICS`.
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

    def table(self, metrics: Sequence[str] = ("cf_mse", "cf_mae"), digits: int = 3) -> pd.DataFrame:
        """``"mean (se)"`` strings, methods by metrics, as printed in the paper."""
        s = self.summary()
        return pd.DataFrame(
            {m: [f"{a:.{digits}f} ({b:.{digits}f})" for a, b in zip(s[m], s[f"{m}_se"])] for m in metrics},
            index=s.index,
        )


def _method_runs(methods) -> list[MethodRun]:
    """Normalises ``methods``: names, ``(name, config)`` or ``(label, name, config)``."""
    if isinstance(methods, (str, MethodRun)):
        methods = [methods]
    runs = []
    for m in methods:
        if isinstance(m, MethodRun):
            runs.append(m)
        elif isinstance(m, str):
            runs.append(MethodRun(m, m))
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            runs.append(MethodRun(m[0], m[0], m[1]))
        elif isinstance(m, (tuple, list)) and len(m) == 3:
            runs.append(MethodRun(*m))
        else:
            raise ValueError(f"a method must be a name, (name, config) or (label, name, config); got {m!r}")
    if not runs:
        raise ValueError("methods is empty")
    for r in runs:
        if r.method not in api.METHODS:
            raise ValueError(f"unknown method {r.method!r}; choose from {sorted(api.METHODS)}")
    labels = [r.label for r in runs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate method labels {dup}; name them with (label, name, config) triples")
    return runs


def _jsonable(obj) -> Any:
    """JSON-normal form (dataclasses to dicts, tuples to lists) used to compare settings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {"__class__": type(obj).__name__, **{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}}
    return json.loads(json.dumps(obj, default=lambda o: _jsonable(o) if dataclasses.is_dataclass(o) else repr(o)))


def _key_data(key: jax.Array) -> list[int]:
    """The raw bits of a (typed or raw) key, for ``settings.json``."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).ravel().tolist()


def _structure(dgp: DGPConfig) -> tuple:
    """What the fit programme depends on: shapes and the treatment pattern.

    DGPs that differ only in their generators (factor, covariate, noise, tau)
    share one compiled fit programme.
    """
    return (dgp.n_units, dgp.n_periods, dgp.n_covariates, treatment(dgp).tobytes())


def _mesh_shardings(devices: tuple):
    mesh = Mesh(np.asarray(devices), ("reps",))
    return NamedSharding(mesh, PartitionSpec("reps")), NamedSharding(mesh, PartitionSpec())


@functools.lru_cache(maxsize=64)
def _data_programme(dgp: DGPConfig, devices: tuple):
    """``(key, idx (C,)) -> (panels, truths)``: replication j's data from ``fold_in(key, j)``."""
    split, replicated = _mesh_shardings(devices)

    def one(key, j):
        k_data, _ = jax.random.split(jax.random.fold_in(key, j))
        return outcomes(draw_primitives(k_data, dgp), dgp)

    return jax.jit(jax.vmap(one, in_axes=(None, 0)), in_shardings=(replicated, split), out_shardings=split)


_FIT_CACHE: dict = {}


def _fit_programme(structure: tuple, sample_dgp: DGPConfig, runs: tuple[MethodRun, ...], covariates, devices: tuple):
    """Resolves every method once and builds ``(key, idx, panels, truths) -> metrics``.

    Cached on the panel structure (not the generators: ``sample_dgp`` only
    supplies a panel of that structure), so a table of DGPs with the same
    sizes compiles its fits once.
    """
    cache_key = (structure, runs, covariates, devices)
    if cache_key not in _FIT_CACHE:
        if len(_FIT_CACHE) >= 16:
            _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
        _FIT_CACHE[cache_key] = _build_fit_programme(sample_dgp, runs, covariates, devices)
    return _FIT_CACHE[cache_key]


def _build_fit_programme(sample_dgp: DGPConfig, runs: tuple[MethodRun, ...], covariates, devices: tuple):
    sample, _ = simulate(jax.random.PRNGKey(0), sample_dgp)
    fits = []
    for run in runs:
        fit, config = api.resolve(sample, run.method, covariates, run.config)
        fits.append((run.label, fit, config))
    split, replicated = _mesh_shardings(devices)

    def one(key, j, panel, truth):
        _, k_fit = jax.random.split(jax.random.fold_in(key, j))
        # Every method sees the same fit key: common random numbers, and a
        # method's numbers do not depend on which other methods run.
        return {label: evaluate(panel, truth, fit(k_fit, panel, config)) for label, fit, config in fits}

    fn = jax.jit(
        jax.vmap(one, in_axes=(None, 0, 0, 0)),
        in_shardings=(replicated, split, split, split),
        out_shardings=split,
    )
    return fn, [c for _, _, c in fits]


def _programme(dgp: DGPConfig, runs: tuple[MethodRun, ...], covariates, devices: tuple):
    """The chunk programme: data, then fits, each compiled once and reused.

    Returns:
      ``(chunk_fn, resolved_configs, sharding)`` where ``chunk_fn(key, idx)``
      maps a (C,) array of replication indices to {label: {metric: (C,)}}.
    """
    data_fn = _data_programme(dgp, devices)
    fit_fn, configs = _fit_programme(_structure(dgp), dgp, runs, covariates, devices)

    def chunk_fn(key, idx):
        panels, truths = data_fn(key, idx)
        return fit_fn(key, idx, panels, truths)

    return chunk_fn, configs, _mesh_shardings(devices)[0]


def _settings(key, dgp, runs, configs, covariates) -> dict:
    return _jsonable(
        {
            "format": _FORMAT,
            "key": _key_data(key),
            "dgp": dgp,
            "covariates": covariates,
            "methods": [{"label": r.label, "method": r.method, "config": c} for r, c in zip(runs, configs)],
        }
    )


_NO_DEFAULT = object()


def _default(field: dataclasses.Field) -> Any:
    """A dataclass field's default (``_NO_DEFAULT`` if it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _NO_DEFAULT


def backfill_defaults(old: Any, obj: Any) -> Any:
    """``old`` (a config read back from ``settings.json``) with the fields that
    ``obj``'s class has gained since, where ``obj`` holds their defaults.

    A study written before a config field existed ran with that field's
    default, so asking for the default again is the same study; a non-default
    value stays missing from ``old`` and the settings differ.
    """
    if not (dataclasses.is_dataclass(obj) and isinstance(old, dict)):
        return old
    out = dict(old)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in out:
            out[f.name] = backfill_defaults(out[f.name], value)
        elif (default := _default(f)) is not _NO_DEFAULT and _jsonable(value) == _jsonable(default):
            out[f.name] = _jsonable(value)
    return out


def _comparable(obj: Any) -> Any:
    """``obj`` (JSON-normal settings) without the :data:`EXECUTION_ONLY` fields."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k not in EXECUTION_ONLY}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def _atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file in the same directory, then renames it."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _open_dir(out_dir: str, settings: dict, dgp: DGPConfig, configs: Sequence) -> pd.DataFrame | None:
    """Checks or writes ``settings.json``; returns the rows of finished chunks.

    ``dgp`` and ``configs`` (the study's config objects) fill in fields added
    to their classes after the directory was written (:func:`backfill_defaults`).
    """
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if isinstance(old, dict):
            old["dgp"] = backfill_defaults(old.get("dgp"), dgp)
            methods = old.get("methods")
            if isinstance(methods, list) and len(methods) == len(configs):
                old["methods"] = [
                    {**m, "config": backfill_defaults(m.get("config"), c)} if isinstance(m, dict) else m
                    for m, c in zip(methods, configs)
                ]
        old, new = _comparable(old), _comparable(settings)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"{out_dir!r} holds a study with different settings (differing: {diff}); "
                "use another out_dir or delete it to start over"
            )
    else:
        _atomic_write(path, json.dumps(settings, indent=2, sort_keys=True))
    frames = [
        pd.read_csv(os.path.join(out_dir, name), dtype={"method": str})
        for name in sorted(os.listdir(out_dir))
        if _CHUNK_RE.match(name)
    ]
    return pd.concat(frames, ignore_index=True) if frames else None


def _rows(out: dict, idx: np.ndarray, n_real: int, labels: list[str]) -> pd.DataFrame:
    """Host-side table of one chunk's metrics (padding dropped)."""
    out = jax.device_get(out)
    frames = []
    for label in labels:
        m = out[label]
        cols = {"rep": idx[:n_real], "method": label, "status": np.asarray(m["status"][:n_real], np.int64)}
        cols.update({name: np.asarray(m[name][:n_real], np.float64) for name in METRICS})
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def _sorted(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    order = {label: i for i, label in enumerate(labels)}
    df = df.drop_duplicates(["rep", "method"], keep="first")
    df = df.assign(_o=df["method"].map(order)).sort_values(["rep", "_o"]).drop(columns="_o")
    return df.reset_index(drop=True)[["rep", "method", "status", *METRICS]]


MEMORY_HEADROOM = 0.8  # share of the free memory a chunk may plan to use


def _fit_memory(key, dgp, runs, covariates, devices: tuple, chunk: int, auto: bool) -> int:
    """Sizes the fit programme before running it; shrinks or refuses a chunk that would not fit.

    XLA's memory analysis of the compiled chunk (per device) is compared with
    the device's free memory (the host's for CPUs). The compilation is the one
    the study needs anyway (the call that follows reuses it).

    Returns:
      ``chunk`` when it fits (or the backend reports nothing); with ``auto`` a
      smaller chunk that fits.

    Raises:
      ValueError: an explicit ``chunk_size`` that does not fit, or not even one
        replication per device fits; the message says how much is needed.
    """
    n_dev = len(devices)
    width = -(-chunk // n_dev) * n_dev
    need = _chunk_bytes(key, dgp, runs, covariates, devices, width)
    free = memory.available_bytes(devices[0])
    if need is None or free is None:
        return chunk
    budget = int(free * MEMORY_HEADROOM)
    if need <= budget:
        return chunk
    per_rep = -(-need // (width // n_dev))  # per device; the fixed part counted per replication: conservative
    if not auto:
        raise ValueError(
            f"chunk_size={chunk} needs about {memory.format_bytes(need)} per device but "
            f"{memory.format_bytes(budget)} is available; pass a smaller chunk_size (about "
            f"{max(budget // per_rep, 1) * n_dev}) or leave it unset to choose one automatically"
        )
    return memory.choose_chunk(per_rep * n_dev, chunk, budget * n_dev, multiple_of=n_dev)


def _chunk_bytes(key, dgp, runs, covariates, devices: tuple, width: int) -> int | None:
    """Per-device bytes of the fit programme on a chunk of ``width`` replications."""
    data_fn = _data_programme(dgp, devices)
    fit_fn, _ = _fit_programme(_structure(dgp), dgp, tuple(runs), covariates, devices)
    split, _ = _mesh_shardings(devices)
    idx = jax.ShapeDtypeStruct((width,), np.uint32, sharding=split)
    panels, truths = jax.eval_shape(data_fn, key, idx)
    place = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=split)
    try:
        stats = fit_fn.lower(key, idx, jax.tree.map(place, panels), jax.tree.map(place, truths)).compile()
        stats = stats.memory_analysis()
        return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                   - stats.alias_size_in_bytes)
    except (NotImplementedError, AttributeError, TypeError):  # backends without the analysis
        return None


def run_study(
    key: jax.Array,
    dgp_config: DGPConfig,
    methods,
    reps: int,
    *,
    covariates: str | None = "dnn",
    chunk_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> StudyResult:
    """Runs a Monte Carlo study: ``reps`` replications of ``dgp_config``, every method on each.

    Args:
      key: PRNG key of the study; replication j uses ``fold_in(key, j)`` (split
        into a data key and a fit key shared by all methods).
      dgp_config: the data-generating process (e.g. ``config_preset(1)``).
      methods: method names from ``codeal_jax.api.METHODS``, ``(name, config)``
        pairs, or ``(label, name, config)`` triples to run one method with
        several configs.
      reps: number of replications.
      covariates: covariate removal for every method (``"dnn"``, ``"linear"``
        or None), as in :func:`codeal_jax.estimate`.
      chunk_size: replications per compiled call, rounded up to a multiple
        of the device count; bounds memory. Default: min(reps, 64), reduced
        automatically when XLA's memory analysis of the compiled chunk says it
        would not fit the free device (or host) memory; an explicit chunk that
        would not fit is refused with the bytes it needs.
      devices: devices to shard the replications over (default: all local
        devices).
      out_dir: optional directory for resumable results: ``settings.json`` and
        one ``chunk_<first>-<last>.csv`` per finished chunk.
      progress: show a tqdm progress bar.

    Returns:
      A :class:`StudyResult` (per-replication ``data``, ``summary()``,
      ``table()``, ``failures``).

    Raises:
      ValueError: for bad arguments, a method that cannot handle the design, or
        an ``out_dir`` written with different settings.
    """
    start_time = time.perf_counter()
    if not isinstance(dgp_config, DGPConfig):
        raise ValueError(f"dgp_config must be a DGPConfig, got {type(dgp_config).__name__}")
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    reps = int(reps)
    runs = _method_runs(methods)
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty")
    n_dev = len(devices)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    chunk_fn, configs, split = _programme(dgp_config, tuple(runs), covariates, devices)
    labels = [r.label for r in runs]
    settings = _settings(key, dgp_config, runs, configs, covariates)

    done = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        done = _open_dir(out_dir, settings, dgp_config, configs)
    finished = set() if done is None else set(done["rep"].astype(int))
    todo = np.asarray([j for j in range(reps) if j not in finished], np.int64)
    frames = [] if done is None else [done[done["rep"] < reps]]

    auto = chunk_size is None
    chunk_size = min(reps, DEFAULT_CHUNK) if auto else int(chunk_size)
    if len(todo):  # the memory check compiles; a finished study needs no compilation
        chunk_size = _fit_memory(key, dgp_config, runs, covariates, devices, chunk_size, auto)
    width = -(-chunk_size // n_dev) * n_dev  # padded chunk: a multiple of the device count

    with tqdm(total=reps, initial=reps - len(todo), disable=not progress, desc="replications", unit="rep") as bar:
        for lo in range(0, len(todo), int(chunk_size)):
            idx = todo[lo : lo + int(chunk_size)]
            padded = np.concatenate([idx, np.full(width - len(idx), idx[-1])]).astype(np.uint32)
            out = chunk_fn(key, jax.device_put(padded, split))
            rows = _rows(out, idx, len(idx), labels)
            if out_dir is not None:
                name = f"chunk_{idx[0]:06d}-{idx[-1]:06d}.csv"
                _atomic_write(os.path.join(out_dir, name), rows.to_csv(index=False))
            frames.append(rows)
            bar.update(len(idx))

    data = _sorted(pd.concat(frames, ignore_index=True), labels)
    return StudyResult(data=data, settings=settings, elapsed=time.perf_counter() - start_time)
