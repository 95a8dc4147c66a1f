"""Data-driven tuning: cross-validation on held-out untreated cells.

Modules: ``folds`` (:func:`cv_folds`: held-out blocks or cells, donut),
``search`` (:func:`tune`: a grid searched with the folds batched under ``vmap``;
:func:`with_fields`: a config with (dotted, nested) fields replaced).
"""

from .folds import HOLDOUTS as HOLDOUTS
from .folds import cv_folds as cv_folds
from .search import Tuning as Tuning
from .search import tune as tune
from .search import with_fields as with_fields

__all__ = ["HOLDOUTS", "Tuning", "cv_folds", "tune", "with_fields"]
