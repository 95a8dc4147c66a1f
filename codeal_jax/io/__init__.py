"""Tables in and out: long-format panels, CSV files, result tables and figures (host side)."""

from .longdata import panel_from_long as panel_from_long
from .longdata import panel_to_long as panel_to_long
from .tables import long_table as long_table
from .tables import unit_table as unit_table
