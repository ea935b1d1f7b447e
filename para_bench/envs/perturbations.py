"""Scene perturbations given as plain, serialisable parameters (reset options).

* :class:`CameraPerturbation` — orbit the agent-view camera about the point where its
  optical axis meets the table: ``yaw_deg`` about the world z axis, ``pitch_deg`` change
  of elevation (positive = higher), ``distance_scale`` (1.0 = as built).
* :class:`ObjectShift` — shift the task's movable objects (all, or ``names``) by
  ``dx`` / ``dy`` metres in the table frame (LIBERO's table axes are the world x / y axes),
  then let the scene settle; infeasible placements raise ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MAX_YAW_DEG = 90.0
MAX_PITCH_DEG = 40.0
DISTANCE_SCALE_RANGE = (0.5, 2.0)
MAX_SHIFT_M = 0.3


def _number(d: dict, key: str, default: float, what: str) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} option {key!r} must be a finite number, got {value!r}")
    return float(value)


def _check_keys(d: Any, allowed: set[str], what: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{what} options must be a dict, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(
            f"unknown {what} option(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return d


@dataclass(frozen=True)
class CameraPerturbation:
    """Orbit of the agent-view camera; see the module docstring."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    distance_scale: float = 1.0

    @classmethod
    def from_options(cls, d: dict | None) -> CameraPerturbation | None:
        """Validates a ``camera`` reset option; ``None`` / ``{}`` means no perturbation."""
        if not d:
            return None
        _check_keys(d, {"yaw_deg", "pitch_deg", "distance_scale"}, "camera")
        p = cls(
            yaw_deg=_number(d, "yaw_deg", 0.0, "camera"),
            pitch_deg=_number(d, "pitch_deg", 0.0, "camera"),
            distance_scale=_number(d, "distance_scale", 1.0, "camera"),
        )
        if abs(p.yaw_deg) > MAX_YAW_DEG:
            raise ValueError(f"camera yaw_deg must be within ±{MAX_YAW_DEG}, got {p.yaw_deg}")
        if abs(p.pitch_deg) > MAX_PITCH_DEG:
            raise ValueError(
                f"camera pitch_deg must be within ±{MAX_PITCH_DEG}, got {p.pitch_deg}"
            )
        lo, hi = DISTANCE_SCALE_RANGE
        if not lo <= p.distance_scale <= hi:
            raise ValueError(
                f"camera distance_scale must be in [{lo}, {hi}], got {p.distance_scale}"
            )
        return p

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectShift:
    """Shift of movable objects in the table plane; see the module docstring."""

    dx: float = 0.0
    dy: float = 0.0
    names: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, d: dict | None) -> ObjectShift | None:
        """Validates an ``objects`` reset option; ``None`` / ``{}`` means no perturbation."""
        if not d:
            return None
        _check_keys(d, {"dx", "dy", "names"}, "objects")
        names = d.get("names")
        if names is not None:
            if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
                raise ValueError("objects option 'names' must be a non-empty list of object names")
            names = tuple(names)
        p = cls(_number(d, "dx", 0.0, "objects"), _number(d, "dy", 0.0, "objects"), names)
        if math.hypot(p.dx, p.dy) > MAX_SHIFT_M:
            raise ValueError(f"object shift must be at most {MAX_SHIFT_M} m, got ({p.dx}, {p.dy})")
        return p

    def to_dict(self) -> dict:
        d = asdict(self)
        d["names"] = list(self.names) if self.names else None
        return d
