"""Shared fixtures. Tests marked ``sim`` run the real LIBERO simulator (MuJoCo, EGL)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def spatial0():
    """One real libero_spatial task 0 environment (128 px, depth), shared by the sim tests."""
    import gymnasium as gym

    import para_bench  # noqa: F401 - registers the ids

    env = gym.make("para_bench/libero_spatial-0-v0", image_size=128, depth=True)
    yield env.unwrapped
    env.close()
