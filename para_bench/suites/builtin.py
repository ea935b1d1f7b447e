"""The built-in suites: ``in_dist``, ``pos_ood``, ``viewpoint_ood``, and two sweeps.

Every suite with a ``train`` split also has ``val``: the same perturbations on other
sampled placements (held-out scenes of the training distribution, to tell "does not
generalise" from "does not work"). ``train`` and ``val`` scenes come from LIBERO's
placement sampler; test splits use the 50 official init states (see
:mod:`para_bench.suites.spec`), so train and test scenes never coincide.

Object shifts move all of the task's movable objects together (the scene layout is kept,
its position on the table changes); ``dy > 0`` is the robot's left, which is the image's
right in LIBERO's agent view.
"""

from __future__ import annotations

import itertools

import numpy as np

from para_bench.registry import register_suite
from para_bench.suites.spec import SuiteSpec

POS_TRAIN_DX = (-0.04, 0.0, 0.04)
POS_TRAIN_DY = (-0.10, -0.06, -0.02)
POS_TEST_DX = (-0.06, -0.02, 0.02, 0.06)
POS_TEST_DY = (0.03, 0.06, 0.09, 0.12, 0.15)


def _shift(dx: float, dy: float, extra: dict | None = None) -> dict:
    return {"objects": {"dx": round(dx, 4), "dy": round(dy, 4)}, "extra": extra or {}}


def _view(yaw: float, pitch: float, extra: dict | None = None) -> dict:
    return {"camera": {"yaw_deg": float(yaw), "pitch_deg": float(pitch), "distance_scale": 1.0},
            "extra": extra or {}}


@register_suite("in_dist", description="no perturbation (sampled train scenes, official "
                "test init states)")
def in_dist() -> SuiteSpec:
    """No perturbation: train / val on sampled placements, test on the official init states."""
    none = [{"extra": {}}]
    return SuiteSpec(
        name="in_dist", version=3,
        description="no perturbation: train on sampled placements, test on the official "
                    "init states",
        splits={"train": none, "val": none, "test": none},
        default_episodes={"train": 50, "val": 20, "test": 50},
    )


@register_suite("pos_ood", description="object-position shift: train right, test left")
def pos_ood() -> SuiteSpec:
    """Objects shifted: train on a 3x3 grid on one side (dy < 0), test on 20 positions on
    the other (dy > 0); test episodes record ``dist_to_train_m``."""
    train = [(dx, dy) for dx, dy in itertools.product(POS_TRAIN_DX, POS_TRAIN_DY)]
    train_xy = np.array(train)
    test = []
    for dx, dy in itertools.product(POS_TEST_DX, POS_TEST_DY):
        dist = float(np.min(np.linalg.norm(train_xy - [dx, dy], axis=1)))
        test.append(_shift(dx, dy, {"dist_to_train_m": round(dist, 4)}))
    train_split = [_shift(dx, dy) for dx, dy in train]
    return SuiteSpec(
        name="pos_ood", version=3,
        description="object-position shift: train on dy<0, test on a 20-point grid at dy>0",
        splits={"train": train_split, "val": train_split, "test": test},
        default_episodes={"val": 20},
        params={"train_dx": POS_TRAIN_DX, "train_dy": POS_TRAIN_DY,
                "test_dx": POS_TEST_DX, "test_dy": POS_TEST_DY},
    )


@register_suite("viewpoint_ood", description="camera orbit: train near the default view, "
                "test up to 25 deg off-axis")
def viewpoint_ood() -> SuiteSpec:
    """Train on the default view and views within 5 deg; test on yaw 15-25 deg either side
    (pitch 0 or +10); ``test_right`` / ``test_left`` are the two hemispheres."""
    train = [_view(y, p) for y, p in itertools.product((-5, 0, 5), (-5, 0, 5))]
    right = [_view(y, p, {"off_axis_deg": abs(y)}) for y, p in
             itertools.product((15, 20, 25), (0, 10))]
    left = [_view(-y, p, {"off_axis_deg": abs(y)}) for y, p in
            itertools.product((15, 20, 25), (0, 10))]
    return SuiteSpec(
        name="viewpoint_ood", version=3,
        description="camera orbit: train within 5 deg of default, test 15-25 deg off-axis",
        splits={"train": train, "val": train, "test": right + left, "test_right": right,
                "test_left": left},
        default_episodes={"val": 20},
        params={"train_yaw_deg": (-5, 0, 5), "train_pitch_deg": (-5, 0, 5),
                "test_yaw_deg": (15, 20, 25, -15, -20, -25), "test_pitch_deg": (0, 10)},
    )


@register_suite("viewpoint_sweep", description="camera yaw 0..45 deg in 5 deg steps")
def viewpoint_sweep() -> SuiteSpec:
    """Yaw 0..45 deg in 5 deg steps (success vs. perturbation size)."""
    views = [_view(y, 0, {"sweep": y}) for y in range(0, 50, 5)]
    return SuiteSpec(name="viewpoint_sweep", version=2,
                     description="camera yaw 0..45 deg in 5 deg steps",
                     splits={"test": views}, params={"yaw_deg": list(range(0, 50, 5))})


@register_suite("shift_sweep", description="object shift dy 0..15 cm in 3 cm steps")
def shift_sweep() -> SuiteSpec:
    """Object shift 0..15 cm along +y in 3 cm steps (success vs. perturbation size)."""
    shifts = [_shift(0.0, d / 100, {"sweep": d / 100}) for d in range(0, 18, 3)]
    return SuiteSpec(name="shift_sweep", version=2,
                     description="object shift dy 0..15 cm in 3 cm steps",
                     splits={"test": shifts}, params={"dy_m": [d / 100 for d in range(0, 18, 3)]})
