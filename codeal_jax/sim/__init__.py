"""Simulation study: the paper's DGPs and Configs 1-4, metrics, the Monte Carlo runner."""

import importlib.util as _importlib_util

from .dgp import COVARIATES as COVARIATES
from .dgp import DESIGNS as DESIGNS
from .dgp import FACTORS as FACTORS
from .dgp import DGPConfig as DGPConfig
from .dgp import Truth as Truth
from .dgp import adoption_start as adoption_start
from .dgp import config_preset as config_preset
from .dgp import draw_primitives as draw_primitives
from .dgp import simulate as simulate
from .dgp import treatment as treatment
from .metrics import METRICS as METRICS
from .paper import paper_config as paper_config
from .paper import paper_methods as paper_methods
from .metrics import evaluate as evaluate
from .runner import MethodRun as MethodRun
from .runner import StudyResult as StudyResult
from .runner import run_study as run_study

# The spectral estimator's DGP is written separately; export its public names
# when it is present, renaming those that clash with the CoDEAL DGP's (the
# integration pass fixes the explicit list).
if _importlib_util.find_spec(f"{__name__}.spectral_dgp") is not None:
    from . import spectral_dgp as spectral_dgp

    for _name in ("SpectralDGPConfig", "SpectralTruth", "spectral_metrics"):
        if hasattr(spectral_dgp, _name):
            globals()[_name] = getattr(spectral_dgp, _name)
    if hasattr(spectral_dgp, "simulate"):
        simulate_spectral = spectral_dgp.simulate
