"""codeal_jax: fast heterogeneous treatment effects on panels by causal matrix completion.

Layers, each importing only from those before it (``docs/architecture.md``):
``runtime``; data (``panel``, ``design``, ``result``, ``estimands``); numerics
(``checks``, ``nets``, ``train``, ``linalg``, ``memory``, ``batching``); the driver (``covariates``,
``staggered``, ``contract``, ``registry``, ``driver``); the methods
(``methods/``); tuning (``tuning/``); inference (``inference/``); studies (``sim/``); I/O (``io/``);
the command line (``cli/``).
This module re-exports the public names.
"""

__version__ = "0.2.0"

from .contract import ImputationConfig as ImputationConfig
from .contract import Method as Method
from .contract import MethodConfig as MethodConfig
from .covariates import CovariateConfig as CovariateConfig
from .driver import Plan as Plan
from .driver import default_config as default_config
from .driver import estimate as estimate
from .driver import plan as plan
from .estimands import Effects as Effects
from .inference import Inference as Inference
from .inference import PretrendTest as PretrendTest
from .inference import infer as infer
from .inference import pretrend_test as pretrend_test
from .io.longdata import panel_from_long as panel_from_long
from .io.longdata import panel_to_long as panel_to_long
from .methods.aemc_ne import AEMCNEConfig as AEMCNEConfig
from .methods.codeal import CodealConfig as CodealConfig
from .methods.did import DiDConfig as DiDConfig
from .methods.mc_nnm import MCNNMConfig as MCNNMConfig
from .methods.single_ae import SingleAEConfig as SingleAEConfig
from .methods.spectral import SpectralConfig as SpectralConfig
from .methods.spectral import SpectralResult as SpectralResult
from .methods.spectral import difference_in_means as difference_in_means
from .methods.spectral import spectral as spectral
from .methods.vert_reg import VertRegConfig as VertRegConfig
from .panel import Panel as Panel
from .panel import effects as effects
from .registry import names as methods
from .registry import register as register
from .registry import unregister as unregister
from .result import Result as Result
from .result import Status as Status
from .runtime import enable_compilation_cache as enable_compilation_cache
from .runtime import start_distributed as start_distributed
from .runtime import tune_cpu as tune_cpu
from .tuning import TunedConfig as TunedConfig
from .tuning import Tuning as Tuning
from .tuning import cv_folds as cv_folds
from .tuning import tune as tune

__all__ = [
    "AEMCNEConfig",
    "CodealConfig",
    "CovariateConfig",
    "DiDConfig",
    "Effects",
    "ImputationConfig",
    "Inference",
    "MCNNMConfig",
    "Method",
    "MethodConfig",
    "Panel",
    "Plan",
    "PretrendTest",
    "Result",
    "SingleAEConfig",
    "SpectralConfig",
    "SpectralResult",
    "Status",
    "TunedConfig",
    "Tuning",
    "VertRegConfig",
    "cv_folds",
    "default_config",
    "difference_in_means",
    "effects",
    "enable_compilation_cache",
    "estimate",
    "infer",
    "methods",
    "panel_from_long",
    "panel_to_long",
    "plan",
    "pretrend_test",
    "register",
    "spectral",
    "start_distributed",
    "tune",
    "tune_cpu",
    "unregister",
]
