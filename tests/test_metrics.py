"""Metric definitions checked on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from para_bench.metrics import (
    accel_mean,
    coverage,
    gripper_chatter,
    jerk_rms,
    mcnemar_exact,
    paired_bootstrap_diff,
    path_length,
    percent,
    summarize_success,
    wilson_interval,
)


def test_percent_rounds_exact_halves_up_despite_binary_noise():
    # 100 * (23 / 40) is 57.49999999999999 in binary; f"{62.5:.0f}" is "62" (half to even)
    assert 100 * (23 / 40) < 57.5 and f"{62.5:.0f}" == "62"
    assert percent(23 / 40) == "57.5" and percent(23 / 40, 0) == "58"
    assert percent(25 / 40, 0) == "63" and percent(3 / 48) == "6.3"
    assert percent(2 / 3) == "66.7" and percent(1.0, 0) == "100" and percent(0.0) == "0.0"
    assert percent(float("nan")) == "-"


def test_wilson_extremes_by_hand():
    # k=0, n=10, z=1.96: z^2/n = 0.38416, p=0 so the half width equals the centre,
    # z^2/(2n) / (1 + z^2/n) = 0.19208 / 1.38416 = 0.138770 -> high = 0.38416/1.38416 = 0.277540.
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.277540, abs=1e-6)
    # k=10 mirrors it: (1 - 0.277540, 1).
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722460, abs=1e-6)
    assert high == 1.0
    for n in range(1, 200):  # exactly, whatever the rounding (48/48 once gave 1 - 1e-16)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0


def test_wilson_interior_and_empty():
    # 17/20: centre (0.85 + 0.09604) / 1.19208 = 0.793605,
    # half 1.96 * sqrt(0.006375 + 0.0024010) / 1.19208 = 0.154030 -> [0.639575, 0.947635].
    low, high = wilson_interval(17, 20)
    assert low == pytest.approx(0.639575, abs=1e-5)
    assert high == pytest.approx(0.947635, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _line(x: np.ndarray) -> np.ndarray:
    return np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1)


def test_jerk_of_cubic_is_six():
    dt = 0.05
    t = np.arange(20) * dt
    # x = t^3: third difference is 6 dt^3 everywhere -> jerk 6 m/s^3.
    assert jerk_rms(_line(t**3), dt) == pytest.approx(6.0, rel=1e-9)


def test_jerk_of_straight_line_is_zero_and_short_is_nan():
    t = np.arange(10) * 0.1
    p = np.stack([t, 2 * t, -t], axis=1)
    assert jerk_rms(p, 0.1) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(jerk_rms(p[:3], 0.1))


def test_jerk_rms_is_root_mean_square():
    # third differences 1, 0, 1 along x with dt=1 -> sqrt((1 + 0 + 1) / 3).
    x = np.array([0.0, 0.0, 0.0, 1.0, 3.0, 7.0])  # d1: 0 0 1 2 4; d2: 0 1 1 2; d3: 1 0 1
    assert jerk_rms(_line(x), 1.0) == pytest.approx(math.sqrt(2 / 3))


def test_accel_mean_is_per_step_not_per_second():
    dt = 0.05
    t = np.arange(10) * dt
    # x = t^2: second difference 2 dt^2 = 0.005 m/step^2 (not 2 m/s^2).
    assert accel_mean(_line(t**2)) == pytest.approx(2 * dt**2)
    assert math.isnan(accel_mean(_line(t[:2])))


def test_path_length():
    p = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 2.0]])
    assert path_length(p) == pytest.approx(7.0)
    assert path_length(p[:1]) == 0.0


def test_coverage_2d_known_geometry():
    ref = np.stack([np.arange(10.0), np.zeros(10)], axis=1)  # (0..9, 0)
    exe = np.stack([np.arange(5.0), np.full(5, 0.5)], axis=1)  # (0..4, 0.5)
    # ref 0..4 are 0.5 px away; ref 5 is sqrt(1 + 0.25) = 1.118 px from (4, 0.5).
    assert coverage(ref, exe, eps=1.0) == pytest.approx(0.5)
    assert coverage(ref, exe, eps=0.5) == pytest.approx(0.5)  # inclusive
    assert coverage(ref, exe, eps=1.2) == pytest.approx(0.6)
    assert coverage(ref, exe, eps=0.4) == 0.0


def test_coverage_3d_and_empty():
    ref = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    exe = np.array([[0.0, 0.0, 0.01]])
    assert coverage(ref, exe, eps=0.02) == pytest.approx(0.5)
    assert math.isnan(coverage(np.zeros((0, 3)), exe, eps=0.02))
    assert coverage(ref, np.zeros((0, 3)), eps=0.02) == 0.0


def test_gripper_chatter():
    assert gripper_chatter(np.array([-1, -1, 0, 1, 1, 0, -1, 1])) == 3
    assert gripper_chatter(np.array([-1.0, -1.0, 1.0, 1.0])) == 1
    assert gripper_chatter(np.zeros(5)) == 0
    assert gripper_chatter(np.array([])) == 0


def test_mcnemar_exact():
    # b10 = 5, b01 = 0: p = 2 * P(X <= 0), X ~ Bin(5, 1/2) = 2 / 32 = 0.0625.
    res = mcnemar_exact([True] * 5 + [True, False], [False] * 5 + [True, False])
    assert (res["b01"], res["b10"], res["n_pairs"]) == (0, 5, 7)
    assert res["p_value"] == pytest.approx(0.0625)
    assert mcnemar_exact([False] * 5, [True] * 5)["p_value"] == pytest.approx(0.0625)
    # b01 = 1, b10 = 3: 2 * (1 + 4) / 16 = 0.625.
    assert mcnemar_exact([0, 1, 1, 1], [1, 0, 0, 0])["p_value"] == pytest.approx(0.625)
    assert mcnemar_exact([True, False], [False, True])["p_value"] == 1.0  # capped at 1
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # no discordant pairs
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_diff():
    a = [True] * 10 + [False] * 10
    b = [True] * 17 + [False] * 3
    diff, low, high = paired_bootstrap_diff(a, b, seed=3)
    assert diff == pytest.approx(0.35)
    assert low <= diff <= high
    assert 0.0 <= low and high <= 1.0
    assert paired_bootstrap_diff(a, b, seed=3) == (diff, low, high)
    assert paired_bootstrap_diff(a, a) == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in paired_bootstrap_diff([], []))


def test_summarize_success():
    s = summarize_success([True] * 17 + [False] * 3)
    assert (s["k"], s["n"], s["rate"]) == (17, 20, 0.85)
    assert (s["ci_low"], s["ci_high"]) == wilson_interval(17, 20)
    assert math.isnan(summarize_success([])["rate"])
