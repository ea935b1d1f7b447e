"""``para-bench collect``: roll out the scripted oracle on a suite split and write demos.

The file uses LIBERO's own demo layout, so the same loader reads LIBERO's official
datasets, plus what pixel-aligned training needs per frame::

    data/                         attrs: suite, split, seed, image_size, image_origin="top",
                                         para_bench_version, env_args (JSON: image_size,
                                         control, render_quality)
      demo_N/                     attrs: num_samples, episode_id, scene_id, task,
                                         instruction, init_state (-1: sampled),
                                         placement_seed (-1: official init state), seed,
                                         perturbation (JSON), success
        actions        (T, 7)     the LIBERO OSC commands the control path sent
        obs/agentview_rgb (T, S, S, 3) uint8, row 0 at the top
        obs/ee_pos     (T, 3)     gripper site, world, metres
        obs/ee_quat_xyzw (T, 4)   its orientation
        obs/gripper_states (T, 2) finger joints
        obs/joint_states (T, 7)   arm joints
        camera/intrinsics (T, 3, 3), camera/extrinsics (T, 4, 4)   OpenCV, world -> camera

Frame ``t`` is the observation the action ``t`` was sent from. Only successful oracle
episodes are kept (the count of failures is reported). Each demo is written and flushed
as it finishes; rerunning the same command resumes, skipping episodes already written.

Demos are training data, so evaluation scenes are refused: a plan of a ``test*`` split
(LIBERO's official init states) raises ``ValueError``. Each demo records its ``scene_id``
(:attr:`~para_bench.types.EpisodeSpec.scene_id`); checkpoints keep the list, and
``para-bench run`` refuses to evaluate a checkpoint on the scenes it was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from para_bench.agents.oracle import RIM_SIDE_MARGIN
from para_bench.types import EpisodeSpec

OBS_KEYS = {"agentview_rgb": "rgb", "ee_pos": "eef_pos", "ee_quat_xyzw": "eef_quat_xyzw",
            "gripper_states": "gripper_qpos", "joint_states": "joint_pos"}


def rollout_demo(env: Any, oracle: Any, spec: EpisodeSpec) -> dict[str, Any]:
    """Runs the oracle for one episode, recording every control step.

    Returns:
        ``{"obs": {key: (T, ...)}, "actions": (T, 7), "intrinsics", "extrinsics",
        "success", "instruction"}``.
    """
    obs, info = env.reset(seed=spec.seed, options=spec.reset_options())
    oracle.reset({"task": spec.task, "instruction": info["instruction"]}, spec.seed)
    frames, actions = [obs], []
    done = bool(info["success"])
    while not done:
        obs, _, terminated, truncated, info = env.step_chunk(oracle.act(obs, info))
        frames.extend(info["step_observations"])
        actions.extend(np.asarray(info["commands"]))
        done = terminated or truncated
    frames = frames[:len(actions)]  # frame t is the one action t was sent from
    return {
        "obs": {k: np.stack([f[src] for f in frames]) for k, src in OBS_KEYS.items()},
        "actions": np.asarray(actions, dtype=np.float64).reshape(-1, 7),
        "intrinsics": np.stack([f["intrinsics"] for f in frames]),
        "extrinsics": np.stack([f["extrinsics"] for f in frames]),
        "success": bool(info["success"]),
        "instruction": info["instruction"],
    }


def _write_demo(data: Any, name: str, demo: dict[str, Any], spec: EpisodeSpec) -> None:
    g = data.create_group(name)
    g.attrs.update({
        "num_samples": len(demo["actions"]), "episode_id": spec.episode_id,
        "scene_id": spec.scene_id, "task": spec.task, "instruction": demo["instruction"],
        "init_state": -1 if spec.init_state is None else spec.init_state,
        "placement_seed": -1 if spec.placement_seed is None else spec.placement_seed,
        "seed": spec.seed,
        "perturbation": json.dumps(spec.perturbation), "success": demo["success"],
    })
    g.create_dataset("actions", data=demo["actions"])
    for key, arr in demo["obs"].items():
        kw = {"compression": "lzf", "chunks": (1, *arr.shape[1:])} if arr.ndim == 4 else {}
        g.create_dataset(f"obs/{key}", data=arr, **kw)
    g.create_dataset("camera/intrinsics", data=demo["intrinsics"])
    g.create_dataset("camera/extrinsics", data=demo["extrinsics"])
    g.attrs["complete"] = True  # last: a demo torn by a kill lacks it


def demo_is_complete(g: Any) -> bool:
    """Whether a demo group was written to the end (files from before the ``complete``
    marker: its last dataset is whole)."""
    if "complete" in g.attrs:
        return bool(g.attrs["complete"])
    last = g.get("camera/extrinsics")
    return last is not None and len(last) == g.attrs.get("num_samples", -1)


def repair_demo_file(path: str | Path) -> bool:
    """Makes a collection file interrupted by a kill resumable (the experiment's work file).

    A demo torn mid-write is dropped, so :func:`collect` records that episode again; a
    file HDF5 cannot open is deleted (the collection starts over).

    Returns:
        Whether a file is left to continue.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        return False
    try:
        with h5py.File(path, "a") as f:
            data = f.get("data", {})
            for name in [n for n, g in data.items() if not demo_is_complete(g)]:
                del data[name]
    except Exception:  # noqa: BLE001 - any failure to read or repair: start over
        path.unlink()
        return False
    return True


def collect(plan: list[EpisodeSpec], out: str | Path, image_size: int = 128,
            max_steps: int = 600, progress: bool = True,
            physics: str = "fast", rim_side_margin: float = RIM_SIDE_MARGIN) -> dict[str, int]:
    """Collects oracle demos for a plan into an HDF5 file (resumable).

    ``physics`` is the env's control-step loop (``fast`` or ``robosuite``);
    ``rim_side_margin`` the oracle's (metres, see :class:`~para_bench.agents.oracle.OracleAgent`),
    kept in the file: a file is resumed only with the margin it was started with.

    Returns:
        ``{"written": n, "failed": n, "skipped": n}`` for this invocation.
    """
    import h5py
    from tqdm import tqdm

    from para_bench import __version__
    from para_bench.evaluation.config import RunConfig
    from para_bench.evaluation.env_pool import EnvPool
    from para_bench.registry import make_agent

    head = plan[0]
    if is_evaluation_split(head.split):
        raise ValueError(f"collect: split {head.split!r} of {head.suite} holds evaluation "
                         "scenes; collect demos on a train split")
    oracle = make_agent("oracle", rim_side_margin=rim_side_margin)  # bad options: no file
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(out, "a") as f:
        data = f.require_group("data")
        pinned = {"suite": head.suite, "split": head.split, "image_size": image_size,
                  "oracle_rim_side_margin": float(rim_side_margin)}
        for key, value in pinned.items():
            if key in data.attrs and data.attrs[key] != value:
                raise ValueError(f"{out} holds demos of {key}={data.attrs[key]!r}, not "
                                 f"{value!r}; use another --out")
        control = oracle.requirements.control or "servo"
        quality = oracle.requirements.render_quality or "fast"  # what EnvPool renders with
        data.attrs.update({**pinned, "image_origin": "top", "para_bench_version": __version__,
                           "env_args": json.dumps({"image_size": image_size,
                                                   "control": control,
                                                   "physics": physics,
                                                   "render_quality": quality})})
        for name in [n for n, g in data.items() if not demo_is_complete(g)]:
            del data[name]  # torn by a kill: collected again below
        done = {g.attrs["episode_id"] for g in data.values()}
        failed_ids = set(json.loads(data.attrs.get("failed_episode_ids", "[]")))
        todo = [s for s in plan if s.episode_id not in done | failed_ids]
        counts = {"written": 0, "failed": 0, "skipped": len(plan) - len(todo)}
        pool = EnvPool(RunConfig(agent="oracle", control=control, max_steps=max_steps,
                                 image_size=image_size, physics=physics),
                       env_factory=lambda **kw: _recording_env(**kw))
        bar = tqdm(total=len(plan), initial=counts["skipped"], unit="demo", disable=not progress)
        try:
            for spec in todo:
                try:
                    demo = rollout_demo(pool.get(spec, oracle.requirements), oracle, spec)
                except Exception as e:  # noqa: BLE001 - one lost episode, not the dataset
                    pool.discard()
                    demo = {"success": False, "error": f"{type(e).__name__}: {e}"}
                if demo["success"]:
                    _write_demo(data, f"demo_{len(data)}", demo, spec)
                    counts["written"] += 1
                else:
                    failed_ids.add(spec.episode_id)
                    data.attrs["failed_episode_ids"] = json.dumps(sorted(failed_ids))
                    counts["failed"] += 1
                data.attrs["total"] = int(sum(g.attrs["num_samples"] for g in data.values()))
                f.flush()
                bar.update(1)
                bar.set_postfix_str(f"kept {len(data)}, failed {len(failed_ids)}")
        finally:
            bar.close()
            pool.close()
    return counts


def is_evaluation_split(split: str) -> bool:
    """Splits whose scenes are for evaluation only (``test``, ``test_left``, ...)."""
    return split.startswith("test")


def _recording_env(**kwargs: Any) -> Any:
    from para_bench.envs.libero_env import LiberoEnv

    os.environ.setdefault("MUJOCO_GL", "egl")
    return LiberoEnv(record_steps=True, **kwargs)
