"""`python -m imgcluster.cli` runs the command, as the `imgcluster` script does."""

from . import script

script()
