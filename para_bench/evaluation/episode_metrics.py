"""Per-episode metrics from an :class:`~para_bench.evaluation.episode.EpisodeOutcome`
(definitions in :mod:`para_bench.metrics`)."""

from __future__ import annotations

import numpy as np

from para_bench import metrics
from para_bench.evaluation.episode import EpisodeOutcome

COVERAGE_EPS_PX = 4.0  # at 128 px; scaled with the image size
COVERAGE_EPS_M = 0.02


def episode_metrics(out: EpisodeOutcome, reference: np.ndarray | None,
                    image_size: int) -> dict:
    """The ``metrics`` of an episode record.

    Args:
        out: the episode's outcome.
        reference: the oracle's trajectory for the same episode spec ((N, 3); empty or None
            when there is none: coverage stays None).
        image_size: image side the agent saw (coverage's pixel threshold scales with it).

    Returns:
        ``jerk``, ``accel_mean``, ``path_length``, ``gripper_chatter``,
        ``time_to_success_s``, ``latency_ms``, ``n_calls``, ``dt``, ``stage``, ``approached``,
        ``grasped``, ``coverage``, ``coverage_3d``, ``coverage_eps_px``, ``control_modes``,
        ``targets``, ``steps_per_target_max``, ``grasp_attempt_step``, ``grasp_attempt_m``;
        non-finite values become None.
    """
    traj, dt = out.traj, out.dt
    m = {
        "jerk": metrics.jerk_rms(traj, dt),
        "accel_mean": metrics.accel_mean(traj),
        "path_length": metrics.path_length(traj),
        "gripper_chatter": metrics.gripper_chatter(np.asarray(out.grips)),
        "time_to_success_s": out.success_step * dt if out.success_step else None,
        "latency_ms": 1000 * float(np.mean(out.latencies)) if out.latencies else None,
        "n_calls": len(out.latencies),
        "dt": dt,
        "stage": out.stage,
        "approached": out.stages_observed.get("approached"),
        "grasped": out.stages_observed.get("grasped"),
        "coverage": None,
        "coverage_3d": None,
        "coverage_eps_px": None,
        "control_modes": dict(out.control_modes),
        "targets": out.targets,
        "steps_per_target_max": out.steps_per_target_max,
        "grasp_attempt_step": out.grasp_attempt_step,
        "grasp_attempt_m": out.grasp_attempt_m,
    }
    if reference is not None and len(reference):
        from para_bench.envs.camera import project

        k, w2c = out.camera
        eps_px = COVERAGE_EPS_PX * image_size / 128
        ref_px, _ = project(reference, k, w2c)
        run_px, _ = project(traj, k, w2c)
        m["coverage"] = metrics.coverage(ref_px, run_px, eps_px)
        m["coverage_3d"] = metrics.coverage(reference, traj, COVERAGE_EPS_M)
        m["coverage_eps_px"] = eps_px
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in m.items()}
