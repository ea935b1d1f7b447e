"""Run folders, tables and plots computed from episode records.

The record store is imported eagerly (it is light); the pandas-based tables and the
matplotlib plots load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from para_bench.results.store import ResultsFormatError, RunStore, find_runs

_LAZY = {
    "records_frame": "tables",
    "summary_table": "tables",
    "format_table": "tables",
    "to_markdown": "tables",
    "paired_comparison": "tables",
    "plot_comparison": "plots",
}

__all__ = ["ResultsFormatError", "RunStore", "find_runs", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"para_bench.results.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
