"""Experiments: an experiment file -> cached stages (collect, train, evaluate) -> a report.

``para-bench experiment run|status|report FILE``; see :mod:`~para_bench.experiment.spec`
for the file format, :mod:`~para_bench.experiment.stages` for the stages and their keys,
:mod:`~para_bench.experiment.scheduler` for running them and
:mod:`~para_bench.experiment.report` for the report. Importing this package is cheap (no
torch, no simulator).
"""

from para_bench.experiment.spec import ExperimentError, ExperimentSpec, load_experiment

__all__ = ["ExperimentError", "ExperimentSpec", "load_experiment"]
