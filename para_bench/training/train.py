"""``para-bench train``: fit a policy to a demo dataset on CPU or GPU, save one checkpoint.

Straight-line loop: the demos are read into memory and pre-built into tensors
(:class:`~para_bench.training.dataset.TrainingFrames`), the last 10% (at least one) are
held out, dataset statistics come from the rest and go into the checkpoint. Batches are
gathered by tensor indexing and augmented (random shift + colour jitter, the config's
``augment_*`` fields). AdamW with a short warm-up and cosine decay; the checkpoint is
rewritten (atomically) at every validation, so a killed run keeps its last one, with a
resume state from which the same training run again continues
(:mod:`~para_bench.training.resume`); Ctrl-C or ``max_minutes`` ends training early with
a final validation and checkpoint (``interrupted`` in the summary). Next to ``<out>.pt``
it writes ``<out>.train.json`` (config, stats, open-loop validation metrics, the loss
curve, timings), ``<out>.loss.png`` and ``<out>.overlay.png`` (predicted vs reference
trajectory on three validation demos).

Deterministic: the same data, seed and settings (one thread) give a bit-identical
checkpoint file; wall-clock values (minutes, steps per second) go only into the
``.train.json``.

Open-loop validation metrics, on held-out frames, over all ``n_window`` predicted steps:
``val_pixel_error`` (mean distance in pixels between predicted and true target pixels),
``val_xyz_error_cm``, ``val_height_bin_acc``, ``val_gripper_acc`` (bin accuracy).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from para_bench.models import geometry
from para_bench.models.base import PolicyModel
from para_bench.models.checkpoint import save_checkpoint
from para_bench.training.augment import Augment
from para_bench.training.dataset import (
    Demo,
    DemoData,
    TrainingFrames,
    compute_stats,
    demo_scene_ids,
)
from para_bench.training.resume import (
    fingerprint,
    load_resume_state,
    resume_path,
    save_resume_state,
)

#: train-info keys that hold wall-clock values: written to ``.train.json`` only, never into
#: the checkpoint (which must be bit-identical for the same data and seed)
TIMING_KEYS = ("train_minutes", "steps_per_s", "build_s", "resumed_from_step")


@torch.no_grad()
def evaluate_open_loop(model: PolicyModel, ds: TrainingFrames, device: torch.device,
                       max_frames: int = 512, batch_size: int = 64) -> dict[str, float]:
    """Open-loop validation metrics (see the module docstring) on up to ``max_frames``."""
    model.eval()
    idx = np.linspace(0, len(ds) - 1, min(max_frames, len(ds))).astype(int).tolist()
    sums = {"val_pixel_error": 0.0, "val_xyz_error_cm": 0.0, "val_height_bin_acc": 0.0,
            "val_gripper_acc": 0.0}
    n = 0
    c, s = model.config, model.stats
    for i in range(0, len(idx), batch_size):
        b = ds.batch(idx[i:i + batch_size], device=device)
        p = model.predict(b)
        uv, _ = geometry.project(p["xyz"], b["intrinsics"], b["extrinsics"])
        hb = geometry.value_to_bin(p["xyz"][..., 2], s.height_lo, s.height_hi, c.n_height_bins)
        gb = geometry.value_to_bin(p["gripper"], s.gripper_lo, s.gripper_hi, c.n_gripper_bins)
        k = len(b["rgb"])
        sums["val_pixel_error"] += (uv - b["target_uv"]).norm(dim=-1).mean().item() * k
        xyz_err = (p["xyz"] - b["target_xyz"]).norm(dim=-1).mean().item()
        sums["val_xyz_error_cm"] += 100 * xyz_err * k
        sums["val_height_bin_acc"] += (hb == b["target_height_bin"]).float().mean().item() * k
        sums["val_gripper_acc"] += (gb == b["target_gripper_bin"]).float().mean().item() * k
        n += k
    model.train()
    return {key: round(v / max(n, 1), 4) for key, v in sums.items()}


def train_policy(model_name: str, data: str | Path, out: str | Path, steps: int | None = None,
                 batch_size: int = 32, lr: float = 1e-3, device: str = "cpu", seed: int = 0,
                 overrides: dict[str, Any] | None = None, max_minutes: float | None = None,
                 val_every: int = 500, progress: bool = True,
                 camera_task: str | None = None, resume: bool = True) -> dict[str, Any]:
    """Trains ``model_name`` on the demos in ``data`` and writes the checkpoint ``out``.

    ``camera_task`` (``benchmark/id``) supplies the camera for demo files that carry none
    (LIBERO's own): the task's default agent view. With ``resume`` (default), a training
    of the same inputs that was interrupted continues from its last validation
    (:mod:`para_bench.training.resume`).

    Returns:
        The training summary also written to ``<out>.train.json``.
    """
    from tqdm import tqdm

    from para_bench.models.zoo import load_model_class

    dev = torch.device(device)
    torch.manual_seed(seed)
    cls = load_model_class(model_name)
    overrides = dict(overrides or {})
    camera = None
    if camera_task:
        import h5py

        from para_bench.training.dataset import default_camera

        with h5py.File(data, "r") as f:
            first = next(iter(f["data"].values()))
            side = first["obs/agentview_rgb"].shape[1]
        camera = default_camera(camera_task, side)
    t_build = time.perf_counter()
    demo_data = DemoData(data, image_size=overrides.get("image_size"), camera=camera)
    overrides.setdefault("image_size", demo_data.image_size)
    config = cls.config_class.from_dict(overrides)
    steps = steps or config.train_steps
    train_demos, val_demos = demo_data.split()
    stats = compute_stats(train_demos, config)
    train_ds = TrainingFrames(train_demos, config, stats)
    val_ds = TrainingFrames(val_demos, config, stats)
    augment = Augment(shift=config.augment_shift, brightness=config.augment_color,
                      contrast=config.augment_color, saturation=config.augment_color)
    gen = torch.Generator().manual_seed(seed)
    model = cls(config, stats).to(dev)
    build_s = time.perf_counter() - t_build
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warmup = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / max(warmup, 1)) * 0.5 *
        (1 + math.cos(math.pi * min(i, steps) / steps)))
    rng = np.random.default_rng(seed)
    out = Path(out)
    info: dict[str, Any] = {
        "model": model_name, "data": str(data), "n_train_demos": len(train_demos),
        "n_val_demos": len(val_demos), "n_train_frames": len(train_ds), "batch_size": batch_size,
        "lr": lr, "seed": seed, "device": device,
        "n_params": sum(p.numel() for p in model.parameters()),
        "rotation_explained_variance": stats.rot_explained_variance,
        "render_quality": demo_data.render_quality,
        # every scene of the data file (held-out demos included): `run` refuses them
        "train_scene_ids": demo_scene_ids(data),
    }
    curve: list[dict[str, float]] = []
    t0 = time.time()
    train_s = 0.0  # seconds spent in training steps (validation excluded)
    state_path = resume_path(out)
    print_ = fingerprint(model_name, data, config.to_dict(), steps, batch_size, lr, seed,
                         device)
    first = 1
    state = load_resume_state(state_path, print_) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        curve, train_s, t0 = state["curve"], state["train_s"], t0 - state["elapsed_s"]
        first = state["step"] + 1
        info["resumed_from_step"] = state["step"]
    bar = tqdm(total=steps, initial=first - 1, unit="step", disable=not progress,
               dynamic_ncols=True)

    def validate_and_save(step: int) -> None:
        info.update(steps=step, **evaluate_open_loop(model, val_ds, dev))
        save_checkpoint(out, model, {k: v for k, v in info.items() if k not in TIMING_KEYS})
        if step < steps:
            save_resume_state(state_path, {
                "fingerprint": print_, "step": step, "model": model.state_dict(),
                "opt": opt.state_dict(), "sched": sched.state_dict(),
                "rng": rng.bit_generator.state, "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "curve": curve, "train_s": train_s,
                "elapsed_s": time.time() - t0})

    done, info["interrupted"] = first - 1, False
    try:
        for step in range(first, steps + 1):
            t_step = time.perf_counter()
            idx = torch.from_numpy(rng.integers(len(train_ds), size=batch_size))
            batch = train_ds.batch(idx, augment, gen, dev, train=True)
            loss, parts = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            train_s += time.perf_counter() - t_step
            done = step
            if step % 10 == 0 or step == 1:
                curve.append({"step": step, "loss": float(loss.item()),
                              **{k: float(v) for k, v in parts.items()}})
                bar.set_postfix_str(f"loss {loss.item():.3f}")
            bar.update(1)
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                break
            if step % val_every == 0 and step < steps:
                validate_and_save(step)
    except KeyboardInterrupt:  # Ctrl-C: keep what was trained
        info["interrupted"] = True
    finally:
        bar.close()
    if done == 0:  # interrupted before the first step: nothing to save
        raise KeyboardInterrupt
    info.update(train_minutes=round((time.time() - t0) / 60, 2), build_s=round(build_s, 1),
                steps_per_s=round(done / max(train_s, 1e-9), 2))
    validate_and_save(done)
    if done == steps:
        state_path.unlink(missing_ok=True)
    summary = {**info, "config": config.to_dict(), "stats": stats.to_dict(), "curve": curve}
    out.with_suffix(".train.json").write_text(json.dumps(summary, indent=1))
    _plot_curve(curve, out.with_suffix(".loss.png"))
    plot_overlay(model, val_demos[:3], config, stats, out.with_suffix(".overlay.png"), dev)
    return summary


def _plot_curve(curve: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [c["step"] for c in curve]
    for key in curve[0] if curve else []:
        if key != "step":
            ax.plot(steps, [c[key] for c in curve], label=key, lw=1.2 if key == "loss" else 0.8)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def plot_overlay(model: PolicyModel, demos: list[Demo], config: Any, stats: Any, path: Path,
                 device: torch.device, n_frames: int = 4) -> None:
    """Predicted (red) vs reference (green) future trajectory on frames of each demo; the
    whole reference trajectory is drawn faintly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from para_bench.envs.camera import project

    model.eval()
    fig, axes = plt.subplots(len(demos), n_frames, figsize=(2.6 * n_frames, 2.6 * len(demos)),
                             squeeze=False)
    for row, d in enumerate(demos):
        ds = TrainingFrames([d], config, stats)
        ts = np.linspace(0, len(d) - 1, n_frames + 1).astype(int)[:-1]
        for col, t in enumerate(ts):
            b = ds.batch([int(t)], device=device)
            p = model.predict(b)
            ax = axes[row, col]
            ax.imshow(d.rgb[t])
            full, _ = project(d.eef_pos, d.intrinsics[t], d.extrinsics[t])
            ax.plot(full[:, 0], full[:, 1], color="white", lw=0.6, alpha=0.6)
            gt = b["target_uv"][0].cpu().numpy()
            pred, _ = project(p["xyz"][0].cpu().numpy(), d.intrinsics[t], d.extrinsics[t])
            ax.plot(gt[:, 0], gt[:, 1], "o-", color="lime", ms=2, lw=1)
            ax.plot(pred[:, 0], pred[:, 1], "x-", color="red", ms=3, lw=1)
            ax.set_title(f"{d.name} t={t}", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{model.name}: predicted (red) vs reference (green)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    model.train()
