"""Env steps per second on libero_spatial task 0, as ratios measured in one run.

(a) LIBERO's ``OffScreenRenderEnv`` rendering 128x128 agent view + wrist every step, the
    way LIBERO's evaluate.py and LeRobot's eval run it;
(b) ``LiberoEnv`` (fast render) rendering every step (``env.step``);
(c) ``LiberoEnv`` with chunks of 8, rendering once per chunk (``step_chunk``);
(d) physics only (no rendering at all);
(e) ``LiberoEnv`` with ``render_quality="libero"`` rendering every step.

Usage: ``python benchmarks/env_throughput.py [--steps 200]``. Prints a table and writes
``benchmarks/results/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _rate(fn, steps: int) -> float:
    fn(5)  # warm-up
    t0 = time.perf_counter()
    fn(steps)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()

    from libero.libero.envs.env_wrapper import OffScreenRenderEnv

    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.envs.tasks import get_task, load_init_states

    task = get_task("libero_spatial", 0)
    init = load_init_states("libero_spatial", 0)[0]
    zero = np.zeros(7)
    zero[6] = -1
    rates = {}

    stock = OffScreenRenderEnv(bddl_file_name=task.bddl_path, camera_heights=128,
                               camera_widths=128)
    stock.reset()
    stock.set_init_state(init)

    def run_stock(n):
        for _ in range(n):
            stock.step(zero)

    rates["a_libero_render_every_step"] = _rate(run_stock, args.steps)
    stock.close()

    for quality in ("fast", "libero"):
        env = LiberoEnv("libero_spatial", 0, image_size=128, render_quality=quality,
                        max_steps=10**6)
        env.reset(seed=0, options={"init_state": 0})

        def run_every(n, env=env):
            for _ in range(n):
                env.step(zero)

        key = "b_para_bench_render_every_step" if quality == "fast" else \
            "e_para_bench_libero_quality_every_step"
        rates[key] = _rate(run_every, args.steps)
        if quality == "fast":
            def run_chunks(n, env=env):
                for _ in range(max(1, n // 8)):
                    env.step_chunk(np.tile(zero, (8, 1)))

            rates["c_para_bench_chunk8"] = _rate(run_chunks, args.steps)

            def run_physics(n, env=env):
                for _ in range(n):
                    env._control_step(zero, render=False)

            rates["d_physics_only"] = _rate(run_physics, args.steps)
        env.close()

    ref = rates["a_libero_render_every_step"]
    print(f"{'setting':<42} {'steps/s':>8} {'x (a)':>7}")
    for k, v in rates.items():
        print(f"{k:<42} {v:8.1f} {v / ref:7.2f}")
    out = Path(__file__).parent / "results" / "env_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "steps_per_s": rates,
                               "ratio_to_a": {k: v / ref for k, v in rates.items()}}, indent=2))


if __name__ == "__main__":
    main()
