"""The methods of a study: each a label for the tables, a registry name and a config."""

from __future__ import annotations

import dataclasses

from .. import registry
from ..contract import MethodConfig
from ..driver import UNSET, configure


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """One method of a study: its label in the tables, registry name and config (None: the default)."""

    label: str
    method: str
    config: MethodConfig | None = None


def method_runs(methods, covariates=UNSET) -> tuple[MethodRun, ...]:
    """Normalises a study's ``methods`` into runs with their configs resolved.

    Args:
      methods: a method name, a config, a :class:`MethodRun`, or a sequence
        of those and of ``(name, config)`` pairs and ``(label, name, config)``
        triples (to run one method with several configs).
      covariates: optional covariate removal for every run, applied to
        default configs and checked against explicit ones
        (:func:`codeal_jax.driver.configure`).

    Returns:
      The runs, each with its config (never an explicit one overridden).

    Raises:
      ValueError: for an unknown method, a malformed entry, a conflicting
        ``covariates`` or duplicate labels.
    """
    if isinstance(methods, (str, MethodRun, MethodConfig)):
        methods = [methods]
    runs = []
    for m in methods:
        if isinstance(m, MethodConfig):
            m = MethodRun(registry.method_of(m).name, registry.method_of(m).name, m)
        elif isinstance(m, str):
            m = MethodRun(m, m)
        elif isinstance(m, (tuple, list)) and len(m) in (2, 3):
            m = MethodRun(m[0], m[0], m[1]) if len(m) == 2 else MethodRun(*m)
        elif not isinstance(m, MethodRun):
            raise ValueError(f"a method must be a name, a config, (name, config) or (label, name, config); got {m!r}")
        runs.append(dataclasses.replace(m, config=configure(m.config, method=m.method, covariates=covariates)))
    if not runs:
        raise ValueError("methods is empty")
    labels = [r.label for r in runs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"duplicate method labels {dup}; name them with (label, name, config) triples")
    return tuple(runs)
