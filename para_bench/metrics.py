"""Episode and comparison metrics: plain numpy, no simulator.

Definitions (what every number in a para-bench table means):

- **Success rate** — ``k / n`` successful episodes. Its 95% interval is the Wilson score
  interval (:func:`wilson_interval`), which stays inside [0, 1] and is sensible at
  ``k = 0`` and ``k = n``. Tables always show ``k/n`` next to the rate.
- **jerk** (:func:`jerk_rms`) — root mean square over time of the norm of the third finite
  difference of the executed end-effector position, sampled at the control rate, divided
  by ``dt**3``: ``sqrt(mean_t ||Δ³p_t||²) / dt³``. Positions in metres, ``dt`` in seconds
  (one control step), result in **m/s³**. Needs at least 4 positions, else NaN.
- **accel_mean** (:func:`accel_mean`) — the seed reports' "jerk", ``mean_t ||Δ²p_t||``:
  the mean norm of the second finite difference, **metres per step²**, *not* divided by
  ``dt``. It is an acceleration and is named as one. Needs at least 3 positions, else NaN.
- **path_length** (:func:`path_length`) — ``sum_t ||p_{t+1} - p_t||``, in the units of the
  positions (metres for EEF positions, pixels for image points). 0 for fewer than 2 points.
- **coverage** (:func:`coverage`) — fraction of the reference trajectory's points (the
  oracle's trajectory for the same ``EpisodeSpec``) whose nearest point of the executed
  trajectory lies within ``eps`` (Euclidean). In 2D the points are agent-view pixels
  (u, v) and ``eps`` is in pixels at the image size used; the 3D variant
  (``coverage_3d``) uses world positions in metres (``eps = 0.02`` is 2 cm). No reference
  points gives NaN; no executed points gives 0.
- **gripper_chatter** (:func:`gripper_chatter`) — number of sign changes in the sequence of
  gripper commands, zeros ignored (open -1 .. closed +1); a clean pick has 1.
- **Paired comparison** of agents A and B on the same episode plan:
  :func:`mcnemar_exact` counts the discordant pairs ``b01`` (A fails, B succeeds) and
  ``b10`` (A succeeds, B fails) and gives the exact two-sided McNemar p-value
  ``min(1, 2 * P(X <= min(b01, b10)))`` with ``X ~ Binomial(b01 + b10, 1/2)`` (1.0 when
  there are no discordant pairs). :func:`paired_bootstrap_diff` gives
  ``mean(B) - mean(A)`` (a fraction; x100 for percentage points) and its percentile
  bootstrap interval over resampled pairs.
- **Several training seeds** (:func:`stratified_bootstrap_rate`): a cell's success is the
  mean over seeds of each seed's success rate; its interval is a stratified percentile
  bootstrap (rliable-style): episodes are resampled within each seed, seeds kept.
  :func:`bootstrap_rate_diff` gives the difference of two such cells measured on
  different episodes (e.g. an out-of-distribution cell minus the in-distribution one),
  each resampled independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

__all__ = [
    "accel_mean",
    "bootstrap_rate_diff",
    "coverage",
    "gripper_chatter",
    "jerk_rms",
    "mcnemar_exact",
    "paired_bootstrap_diff",
    "path_length",
    "percent",
    "stratified_bootstrap_rate",
    "summarize_success",
    "wilson_interval",
]


def percent(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage string with ``digits`` decimals, exact halves rounded up.

    Every table, figure and export prints rates through this, so one number reads the same
    everywhere: 23/40 is ``57.5`` (``58`` at 0 digits) although ``100 * 23 / 40`` is
    57.49999... in binary, and 25/40 is ``63`` at 0 digits where Python's own rounding (to
    the even neighbour) writes 62.

    Args:
        fraction: the value in [0, 1] (a rate or an interval bound).
        digits: decimals to keep.
    """
    if fraction is None or math.isnan(fraction):
        return "-"
    # 9 decimals first: drops the binary noise of 100 * k / n, keeps every real difference
    exact = Decimal(repr(round(100 * fraction, 9)))
    return str(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        k: number of successes.
        n: number of trials.
        z: normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)`` as fractions in [0, 1]; ``(0.0, 1.0)`` when ``n == 0``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # at k = 0 or k = n a bound is exactly 0 or 1; computed, it can miss by rounding
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def _positions(positions: np.ndarray) -> np.ndarray:
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"positions must have shape (T, D), got {p.shape}")
    return p


def jerk_rms(positions: np.ndarray, dt: float) -> float:
    """RMS jerk of a trajectory sampled every ``dt`` seconds.

    Args:
        positions: (T, 3) positions in metres, one per control step.
        dt: control period in seconds.

    Returns:
        ``sqrt(mean_t ||Δ³p_t||²) / dt³`` in m/s³; NaN for fewer than 4 positions.
    """
    p = _positions(positions)
    if len(p) < 4:
        return float("nan")
    d3 = np.linalg.norm(np.diff(p, n=3, axis=0), axis=1) / dt**3
    return float(np.sqrt(np.mean(d3**2)))


def accel_mean(positions: np.ndarray) -> float:
    """Mean norm of the second finite difference (the seeds' ``mean ||ΔΔp||``).

    Args:
        positions: (T, 3) positions in metres, one per control step.

    Returns:
        ``mean_t ||Δ²p_t||`` in metres per step² (not divided by dt); NaN for fewer than 3
        positions.
    """
    p = _positions(positions)
    if len(p) < 3:
        return float("nan")
    return float(np.mean(np.linalg.norm(np.diff(p, n=2, axis=0), axis=1)))


def path_length(positions: np.ndarray) -> float:
    """Total length of a polyline.

    Args:
        positions: (T, D) points.

    Returns:
        ``sum_t ||p_{t+1} - p_t||`` in the points' units; 0.0 for fewer than 2 points.
    """
    p = _positions(positions)
    if len(p) < 2:
        return 0.0
    return float(np.sum(np.linalg.norm(np.diff(p, axis=0), axis=1)))


def coverage(reference: np.ndarray, executed: np.ndarray, eps: float) -> float:
    """Fraction of reference points with an executed point within ``eps``.

    Args:
        reference: (N, D) reference points (pixels for D=2, metres for D=3).
        executed: (M, D) executed points in the same units.
        eps: distance threshold in the same units (inclusive).

    Returns:
        Fraction in [0, 1]; NaN when ``reference`` is empty, 0.0 when ``executed`` is empty.
    """
    ref = np.asarray(reference, dtype=np.float64)
    exe = np.asarray(executed, dtype=np.float64)
    if ref.size == 0:
        return float("nan")
    if exe.size == 0:
        return 0.0
    ref, exe = _positions(ref), _positions(exe)
    if ref.shape[1] != exe.shape[1]:
        raise ValueError(f"dimension mismatch: reference {ref.shape}, executed {exe.shape}")
    covered = 0
    chunk = max(1, 2_000_000 // max(1, len(exe)))  # bound the (chunk, M) distance matrix
    for start in range(0, len(ref), chunk):
        r = ref[start : start + chunk]
        d2 = np.sum((r[:, None, :] - exe[None, :, :]) ** 2, axis=-1)
        covered += int(np.count_nonzero(d2.min(axis=1) <= eps * eps))
    return covered / len(ref)


def gripper_chatter(commands: np.ndarray) -> int:
    """Number of sign changes in a gripper command sequence, ignoring zeros.

    Args:
        commands: (T,) gripper commands (-1 open .. +1 closed).

    Returns:
        How many times the sign of the non-zero commands flips.
    """
    s = np.sign(np.asarray(commands, dtype=np.float64).ravel())
    s = s[s != 0]
    return int(np.count_nonzero(s[1:] != s[:-1]))


def _paired(a: Sequence[bool], b: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired sequences differ in length: {len(x)} vs {len(y)}")
    return x, y


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test for paired binary outcomes.

    Args:
        a: outcomes of agent A, one per episode.
        b: outcomes of agent B on the same episodes, same order.

    Returns:
        ``{"n_pairs", "b01", "b10", "p_value"}`` where ``b01`` counts pairs with A failing
        and B succeeding, ``b10`` the reverse, and ``p_value`` is
        ``min(1, 2 * P(X <= min(b01, b10)))`` with ``X ~ Bin(b01 + b10, 0.5)``.
    """
    x, y = _paired(a, b)
    xa, yb = x.astype(bool), y.astype(bool)
    b01 = int(np.count_nonzero(~xa & yb))
    b10 = int(np.count_nonzero(xa & ~yb))
    m = b01 + b10
    if m == 0:
        p = 1.0
    else:
        tail = sum(math.comb(m, i) for i in range(min(b01, b10) + 1))
        p = min(1.0, 2.0 * tail / 2**m)
    return {"n_pairs": len(x), "b01": b01, "b10": b10, "p_value": p}


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Difference of means of paired samples with a percentile bootstrap interval.

    Pairs are resampled together (with replacement), so the interval respects the pairing.

    Args:
        a: values of A (e.g. success as 0/1), one per episode.
        b: values of B on the same episodes, same order.
        n_boot: bootstrap resamples.
        seed: RNG seed; the same seed gives the same interval.
        alpha: 1 - confidence level.

    Returns:
        ``(mean(b) - mean(a), low, high)``; all NaN when there are no pairs.
    """
    x, y = _paired(a, b)
    n = len(x)
    if n == 0:
        nan = float("nan")
        return nan, nan, nan
    diff = float(y.mean() - x.mean())
    rng = np.random.default_rng(seed)
    d = y - x
    boots = np.empty(n_boot)
    step = max(1, 1_000_000 // n)  # bound the (step, n) index matrix
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        boots[start:stop] = d[idx].mean(axis=1)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return diff, float(low), float(high)


def summarize_success(successes: Sequence[bool]) -> dict:
    """Success count, rate and 95% Wilson interval.

    Args:
        successes: one boolean per episode (errors count as failures).

    Returns:
        ``{"k", "n", "rate", "ci_low", "ci_high"}`` with fractions in [0, 1]; ``rate`` is NaN
        when ``n == 0``.
    """
    s = np.asarray(successes, dtype=bool).ravel()
    k, n = int(np.count_nonzero(s)), len(s)
    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci_low": low, "ci_high": high}


def _stratified_boots(strata: Sequence[Sequence[bool]], n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of the mean over strata of each stratum's mean."""
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in strata]
    groups = [g for g in groups if len(g)]
    if not groups:
        return np.full(n_boot, np.nan)
    total = np.zeros(n_boot)
    for g in groups:
        idx = rng.integers(0, len(g), size=(n_boot, len(g)))
        total += g[idx].mean(axis=1)
    return total / len(groups)


def stratified_bootstrap_rate(
    strata: Sequence[Sequence[bool]], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean of per-stratum success rates with a stratified percentile bootstrap interval.

    Args:
        strata: outcomes per stratum (e.g. per training seed), one boolean per episode.
        n_boot: bootstrap resamples.
        seed: RNG seed; the same seed gives the same interval.
        alpha: 1 - confidence level.

    Returns:
        ``(rate, low, high)`` as fractions; NaN when every stratum is empty.
    """
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in strata]
    groups = [g for g in groups if len(g)]
    if not groups:
        nan = float("nan")
        return nan, nan, nan
    rate = float(np.mean([g.mean() for g in groups]))
    boots = _stratified_boots(groups, n_boot, np.random.default_rng(seed))
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return rate, float(low), float(high)


def bootstrap_rate_diff(
    a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], n_boot: int = 2000,
    seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Difference ``rate(b) - rate(a)`` of two independently measured cells.

    Each cell is a list of strata (e.g. per training seed; one stratum for one seed),
    resampled as in :func:`stratified_bootstrap_rate`, the two cells independently.

    Returns:
        ``(diff, low, high)`` as fractions; NaN when a cell has no episodes.
    """
    rng = np.random.default_rng(seed)
    ra, rb = stratified_bootstrap_rate(a)[0], stratified_bootstrap_rate(b)[0]
    if math.isnan(ra) or math.isnan(rb):
        nan = float("nan")
        return nan, nan, nan
    boots = _stratified_boots(b, n_boot, rng) - _stratified_boots(a, n_boot, rng)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return rb - ra, float(low), float(high)
