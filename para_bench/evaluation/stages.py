"""How far a pick-and-place episode got, from privileged state the agent never sees.

Distances are to the object's collision surfaces (``LiberoEnv.gripper_surface_distance``:
gripper geometry to the nearest surface of the object to move), not to its frame origin:
the oracle grasps a bowl by its rim, 6 cm or more from the bowl's origin.

Stages, each implying the ones before:

* ``approached`` -- the gripper came within :data:`APPROACH_M` of the object's surface;
* ``grasped`` -- the object rose :data:`LIFT_M` above where it started while the gripper
  was within :data:`HOLD_M` of its surface;
* ``placed`` -- the task succeeded.

The thresholds are checked against the oracle's own successful episodes (a real-simulator
test: every oracle success passes through every stage). Tasks without an ``(on X Y)`` /
``(in X Y)`` goal on a movable object report None.

The first grasp attempt tells a failure that closed on the object (and did not hold it)
from one that closed in the air or on something else: the first close command held for
:data:`GRASP_HOLD_STEPS` control steps in a row (a grasp; the oracle's 3-step pre-shape
of the fingers above a bowl is not one), its control step and the gripper's distance to
the object's surface when it began. Every oracle success attempts within 2 cm.
"""

from __future__ import annotations

import numpy as np

APPROACH_M = 0.02
LIFT_M = 0.03
HOLD_M = 0.01
GRASP_HOLD_STEPS = 10  # the oracle waits this long for the fingers to close


class StageTracker:
    """Tracks the stages of one episode from the env's ``info`` dicts (see module docstring)."""

    def __init__(self, info: dict) -> None:
        self.obj = info.get("goal_object")
        poses = info.get("object_poses", {})
        if self.obj not in poses:
            self.obj = None
        self.z0 = float(poses[self.obj][2]) if self.obj else 0.0
        self.approached = self.grasped = False
        #: control step (1-based) at which the first grasp attempt began; None until one
        self.attempt_step: int | None = None
        #: gripper-to-object surface distance (m) when it began
        self.attempt_m: float | None = None
        self._run: tuple[int, float | None] | None = None  # current close run: start, distance
        self._run_len = 0  # its length in control steps

    def update(self, info: dict) -> None:
        """Feeds the ``info`` of one executed chunk (per-step distances + final poses)."""
        if self.obj is None:
            return
        dists = np.asarray(info.get("goal_object_distances", []), dtype=np.float64)
        if dists.size:
            self.approached |= bool(dists.min() < APPROACH_M)
        if self.attempt_step is None:
            self._find_attempt(info, dists)
        last = info.get("goal_object_distance")
        if last is None and dists.size:
            last = float(dists[-1])
        lifted = float(info["object_poses"][self.obj][2]) > self.z0 + LIFT_M
        if lifted and last is not None and last < HOLD_M:
            self.grasped = self.approached = True

    def _find_attempt(self, info: dict, dists: np.ndarray) -> None:
        """Follows runs of close commands through the chunk (``info["commands"]``: (K, 7),
        one per control step, aligned with the per-step distances)."""
        cmds = np.asarray(info.get("commands", np.zeros((0, 7))), dtype=np.float64)
        if cmds.ndim != 2 or not len(cmds):
            return
        first = int(info.get("steps", len(cmds))) - len(cmds) + 1
        for i, closing in enumerate(cmds[:, 6] > 0):
            if not closing:
                self._run, self._run_len = None, 0
                continue
            if self._run is None:
                self._run = (first + i, float(dists[i]) if i < dists.size else None)
            self._run_len += 1
            if self._run_len >= GRASP_HOLD_STEPS:
                self.attempt_step, self.attempt_m = self._run
                return

    def stage(self, success: bool) -> str | None:
        """``none`` / ``approached`` / ``grasped`` / ``placed`` (None without a tracked object)."""
        if self.obj is None:
            return "placed" if success else None
        if success:
            return "placed"
        return "grasped" if self.grasped else "approached" if self.approached else "none"

    def observed(self, success: bool) -> dict[str, bool | None]:
        """The stages actually observed (not implied by a later one):
        ``{"approached", "grasped", "placed"}``; None without a tracked object."""
        if self.obj is None:
            return {"approached": None, "grasped": None, "placed": bool(success)}
        return {"approached": self.approached, "grasped": self.grasped, "placed": bool(success)}
