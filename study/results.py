"""The public entry to the results: ``study.results.load(runs_dir, profile)`` (see ``study.report.results``)."""
from .report.results import MissingRuns, View, attempt, load

__all__ = ["MissingRuns", "View", "attempt", "load"]
