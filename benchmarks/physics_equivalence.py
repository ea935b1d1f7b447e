"""The fast physics loop against robosuite's own: the simulator's state, step by step.

For each task the same driver runs on two ``LiberoEnv``s, ``physics="robosuite"`` and
``physics="fast"``, from the same reset seeds and init states (LIBERO re-samples fixture
placement jitter at every reset from the seed, so the scenes are the same):

* ``oracle``: the oracle's episodes (servo, chunks of 8, one render per chunk), one after
  the other (next init state) until ``--steps`` control steps have run;
* ``random``: the ``random`` agent's uniform deltas in [-1, 1] (chunks of 8), episodes of
  at most 200 steps, until ``--steps`` control steps have run.

After every control step it records the simulator's own state (``qpos``, ``qvel``), the
EEF (grip site), every object's and fixture's position, LIBERO's success, and whether the
robot touches anything but itself; after every chunk the whole observation (agent-view
frame, wrist frame with ``--wrist``, proprioception). It reports the largest deviations
over all steps and before the robot's first contact in each episode, the steps whose
success differs, and whether every observation is bit-identical.

Usage: ``python benchmarks/physics_equivalence.py [--tasks libero_spatial/0 ...]
[--drivers oracle random] [--steps 600] [--wrist]``. Prints a table and writes
``benchmarks/results/physics_equivalence.json``. ``tests/test_sim_physics.py`` runs a
reduced version.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

TASKS = ("libero_spatial/0", "libero_spatial/4", "libero_object/2", "libero_goal/1",
         "libero_goal/8", "libero_goal/7")
RANDOM_EPISODE_STEPS = 200


@dataclass
class Rollout:
    """Per-control-step records of one driver on one env (all episodes, concatenated)."""

    qpos: list = field(default_factory=list)
    qvel: list = field(default_factory=list)
    eef: list = field(default_factory=list)
    objects: list = field(default_factory=list)
    success: list = field(default_factory=list)
    touching: list = field(default_factory=list)  # robot in contact with something else
    episode: list = field(default_factory=list)  # episode index of each step
    observations: list = field(default_factory=list)  # after every chunk


def _robot_geoms(env) -> np.ndarray:
    model = env._rs.sim.model
    root = model.body_rootid[env._rs.sim.model.site_bodyid[env._eef_site]]
    return model.body_rootid[model.geom_bodyid] == root


def rollout(env, driver: str, steps: int, seed: int = 0, options: dict | None = None) -> Rollout:
    """Runs ``driver`` (``oracle`` / ``random``) on ``env`` for ``steps`` control steps."""
    from para_bench.registry import make_agent

    agent = make_agent("oracle") if driver == "oracle" else make_agent("random", chunk=8)
    robot = _robot_geoms(env)
    data = env._rs.sim.data
    bodies = list(env._rs.obj_body_id.values())
    out = Rollout()
    real_step = env._control_step

    def recording_step(action, render):
        done = real_step(action, render)
        out.qpos.append(data.qpos.copy())
        out.qvel.append(data.qvel.copy())
        out.eef.append(env._eef_pos())
        out.objects.append(data.body_xpos[bodies].copy())
        out.success.append(done)
        n = data.ncon
        g1, g2 = data.contact.geom1[:n], data.contact.geom2[:n]
        out.touching.append(bool(np.any(robot[g1] ^ robot[g2])))
        out.episode.append(episode)
        return done

    env._control_step = recording_step
    episode = 0
    try:
        while len(out.qpos) < steps:
            ep_seed = seed * 1000 + episode
            cap = RANDOM_EPISODE_STEPS if driver == "random" else 600
            env.control = replace(env.control, max_steps=min(steps - len(out.qpos), cap))
            obs, info = env.reset(seed=ep_seed, options={"init_state": episode % 50,
                                                          **(options or {})})
            agent.reset({"task": env.task.key, "instruction": info["instruction"]}, ep_seed)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step_chunk(agent.act(obs, info))
                out.observations.append(obs)
                done = terminated or truncated
            episode += 1
    finally:
        del env._control_step
    return out


def compare(a: Rollout, b: Rollout) -> dict:
    """Largest deviations of ``b`` from ``a`` (all steps; before each episode's first contact)."""
    n = min(len(a.qpos), len(b.qpos))
    qpos = np.abs(np.array(a.qpos[:n]) - np.array(b.qpos[:n])).max(axis=1)
    qvel = np.abs(np.array(a.qvel[:n]) - np.array(b.qvel[:n])).max(axis=1)
    eef = np.linalg.norm(np.array(a.eef[:n]) - np.array(b.eef[:n]), axis=1)
    objects = np.linalg.norm(np.array(a.objects[:n]) - np.array(b.objects[:n]), axis=2).max(axis=1)
    free = np.ones(n, dtype=bool)  # before the robot first touched anything, per episode
    episodes = np.array(a.episode[:n])
    touched = np.array(a.touching[:n]) | np.array(b.touching[:n])
    for ep in np.unique(episodes):
        idx = np.flatnonzero(episodes == ep)
        hits = idx[touched[idx]]
        if len(hits):
            free[hits[0]:idx[-1] + 1] = False

    def worst(x: np.ndarray, mask: np.ndarray | None = None) -> float:
        x = x if mask is None else x[mask]
        return float(x.max()) if len(x) else 0.0

    return {
        "steps": n, "steps_compared_equal_length": len(a.qpos) == len(b.qpos),
        "episodes": int(episodes.max()) + 1 if n else 0,
        "free_steps": int(free.sum()),
        "max_eef_m": worst(eef), "max_eef_free_m": worst(eef, free),
        "max_object_m": worst(objects), "max_object_free_m": worst(objects, free),
        "max_qpos": worst(qpos), "max_qvel": worst(qvel),
        "success_steps_differ": int(np.sum(np.array(a.success[:n]) != np.array(b.success[:n]))),
        "successes": int(np.sum(a.success[:n])),
        "observations": len(a.observations),
        "observations_identical": len(a.observations) == len(b.observations) and all(
            x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
            for x, y in zip(a.observations, b.observations, strict=True)),
        "bit_identical": bool(qpos.max(initial=0) == 0 and qvel.max(initial=0) == 0),
    }


def compare_loops(task: str, driver: str, steps: int, seed: int = 0,
                  options: dict | None = None, image_size: int = 64,
                  wrist: bool = False) -> dict:
    """Runs ``driver`` on both physics loops of ``task``; returns :func:`compare`'s dict
    (``observations_identical``: every observation after every chunk, all keys, bit for bit)."""
    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.envs.tasks import parse_task

    bench, task_id = parse_task(task)
    runs = {}
    for physics in ("robosuite", "fast"):
        env = LiberoEnv(bench, task_id, image_size=image_size, control="servo", physics=physics,
                        wrist=wrist)
        try:
            runs[physics] = rollout(env, driver, steps, seed, options)
        finally:
            env.close()
    return {"task": task, "driver": driver, **compare(runs["robosuite"], runs["fast"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--drivers", nargs="+", default=["oracle", "random"],
                    choices=("oracle", "random"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wrist", action="store_true", help="also render the wrist camera")
    args = ap.parse_args()

    rows = []
    head = (f"{'task':<18} {'driver':<7} {'steps':>5} {'eps':>3} {'free':>5} {'EEF free':>9} "
            f"{'obj free':>9} {'EEF all':>9} {'obj all':>9} {'qpos':>9} {'qvel':>9} "
            f"{'succ':>4} {'diff':>4} observations")
    print(head)
    for task in args.tasks:
        for driver in args.drivers:
            try:
                r = compare_loops(task, driver, args.steps, args.seed, wrist=args.wrist)
            except ValueError as e:  # the oracle handles (on X Y) / (in X Y) goals only
                print(f"{task:<18} {driver:<7} skipped: {e}", flush=True)
                continue
            rows.append(r)
            print(f"{task:<18} {driver:<7} {r['steps']:>5} {r['episodes']:>3} "
                  f"{r['free_steps']:>5} {r['max_eef_free_m']:>9.2e} "
                  f"{r['max_object_free_m']:>9.2e} {r['max_eef_m']:>9.2e} "
                  f"{r['max_object_m']:>9.2e} {r['max_qpos']:>9.2e} {r['max_qvel']:>9.2e} "
                  f"{r['successes']:>4} {r['success_steps_differ']:>4} "
                  f"{'identical' if r['observations_identical'] else 'DIFFER'} "
                  f"({r['observations']})",
                  flush=True)
    out = Path(__file__).parent / "results" / "physics_equivalence.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "seed": args.seed, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
