"""The method settings the paper's simulation study used for a given DGP."""

from __future__ import annotations

import dataclasses

from .. import registry
from ..driver import UNSET, configure
from .dgp import DGPConfig


def paper_config(method: str, dgp: DGPConfig, covariates=UNSET):
    """``method``'s default config with the paper's per-DGP choices.

    The paper gives every method that takes a rank the DGP's true rank, and
    CoDEAL on a staggered design uses the staggered script's decoders (two
    hidden layers).

    Args:
      method: a registered method name.
      dgp: the study's DGP.
      covariates: optional covariate removal (``"dnn"``, the default of every
        config, ``"linear"`` or None).
    """
    cfg = configure(method=method, covariates=covariates)
    if registry.get(method).has_rank:
        cfg = dataclasses.replace(cfg, rank=dgp.rank)
    if method == "codeal" and dgp.design == "staggered":
        cfg = dataclasses.replace(cfg, decoder_hidden=(64, 64))
    return cfg


def paper_methods(methods, dgp: DGPConfig, covariates=UNSET) -> list[tuple[str, object]]:
    """``[(name, config), ...]`` of :func:`paper_config` for :func:`codeal_jax.sim.run_study`."""
    return [(m, paper_config(m, dgp, covariates)) for m in methods]
