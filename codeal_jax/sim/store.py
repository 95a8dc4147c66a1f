"""A study on disk: ``settings.json`` plus one CSV per finished chunk, resumable on any machine.

Every finished chunk is written atomically (a temporary file, then a rename),
so a study killed at any moment resumes from its last finished chunk. Running
again with the same settings reads what is done; a directory written with
other settings is refused. Config fields that only change how work is batched
(:data:`EXECUTION_ONLY`; results agree to rounding) are recorded but not
compared, and fields a config class gained since a directory was written are
read as their defaults (:func:`backfill_defaults`). Settings of an older
format are read in today's terms (:func:`upgrade`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

from .. import registry

SETTINGS_FILE = "settings.json"
FORMAT = 2
# Config fields that change how work is batched, not what is computed: a study
# may resume under other values (tests/test_staggered.py checks exactness).
EXECUTION_ONLY = frozenset({"max_buckets", "batch_size"})
_CHUNK_RE = re.compile(r"^chunk_(\d+)-(\d+)\.csv$")


def jsonable(obj) -> Any:
    """JSON-normal form (dataclasses to dicts, tuples to lists) used to compare settings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {"__class__": type(obj).__name__, **{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}}
    return json.loads(json.dumps(obj, default=lambda o: jsonable(o) if dataclasses.is_dataclass(o) else repr(o)))


def _key_data(key: jax.Array) -> list[int]:
    """The raw bits of a (typed or raw) key, for ``settings.json``."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).ravel().tolist()


def study_settings(key, dgp, runs) -> dict:
    """The JSON settings of a study: format, key bits, DGP and every run's label, method and config."""
    return jsonable(
        {
            "format": FORMAT,
            "key": _key_data(key),
            "dgp": dgp,
            "methods": [{"label": r.label, "method": r.method, "config": r.config} for r in runs],
        }
    )


def upgrade(old: dict) -> dict:
    """Settings written in an older format, in today's terms (the same study).

    Format 1 (codeal_jax 0.1) stored the covariate removal of every run also
    at the top level (``"covariates"``, now each config's own), called the
    CoDEAL and Single AE rank ``latent_dim`` and the spectral ranks
    ``rank0``/``rank1``, and centred a baseline configured with ``"blocks"``
    by the controls' mean when fitting a staggered design per subproblem,
    which is what ``"auto"`` means today.
    """
    if not isinstance(old, dict) or old.get("format") != 1:
        return old
    new = {k: v for k, v in old.items() if k != "covariates"}
    methods = []
    for m in old.get("methods") or []:
        cfg = m.get("config") if isinstance(m, dict) else None
        if isinstance(cfg, dict) and m.get("method") in registry.names():
            cfg = dict(cfg)
            for before, now in registry.get(m["method"]).config.RENAMED.items():
                if before in cfg:
                    cfg[now] = cfg.pop(before)
            if "rank0" in cfg and "rank1" in cfg:
                cfg["rank"] = [cfg.pop("rank0"), cfg.pop("rank1")]
            if m["method"] != "codeal" and cfg.get("centering") == "blocks":
                cfg["centering"] = "auto"
            m = {**m, "config": cfg}
        methods.append(m)
    new["methods"] = methods
    new["format"] = FORMAT
    return new


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
        elif (default := _default(f)) is not _NO_DEFAULT and jsonable(value) == jsonable(default):
            out[f.name] = jsonable(value)
    return out


def _comparable(obj: Any) -> Any:
    """``obj`` (JSON-normal settings) without the :data:`EXECUTION_ONLY` fields."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k not in EXECUTION_ONLY}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def atomic_write(path: str, text: str) -> None:
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


def differences(out_dir: str, new: dict, dgp, configs: Sequence) -> list[str] | None:
    """The settings in which ``out_dir``'s study differs from ``new`` ([] if none; None if it has none).

    ``dgp`` and ``configs`` (the study's config objects) fill in fields added
    to their classes after the directory was written (:func:`backfill_defaults`).
    """
    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        old = upgrade(json.load(fh))
    if isinstance(old, dict):
        old["dgp"] = backfill_defaults(old.get("dgp"), dgp)
        methods = old.get("methods")
        if isinstance(methods, list) and len(methods) == len(configs):
            old["methods"] = [
                {**m, "config": backfill_defaults(m.get("config"), c)} if isinstance(m, dict) else m
                for m, c in zip(methods, configs)
            ]
    old, now = _comparable(old), _comparable(new)
    if not isinstance(old, dict):
        return ["format"]
    return sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))


def open_dir(out_dir: str, new: dict, dgp, configs: Sequence, *, write: bool = True) -> pd.DataFrame | None:
    """Checks or writes ``settings.json``; returns the rows of finished chunks (None if there are none).

    Args:
      write: create the directory and its ``settings.json`` if missing (False:
        only read, as every process of a multi-process study but process 0 does).

    Raises:
      ValueError: if the directory holds a study with other settings (:func:`differences`).
    """
    if write:
        os.makedirs(out_dir, exist_ok=True)
    diff = differences(out_dir, new, dgp, configs)
    if diff is None and write:
        atomic_write(os.path.join(out_dir, SETTINGS_FILE), json.dumps(new, indent=2, sort_keys=True))
    elif diff:
        raise ValueError(
            f"{out_dir!r} holds a study with different settings (differing: {diff}); "
            "use another out_dir or delete it to start over"
        )
    return read_chunks(out_dir)


def read_chunks(out_dir: str) -> pd.DataFrame | None:
    """Every finished chunk's rows in ``out_dir`` (None if there are none)."""
    if not os.path.isdir(out_dir):
        return None
    frames = [
        pd.read_csv(os.path.join(out_dir, name), dtype={"method": str})
        for name in sorted(os.listdir(out_dir))
        if _CHUNK_RE.match(name)
    ]
    return pd.concat(frames, ignore_index=True) if frames else None


def write_chunk(out_dir: str, rows: pd.DataFrame) -> None:
    """Writes one finished chunk's rows (named by its first and last replication)."""
    reps = rows["rep"].to_numpy()
    name = f"chunk_{reps.min():06d}-{reps.max():06d}.csv"
    atomic_write(os.path.join(out_dir, name), rows.to_csv(index=False))
