"""Gymnasium ids ``para_bench/<benchmark>-<task_id>-v0`` for every task of LIBERO's five suites.

Registration imports nothing heavy: the task counts are fixed here and checked against
LIBERO's own task map by the tests.
"""

from __future__ import annotations

BENCHMARK_SIZES: dict[str, int] = {
    "libero_spatial": 10,
    "libero_object": 10,
    "libero_goal": 10,
    "libero_10": 10,
    "libero_90": 90,
}
ENTRY_POINT = "para_bench.envs.libero_env:LiberoEnv"


def env_id(benchmark: str, task_id: int) -> str:
    """The Gymnasium id of one task, e.g. ``para_bench/libero_spatial-0-v0``."""
    return f"para_bench/{benchmark}-{task_id}-v0"


def register_envs() -> None:
    """Registers every task id with Gymnasium (idempotent)."""
    import gymnasium as gym

    for benchmark, n in BENCHMARK_SIZES.items():
        for task_id in range(n):
            eid = env_id(benchmark, task_id)
            if eid in gym.registry:
                continue
            gym.register(
                id=eid,
                entry_point=ENTRY_POINT,
                kwargs={"benchmark": benchmark, "task_id": task_id},
                disable_env_checker=True,
            )
