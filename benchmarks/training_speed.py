"""Training speed of each learned policy at its default recipe, on one CPU thread.

For each policy: the time to assemble one training batch (pre-built tensors, vectorised
gather + augmentation, :meth:`TrainingFrames.batch`) and one optimisation step (forward,
backward, AdamW) at the default batch size, giving steps per second and the minutes the
default ``train_steps`` take. References measured in the same run: the per-sample batch
assembly the training loop used before (one Python sample at a time through
``observation_sample`` and ``default_collate``), and ``para`` with the backbone every model
had before (absolute position codes, context width 128, bilinear upsampling).

Data: a demo file (``--data``, e.g. from ``para-bench collect``) or, without one,
synthetic demos of 128 px (random images, a smooth EEF path) of the same size as 36 oracle
demos.

Usage: ``python benchmarks/training_speed.py [--data demos.hdf5] [--steps 10]``. Prints a
table and writes ``benchmarks/results/training_speed.json``. Timings on a shared machine
are upper bounds: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

POLICIES = ("para", "ar", "voxel_abs", "voxel_rel", "act")
#: the backbone every model had before (absolute position codes, context width 128,
#: bilinear upsampling), measured on para as a same-run reference
OLD_BACKBONE = {"coord_channels": True, "context_pos": "absolute", "context_width": 128,
                "context_upsample": "bilinear"}


def _synthetic_demos(n: int, t: int, size: int = 128):
    from para_bench.envs.camera import intrinsics_from_fovy, look_at
    from para_bench.training.dataset import Demo

    rng = np.random.default_rng(0)
    k, w2c = intrinsics_from_fovy(45.0, size, size), look_at([1.0, 0.0, 1.6], [0.0, 0.0, 0.9])
    demos = []
    for i in range(n):
        xyz = np.cumsum(rng.normal(0, 0.005, (t, 3)), axis=0) + [0.0, 0.0, 1.0]
        actions = np.zeros((t, 7))
        actions[:, :3] = rng.uniform(-0.5, 0.5, (t, 3))
        actions[:, 6] = np.where(np.arange(t) < t // 2, -1.0, 1.0)
        quat = np.tile([1.0, 0.0, 0.0, 0.0], (t, 1))
        demos.append(Demo(f"demo_{i}", rng.integers(0, 255, (t, size, size, 3), np.uint8), xyz,
                          quat, np.tile([0.04, -0.04], (t, 1)), actions,
                          np.tile(k, (t, 1, 1)), np.tile(w2c, (t, 1, 1))))
    return demos


def _per_sample_batch(frames, demos, idx, config) -> dict:
    """The old path: one sample at a time in Python, then ``default_collate``."""
    from para_bench.models.base import add_bin_targets
    from para_bench.models.sample import observation_sample

    offsets = np.arange(config.n_window) * config.stride
    flat = [(d, t) for d in demos for t in range(len(d))]
    samples = []
    for i in idx.tolist():
        d, t = flat[i]
        s = observation_sample(d.rgb[t], d.intrinsics[t], d.extrinsics[t], d.eef_pos[t],
                               d.eef_pos[0], d.gripper_qpos[t])
        j = np.minimum(t + offsets, len(d) - 1)
        from para_bench.envs.camera import project

        s["target_xyz"] = torch.as_tensor(d.eef_pos[j], dtype=torch.float32)
        s["target_uv"] = torch.as_tensor(project(d.eef_pos[j], d.intrinsics[t],
                                                 d.extrinsics[t])[0], dtype=torch.float32)
        s["target_gripper"] = torch.as_tensor(d.actions[j, 6], dtype=torch.float32)
        s["target_rot"] = torch.zeros(config.n_window)
        samples.append(s)
    return add_bin_targets(torch.utils.data.default_collate(samples), config, frames.stats)


def main() -> None:
    from para_bench.models.zoo import load_model_class
    from para_bench.training.augment import Augment
    from para_bench.training.dataset import DemoData, TrainingFrames, compute_stats

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="HDF5 demos (default: synthetic)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per policy")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    demos = DemoData(args.data).demos if args.data else _synthetic_demos(36, 140)
    rng = np.random.default_rng(0)
    rows = []
    for name, over in [(p, {}) for p in POLICIES] + [("para", OLD_BACKBONE)]:
        cls = load_model_class(name)
        config = cls.config_class(image_size=demos[0].rgb.shape[1], **over)
        stats = compute_stats(demos, config)
        frames = TrainingFrames(demos, config, stats)
        aug = Augment(config.augment_shift, config.augment_color, config.augment_color,
                      config.augment_color)
        gen = torch.Generator().manual_seed(0)
        model = cls(config, stats)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches, steps = [], []
        for i in range(args.steps + 1):
            idx = torch.from_numpy(rng.integers(len(frames), size=args.batch_size))
            t0 = time.perf_counter()
            batch = frames.batch(idx, aug, gen)
            t1 = time.perf_counter()
            loss, _ = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if i:  # the first step warms up
                batches.append(t1 - t0)
                steps.append(t2 - t1)
        ref = []
        if name == "para" and not over:  # the old per-sample assembly (model independent)
            for _ in range(3):
                idx = torch.from_numpy(rng.integers(len(frames), size=args.batch_size))
                t0 = time.perf_counter()
                _per_sample_batch(frames, demos, idx, config)
                ref.append(time.perf_counter() - t0)
        b, s = float(np.median(batches)), float(np.median(steps))
        label = name + (" (previous backbone)" if over else "")
        row = {"policy": label, "batch_ms": round(1000 * b, 1), "step_ms": round(1000 * s, 1),
               "steps_per_s": round(1 / (b + s), 2), "default_steps": config.train_steps,
               "default_minutes": round(config.train_steps * (b + s) / 60, 1)}
        if ref:
            row["per_sample_batch_ms"] = round(1000 * float(np.median(ref)), 1)
            row["batch_speedup"] = round(float(np.median(ref)) / b, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "training_speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
