"""Shared fixtures. Tests marked ``sim`` run the real LIBERO simulator (MuJoCo, EGL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.* helpers import the same way under any pytest launcher
    sys.path.insert(0, str(ROOT))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray instance (2 CPUs); actors find ``tests.*`` through PYTHONPATH."""
    import logging

    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="session", params=["fast", "robosuite"], ids=lambda p: f"physics={p}")
def spatial0(request):
    """A real libero_spatial task 0 environment (128 px, depth), shared by the sim tests.

    Parametrized over the two physics loops: every test that uses it runs on both, unless
    it narrows the params (``parametrize("spatial0", ["fast"], indirect=True)``).
    """
    import gymnasium as gym

    import para_bench  # noqa: F401 - registers the ids

    env = gym.make("para_bench/libero_spatial-0-v0", image_size=128, depth=True,
                   physics=request.param)
    yield env.unwrapped
    env.close()
