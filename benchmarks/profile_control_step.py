"""cProfile of control steps on one scene: where a control step's time goes.

Profiles ``LiberoEnv`` executing delta chunks of 8 with one render per chunk (the way an
evaluation runs), and robosuite's own ``env.step`` on the same scene, and prints the top
of each profile by cumulative and by internal time.

Usage: ``python benchmarks/profile_control_step.py [--steps 160] [--physics fast robosuite]
[--top 25]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _print_top(prof: cProfile.Profile, title: str, top: int) -> None:
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        print(f"==== {title}, sorted by {key}")
        print(out.getvalue().split("\n", 4)[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=160, help="control steps per profile")
    ap.add_argument("--physics", nargs="+", default=None, choices=("fast", "robosuite"),
                    help="LiberoEnv physics loops to profile (default: every one)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.envs.physics import PHYSICS_LOOPS

    rng = np.random.default_rng(0)
    chunks = rng.uniform(-0.3, 0.3, (args.steps // 8, 8, 7))
    chunks[..., 6] = -1.0
    for loop in args.physics or PHYSICS_LOOPS:
        env = LiberoEnv("libero_spatial", 0, image_size=128, max_steps=10**6, physics=loop)
        env.reset(seed=0, options={"init_state": 0})
        env.step_chunk(chunks[0])  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        for chunk in chunks:
            env.step_chunk(chunk)
        prof.disable()
        _print_top(prof, f"LiberoEnv physics={loop}: {len(chunks) * 8} delta steps, chunks "
                         "of 8, one render per chunk", args.top)
        if loop == "robosuite":
            rs = env._rs
            prof = cProfile.Profile()
            prof.enable()
            for chunk in chunks:
                for a in chunk:
                    rs.step(a)
            prof.disable()
            _print_top(prof, f"robosuite env.step called directly (camera gated off): "
                             f"{len(chunks) * 8} steps", args.top)
        env.close()


if __name__ == "__main__":
    main()
