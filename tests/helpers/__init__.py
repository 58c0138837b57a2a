"""Shared test helpers: tiny seeded artifacts (series, sweeps, models) and service starters (Slurm).

Example:
    >>> from helpers.sweep import MICRO   # the reduced embedded study the end-to-end tests run
    >>> any(o.startswith("train.") for o in MICRO)
    True
"""
