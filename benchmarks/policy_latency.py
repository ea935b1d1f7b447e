"""Inference latency of each learned policy per ``act`` call, at its default size, on CPU.

Each policy is built with its default configuration (random weights, synthetic dataset
statistics), saved as a real checkpoint and loaded by its agent, which then answers
``act`` on 128x128 observations: the full path a run takes (batch building, forward,
decode, interpolation into per-step targets). The reference measured in the same run is
one control step of the simulator's physics (``LiberoEnv`` with a zero action, no
rendering), so the ratio says how many control steps of physics one decision costs.

Usage: ``python benchmarks/policy_latency.py [--calls 30] [--no-sim]``. Prints a table and
writes ``benchmarks/results/policy_latency.json``.
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
POLICIES = ("para", "ar", "voxel_abs", "voxel_rel", "act")


def _synthetic_obs(rng: np.random.Generator) -> dict:
    from para_bench.envs.camera import intrinsics_from_fovy, look_at

    return {"rgb": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
            "intrinsics": intrinsics_from_fovy(45.0, 128, 128),
            "extrinsics": look_at([1.0, 0.0, 1.6], [0.0, 0.0, 0.9]),
            "eef_pos": np.array([0.0, 0.0, 1.1]),
            "eef_quat_xyzw": np.array([1.0, 0.0, 0.0, 0.0]),
            "gripper_qpos": np.array([0.04, -0.04])}


def random_policy_agent(name: str, folder: Path, rng: np.random.Generator):
    """A policy agent loaded from a real checkpoint of a randomly initialised model."""
    from para_bench.models.checkpoint import save_checkpoint
    from para_bench.models.stats import DatasetStats
    from para_bench.models.zoo import load_model_class
    from para_bench.registry import make_agent

    n = 200
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)) + rng.normal(0, 0.05, (n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    stats = DatasetStats.from_arrays(rng.normal([0, 0, 1.0], 0.1, (n, 3)), quats,
                                     np.sign(rng.normal(size=n)))
    cls = load_model_class(name)
    path = folder / f"{name}.pt"
    save_checkpoint(path, cls(cls.config_class(), stats), {})
    return make_agent(name, checkpoint=str(path))


def _physics_step_ms(steps: int) -> float | None:
    from para_bench.envs.libero_env import LiberoEnv

    env = LiberoEnv(image_size=128)
    env.reset(seed=0)
    for _ in range(5):
        env._control_step(np.zeros(7), render=False)
    t0 = time.perf_counter()
    for _ in range(steps):
        env._control_step(np.zeros(7), render=False)
    ms = 1000 * (time.perf_counter() - t0) / steps
    env.close()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--no-sim", action="store_true", help="skip the physics reference")
    args = ap.parse_args()
    import torch

    rng = np.random.default_rng(0)
    obs = _synthetic_obs(rng)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in POLICIES:
            agent = random_policy_agent(name, Path(tmp), rng)
            agent.reset({"task": "libero_spatial/0", "instruction": ""}, 0)
            for _ in range(3):
                agent.act(obs, {})
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                agent.act(obs, {})
                times.append(time.perf_counter() - t0)
            n_params = sum(p.numel() for p in agent.model.parameters())
            rows[name] = {"median_ms": 1000 * float(np.median(times)), "params": n_params,
                          "steps_per_call": agent.config.n_exec * agent.config.stride}
    ref = None if args.no_sim else _physics_step_ms(100)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"reference: one physics control step = {ref:.1f} ms" if ref else "")
    print(f"{'policy':<10} {'params':>9} {'act ms':>8} {'x physics step':>15} {'steps/call':>10}")
    for name, r in rows.items():
        ratio = f"{r['median_ms'] / ref:.1f}" if ref else "-"
        r["ratio_to_physics_step"] = None if ref is None else r["median_ms"] / ref
        print(f"{name:<10} {r['params']:>9,} {r['median_ms']:>8.1f} {ratio:>15} "
              f"{r['steps_per_call']:>10}")
    out = Path(__file__).parent / "results" / "policy_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"physics_step_ms": ref, "policies": rows}, indent=1))


if __name__ == "__main__":
    main()
