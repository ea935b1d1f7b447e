"""Perturbation suites: versioned, serialisable specs that expand to fixed episode plans."""

from para_bench.suites.spec import SuiteSpec, get_suite, list_suites

__all__ = ["SuiteSpec", "get_suite", "list_suites"]
