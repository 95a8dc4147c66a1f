"""Data-driven tuning: cross-validation on held-out untreated cells.

Modules: ``folds`` (:func:`cv_folds`: held-out blocks or cells, donut),
``search`` (:func:`tune`: a grid searched with the folds batched under ``vmap``;
:func:`with_fields`: a config with (dotted, nested) fields replaced), ``tuned``
(:class:`TunedConfig`: the registered method ``"tuned"``, cross-validation
inside the fit, for studies and resampling draws).
"""

from ..registry import register

from .folds import HOLDOUTS as HOLDOUTS
from .folds import cv_folds as cv_folds
from .search import Tuning as Tuning
from .search import tune as tune
from .search import with_fields as with_fields
from .tuned import TunedConfig as TunedConfig
from .tuned import TunedPlan as TunedPlan
from . import tuned

register(tuned.METHOD)

__all__ = ["HOLDOUTS", "TunedConfig", "TunedPlan", "Tuning", "cv_folds", "tune", "with_fields"]
