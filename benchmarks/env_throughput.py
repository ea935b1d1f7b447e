"""Env steps per second on libero_spatial task 0, as ratios measured in one run.

Rendering (control steps per second, 128x128):

(a) LIBERO's ``OffScreenRenderEnv`` rendering 128x128 agent view + wrist every step, the
    way LIBERO's evaluate.py and LeRobot's eval run it;
(b) ``LiberoEnv`` (fast render, fast physics) rendering every step (``env.step``);
(c) ``LiberoEnv`` with delta chunks of 8, rendering once per chunk (``step_chunk``), with
    the fast physics loop and with robosuite's own;
(e) ``LiberoEnv`` with ``render_quality="libero"`` rendering every step.

Physics only (no rendering), measured side by side on the same scene, interleaved in
rounds (median): (d1) robosuite's ``env.step``; (d2) the fast loop
(:class:`~para_bench.envs.physics.FastControlLoop`); (d3) the physical limit, raw
``mj_step`` x 25 per control step (no controller at all: the torques stay as they are).

End to end (f): a model agent (``para``, a randomly initialised checkpoint: its cost per
call is what matters, not its success; its targets clipped into the workspace) evaluated
through the runner's episode loop on ``in_dist`` libero_spatial/0 (servo, one render per
chunk), once per physics loop, episodes interleaved; control steps per second of wall time
(reset, policy, physics, rendering).

Usage: ``python benchmarks/env_throughput.py [--steps 200] [--episodes 2]
[--episode-steps 200]``. Prints a table and writes ``benchmarks/results/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
ROUNDS = 5


def _rate(fn, steps: int) -> float:
    fn(5)  # warm-up
    t0 = time.perf_counter()
    fn(steps)
    return steps / (time.perf_counter() - t0)


def _physics_rows(steps: int, zero: np.ndarray) -> dict[str, float]:
    """(d1)-(d3): physics-only control steps per second, interleaved rounds, medians."""
    import mujoco

    from para_bench.envs.libero_env import LiberoEnv

    envs = {p: LiberoEnv("libero_spatial", 0, image_size=128, physics=p, max_steps=10**6)
            for p in ("robosuite", "fast")}
    for env in envs.values():
        env.reset(seed=0, options={"init_state": 0})
    rs_step, fast_step = envs["robosuite"]._rs.step, envs["fast"]._fast.step
    sim = envs["fast"]._rs.sim
    raw_data = mujoco.MjData(sim.model._model)  # its own copy of the scene's state
    mujoco.mj_copyData(raw_data, sim.model._model, sim.data._data)
    substeps = int(envs["fast"]._rs.control_timestep / envs["fast"]._rs.model_timestep)

    def raw(n):
        for _ in range(n * substeps):
            mujoco.mj_step(sim.model._model, raw_data)

    fns = {"d1_physics_robosuite_env_step": lambda n: [rs_step(zero) for _ in range(n)],
           "d2_physics_fast_loop": lambda n: [fast_step(zero) for _ in range(n)],
           "d3_physics_raw_mj_step_x25": raw}
    samples = {k: [] for k in fns}
    per_round = max(1, steps // ROUNDS)
    for _ in range(ROUNDS):
        for key, fn in fns.items():
            samples[key].append(_rate(fn, per_round))
    for env in envs.values():
        env.close()
    return {k: float(np.median(v)) for k, v in samples.items()}


class _InWorkspace:
    """An agent whose target chunks are clipped into the control path's workspace box: a
    randomly initialised model points anywhere, and the runner ends an episode on a target
    outside the box; the benchmark needs full-length episodes (clipping costs microseconds).
    """

    def __init__(self, agent) -> None:
        self.agent, self.requirements = agent, agent.requirements

    def reset(self, task: dict, seed: int) -> None:
        self.agent.reset(task, seed)

    def act(self, obs: dict, info: dict):
        from para_bench.envs.control import TARGET_WORKSPACE
        from para_bench.types import as_action_chunk

        chunk = as_action_chunk(self.agent.act(obs, info))
        if chunk.targets is not None:
            chunk.targets = np.clip(chunk.targets, *TARGET_WORKSPACE)
        return chunk


def _end_to_end_rows(episodes: int, episode_steps: int) -> dict[str, float]:
    """(f): a model agent through the runner's episode loop, per physics loop."""
    import torch
    from policy_latency import random_policy_agent

    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.evaluation.episode import run_episode
    from para_bench.suites import get_suite

    torch.set_num_threads(1)
    plan = get_suite("in_dist").plan("test", tasks=["libero_spatial/0"], episodes=episodes)
    with tempfile.TemporaryDirectory() as tmp:
        agent = _InWorkspace(random_policy_agent("para", Path(tmp), np.random.default_rng(0)))
    req = agent.requirements
    envs = {p: LiberoEnv("libero_spatial", 0, image_size=req.image_size or 128,
                         control="servo", max_steps=episode_steps, physics=p)
            for p in ("robosuite", "fast")}
    run_episode(envs["fast"], agent, plan[0])  # warm-up (torch, numba)
    steps = {p: 0 for p in envs}
    seconds = {p: 0.0 for p in envs}
    for spec in plan:
        for physics, env in envs.items():
            t0 = time.perf_counter()
            out = run_episode(env, agent, spec)
            seconds[physics] += time.perf_counter() - t0
            steps[physics] += out.steps
    for env in envs.values():
        env.close()
    return {f"f_end_to_end_para_{p}": steps[p] / seconds[p] for p in envs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--episodes", type=int, default=2, help="end-to-end episodes per loop")
    ap.add_argument("--episode-steps", type=int, default=200,
                    help="max control steps of an end-to-end episode")
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

    for quality, physics in (("fast", "fast"), ("fast", "robosuite"), ("libero", "fast")):
        env = LiberoEnv("libero_spatial", 0, image_size=128, render_quality=quality,
                        max_steps=10**6, physics=physics)
        env.reset(seed=0, options={"init_state": 0})

        def run_every(n, env=env):
            for _ in range(n):
                env.step(zero)

        def run_chunks(n, env=env):
            for _ in range(max(1, n // 8)):
                env.step_chunk(np.tile(zero, (8, 1)))

        if quality == "libero":
            rates["e_para_bench_libero_quality_every_step"] = _rate(run_every, args.steps)
        elif physics == "fast":
            rates["b_para_bench_render_every_step"] = _rate(run_every, args.steps)
            rates["c_para_bench_chunk8_fast"] = _rate(run_chunks, args.steps)
        else:
            rates["c_para_bench_chunk8_robosuite"] = _rate(run_chunks, args.steps)
        env.close()
    rates.update(_physics_rows(args.steps, zero))
    rates.update(_end_to_end_rows(args.episodes, args.episode_steps))

    ref = rates["a_libero_render_every_step"]
    print(f"{'setting':<42} {'steps/s':>8} {'x (a)':>7}")
    for k, v in rates.items():
        print(f"{k:<42} {v:8.1f} {v / ref:7.2f}")
    speedups = {
        "chunk8_fast_vs_robosuite": rates["c_para_bench_chunk8_fast"]
        / rates["c_para_bench_chunk8_robosuite"],
        "physics_fast_vs_robosuite": rates["d2_physics_fast_loop"]
        / rates["d1_physics_robosuite_env_step"],
        "physics_raw_vs_robosuite": rates["d3_physics_raw_mj_step_x25"]
        / rates["d1_physics_robosuite_env_step"],
        "end_to_end_fast_vs_robosuite": rates["f_end_to_end_para_fast"]
        / rates["f_end_to_end_para_robosuite"],
    }
    for k, v in speedups.items():
        print(f"{k:<42} {v:8.2f}x")
    out = Path(__file__).parent / "results" / "env_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "steps_per_s": rates,
                               "ratio_to_a": {k: v / ref for k, v in rates.items()},
                               "speedups": speedups}, indent=2))


if __name__ == "__main__":
    main()
