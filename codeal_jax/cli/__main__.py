"""``python -m codeal_jax.cli``: the ``codeal-jax`` command."""

import sys

from . import main

sys.exit(main())
