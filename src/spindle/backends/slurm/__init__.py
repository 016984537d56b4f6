"""SLURM compute environments (see :mod:`spindle.backends.slurm.backend`)."""
