"""Simulation studies: the paper's DGPs and Configs 1-4, metrics, the Monte Carlo runner.

Modules: ``dgp`` (paper Table 1), ``spectral_dgp`` (the spectral estimator's
design), ``metrics``, ``paper`` (the paper's per-DGP method settings),
``runs`` (a study's methods), ``programmes`` (compiled chunk programmes),
``store`` (resumable records), ``results`` (tables), ``runner``
(:func:`run_study`) and ``coverage`` (:func:`coverage_study` of inference procedures).
"""

from .coverage import CoverageResult as CoverageResult
from .coverage import coverage_study as coverage_study
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
from .metrics import evaluate as evaluate
from .paper import paper_config as paper_config
from .paper import paper_methods as paper_methods
from .results import StudyResult as StudyResult
from .runner import load_study as load_study
from .runner import run_study as run_study
from .runs import MethodRun as MethodRun
from .spectral_dgp import SpectralDGPConfig as SpectralDGPConfig
from .spectral_dgp import SpectralTruth as SpectralTruth
from .spectral_dgp import simulate as simulate_spectral
from .spectral_dgp import spectral_metrics as spectral_metrics

__all__ = [
    "COVARIATES",
    "CoverageResult",
    "DESIGNS",
    "DGPConfig",
    "FACTORS",
    "METRICS",
    "MethodRun",
    "SpectralDGPConfig",
    "SpectralTruth",
    "StudyResult",
    "Truth",
    "adoption_start",
    "config_preset",
    "coverage_study",
    "draw_primitives",
    "evaluate",
    "load_study",
    "paper_config",
    "paper_methods",
    "run_study",
    "simulate",
    "simulate_spectral",
    "spectral_metrics",
    "treatment",
]
