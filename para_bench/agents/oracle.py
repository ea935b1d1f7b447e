"""``oracle``: a privileged scripted pick-and-place expert.

It reads object poses and the BDDL goal from ``info`` (it declares ``privileged=True``)
and object extents from ``info["object_extents"]``, and returns end-effector targets
executed by ``servo`` (one target per control step, ``CHUNK`` targets per call) through
the same control path as every agent. It handles goals ``(on X Y)`` and ``(in X Y)``,
with ``Y`` an object or an object's region (``basket_1_contain_region``) — every
libero_spatial and libero_object task.

Grasp: objects narrower than the gripper opening are grasped at their centre, closing
across their narrow side (shifted along the long side where the hand would come down on a
taller neighbour); wider ones (bowls, ramekins) by the rim, fingers half closed,
one finger inside, on the side with the most free space that keeps the EEF within reach
(and, in a drawer, across the drawer; with ``rim_side_margin``, the first side in a fixed
order whose score is that close to the best, so near-ties do not flip the side from scene
to scene); a tilted bowl is grasped at its rim's height on
that side. Carry: at the lowest height that clears what lies between object and target.
Place: the object's body over the target's body, released just above its top.

Recovery: a descent that stops short (blocked) or a lift that leaves the object behind
marks that rim side (or centre shift) as failed and re-plans; an object that slips out
while carried, or is released somewhere that does not satisfy the goal, is grasped again,
another way. A motion that stops making progress (workspace edge, a sagging load) counts
as done. The grasp plan is recomputed from the current poses at every call until the
object is grasped.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from para_bench.agents.base import AgentRequirements, BaseAgent
from para_bench.envs.camera import mat_to_quat_xyzw
from para_bench.envs.control import quat_xyzw_to_mat
from para_bench.registry import register_agent
from para_bench.types import ActionChunk

OPEN, CLOSED = -1.0, 1.0
HOLD = 0.0  # gripper command that leaves the fingers where they are (robosuite integrates sign)
MAX_HALF_WIDTH = 0.036  # half of what the Panda fingers can span with margin
HOVER = 0.12  # metres above the grasp / place point for the approach
SPEED = 0.01  # metres per control step along a servoed path (the EEF lags behind)
DESCEND_SPEED = 0.008  # metres per control step of the descent onto a grasp
CHUNK = 8  # control steps (targets) per chunk: a blocked or stalled motion costs about this
GRIP_WAIT = 10  # control steps to close or open the gripper
ALIGN_STEPS = 6  # control steps above the object for the wrist to finish turning
RIM_PRESHAPE = 3  # control steps of closing before a rim grasp: fingers ~2.5 cm off the centre
RIM_INSET = 0.007  # metres from a bowl's outer edge (its AABB) in to the grasped wall
RIM_DEPTH = 0.012  # metres below a bowl's top for a rim grasp
GRASP_TOL = 0.004  # metres; how close to the grasp point the EEF gets before closing
LIFT_CHECK = 0.02  # metres of lift after which a grasped object must have risen half as much
STALL = 0.002  # metres; a chunk getting less than this closer to its goal has stopped
BLOCKED_DIST = 0.015  # metres; a descent stopped this far from the grasp point is blocked
PLACE_CLEARANCE = 0.01  # metres between the held object's bottom and the target's top
CARRY_CLEARANCE = 0.03  # metres between the held object's bottom and anything it passes over
CORRIDOR_MARGIN = 0.02  # metres added to the held object's half-width when looking for obstacles
MIN_LIFT = 0.06  # metres; the carry never starts lower than this above the grasp point
DROP_TOL = 0.03  # metres the object may shift in the fingers before it counts as dropped
ROBOT_BASE_XY = (-0.66, 0.0)  # the Panda's mount on LIBERO's tables, world frame, metres
REACH_XY = 0.78  # metres from the mount the EEF reaches comfortably at carrying heights
CONTAINED_PENALTY = 0.05  # side-choice penalty (metres) for closing along a drawer's pull
# the Panda hand's collision box in the grip site's frame (robosuite's model, measured):
HAND_HALF_SPAN = 0.105  # metres: half-width along the fingers' closing axis
HAND_HALF_DEPTH = 0.032  # metres: half-depth across that axis
HAND_HEIGHT = 0.026  # metres from the grip site (the finger pads) up to the hand's body
HAND_MARGIN = 0.01  # metres of horizontal gap the hand keeps from a taller neighbour
CENTRE_SHIFTS = (0.0, -0.015, 0.015, -0.025, 0.025)  # metres along a centre grasp's long side
CENTRE_EDGE = 0.015  # metres a shifted centre grasp stays in from the object's end
SQUARE_DEG = 10.0  # degrees an object's axis may turn off the world's and still be shifted
REACH_WEIGHT = 3.0  # side-choice penalty per metre beyond REACH_XY (clearances are in metres)
# default rim_side_margin (metres): +y and -y walls often score within a few millimetres
# of each other, and 0 (the best side) flips the side between scenes that look alike
RIM_SIDE_MARGIN = 0.03


# rim grasp candidates: (direction from the bowl's centre to the grasped wall, wrist yaw)
RIM_SIDES = (((0, 1), 0.0), ((0, -1), 0.0), ((1, 0), np.pi / 2), ((-1, 0), np.pi / 2))


def _rotz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@register_agent("oracle", description="privileged scripted pick-and-place expert (servo)")
class OracleAgent(BaseAgent):
    """Scripted expert for ``on`` / ``in`` goals; see the module docstring."""

    requirements = AgentRequirements(privileged=True, control="servo")

    def __init__(self, rim_side_margin: float = RIM_SIDE_MARGIN) -> None:
        """Args:
            rim_side_margin: metres; a rim side whose score is within this of the best,
                earlier in ``RIM_SIDES`` (+y, -y, +x, -x), is taken (0: the best).
        """
        super().__init__()
        if not 0.0 <= rim_side_margin < 0.1:
            raise ValueError(f"rim_side_margin must be in [0, 0.1) metres, not {rim_side_margin}")
        self.rim_side_margin = float(rim_side_margin)

    def reset(self, task: dict[str, Any], seed: int) -> None:
        super().reset(task, seed)
        self.phase = "approach"
        self.wait = 0
        self.start_rot: np.ndarray | None = None
        self.grasp: dict[str, Any] | None = None
        # grasps that did not work: rim sides (direction) and centre shifts ("centre", m)
        self.failed_sides: set[tuple] = set()
        self.last_dist: float | None = None  # distance to the phase's goal at its last chunk
        self.held = np.zeros(3)  # EEF relative to the object when it was lifted, metres
        self.carry_z = 0.0  # EEF height for the carry, metres

    # ------------------------------------------------------------------ planning
    def _goal(self, info: dict[str, Any]) -> tuple[str, str]:
        """``(object, target)`` bodies of the first ``on`` / ``in`` goal.

        A target that is a region of an object (``basket_1_contain_region``, a site with no
        pose of its own) is replaced by the object it belongs to (``basket_1``).
        """
        for pred in info["goal"]:
            if pred[0].lower() in ("on", "in") and len(pred) == 3:
                obj, target = pred[1], pred[2]
                if target not in info["object_poses"]:
                    owners = [n for n in info["object_poses"] if target.startswith(n + "_")]
                    if not owners:
                        raise ValueError(f"oracle: no object holds the goal region {target!r}")
                    target = max(owners, key=len)
                return obj, target
        raise ValueError(f"oracle handles (on X Y) / (in X Y) goals, got {info['goal']}")

    def _plan_grasp(self, obj: str, target: str, info: dict[str, Any]) -> dict[str, Any]:
        ext = info["object_extents"]
        lo, hi = np.asarray(ext[obj][0]), np.asarray(ext[obj][1])
        center, half = (lo + hi) / 2, (hi - lo) / 2
        others = [(np.asarray(a), np.asarray(b)) for n, (a, b) in ext.items() if n != obj]
        if min(half[0], half[1]) <= MAX_HALF_WIDTH:
            rot = quat_xyzw_to_mat(info["object_poses"][obj][3:])
            return self._plan_centre_grasp(lo, hi, others, rot)
        # rim grasp: one finger inside the wall, on the side with the most free space
        sides = [side for side in RIM_SIDES if side[0] not in self.failed_sides]
        if not sides:  # every side failed once: try them all again
            self.failed_sides = {f for f in self.failed_sides if f[0] == "centre"}
            sides = list(RIM_SIDES)
        # an object sitting inside another's box below its top is in a drawer or bin: the
        # walls across the direction it was pulled out (container centre -> object) are
        # the near ones, so prefer fingers closing across that direction
        outward = np.zeros(2)
        for a, b in others:
            if np.all(center[:2] > a[:2]) and np.all(center[:2] < b[:2]) and hi[2] < b[2]:
                outward = center[:2] - (a[:2] + b[:2]) / 2
                outward /= max(float(np.linalg.norm(outward)), 1e-9)
        scored = []  # (clearance score, rim point, wrist yaw, direction), in RIM_SIDES order
        for direction, yaw in sides:
            d = np.array([*direction, 0.0])
            reach = half[1] if direction[0] == 0 else half[0]
            p = center + d * (reach - RIM_INSET)
            outer = p + d * 0.04  # the outside finger
            clear = min((_aabb_distance_xy(outer, a, b) for a, b in others), default=1.0)
            clear = min(clear, 0.06) - (0.01 if yaw else 0.0)  # prefer no wrist rotation
            if direction == (1, 0):  # reaching over the far side: less robust
                clear -= 0.02
            clear -= CONTAINED_PENALTY * abs(float(np.dot(direction, outward)))
            # where the EEF ends up when the object sits on the target: keep it in reach
            place_xy = np.asarray(info["object_poses"][target][:2]) + (p - center)[:2]
            clear -= REACH_WEIGHT * max(0.0, max(_reach(p), _reach(place_xy)) - REACH_XY)
            scored.append((clear, p, yaw, direction))
        # the first side (in RIM_SIDES order) within the margin of the best score
        top = max(c for c, *_ in scored)
        _, p, yaw, side = next(x for x in scored if x[0] >= top - self.rim_side_margin)
        # a tilted bowl's rim is lower on the side its opening faces: the rim point in
        # horizontal direction d sits about r * (|u_h| + d . u_h) below the box top, with
        # u_h the horizontal part of the bowl's axis and r its radius
        up = quat_xyzw_to_mat(info["object_poses"][obj][3:])[:, 2]
        radius = half[1] if side[0] == 0 else half[0]
        drop = radius * (np.linalg.norm(up[:2]) + float(np.dot(side, up[:2])))
        point = np.array([p[0], p[1], hi[2] - RIM_DEPTH - drop])
        return {"point": point, "yaw": yaw, "object_z": lo[2], "side": side, "rim": True}

    def _plan_centre_grasp(self, lo: np.ndarray, hi: np.ndarray,
                           others: list[tuple[np.ndarray, np.ndarray]],
                           rot: np.ndarray) -> dict[str, Any]:
        """Grasp across the narrow horizontal side of the box ``lo``-``hi``, at the centre
        or, where the hand would come down on a taller neighbour, shifted along the long
        side.

        The hand body spans ``HAND_HALF_SPAN`` along the fingers' closing direction and
        ``HAND_HALF_DEPTH`` across it, ``HAND_HEIGHT`` above the grasp point: a neighbour
        whose top reaches into that box blocks the descent. Candidate points along the long
        side (``CENTRE_SHIFTS``, kept ``CENTRE_EDGE`` in from the ends) are tried nearest
        the centre first; a shifted grasp that failed (any failure) is not tried again
        until all have. Only an object lying square to the world axes (one of its own
        axes, ``rot``'s columns, within ``SQUARE_DEG`` of the box's long side) is shifted:
        the box says nothing of where a turned object's body runs.
        """
        center, half = (lo + hi) / 2, (hi - lo) / 2
        along_x = half[1] <= half[0]  # long side along x: fingers close along y (yaw 0)
        yaw = 0.0 if along_x else np.pi / 2
        z = max(lo[2] + 0.015, hi[2] - 0.03)
        long_half = half[0] if along_x else half[1]
        axis = np.array([1.0, 0.0]) if along_x else np.array([0.0, 1.0])
        square = max(abs(float(rot[:2, i] @ axis)) for i in range(3))
        reach = max(0.0, long_half - CENTRE_EDGE) if square >= np.cos(np.radians(SQUARE_DEG)) \
            else 0.0
        shifts = [s for s in CENTRE_SHIFTS if abs(s) <= reach + 1e-9
                  and ("centre", s) not in self.failed_sides]
        if not shifts:  # every shift failed once: try them all again
            self.failed_sides = {f for f in self.failed_sides if f[0] != "centre"}
            shifts = [s for s in CENTRE_SHIFTS if abs(s) <= reach + 1e-9]
        tall = [(a, b) for a, b in others if b[2] > z + HAND_HEIGHT]
        span = np.array([HAND_HALF_DEPTH, HAND_HALF_SPAN]) if along_x \
            else np.array([HAND_HALF_SPAN, HAND_HALF_DEPTH])
        centres = [center[:2] + axis * shift for shift in shifts]
        clears = [min((_aabb_gap_xy(xy - span, xy + span, a, b) for a, b in tall), default=1.0)
                  for xy in centres]
        # nearest the centre first: the first that clears the hand, else the clearest
        best = next((i for i, c in enumerate(clears) if c >= HAND_MARGIN),
                    int(np.argmax(clears)))
        xy = centres[best]
        return {"point": np.array([xy[0], xy[1], z]), "yaw": yaw, "object_z": lo[2],
                "side": ("centre", shifts[best]), "rim": False}

    def _place_point(self, obj: str, target: str, eef: np.ndarray,
                     info: dict[str, Any]) -> np.ndarray:
        """EEF target putting the held object's body over the target's body.

        LIBERO's ``on`` / ``in`` checks compare body positions, so the object's body (not
        the EEF) is aligned with the target's body, using the live EEF-to-object offset
        (the object swings in the fingers). The height puts the object's lowest point
        ``PLACE_CLEARANCE`` above the target's top.
        """
        poses, ext = info["object_poses"], info["object_extents"]
        xy = np.asarray(poses[target][:2]) + eef[:2] - np.asarray(poses[obj][:2])
        hang = eef[2] - ext[obj][0][2]  # EEF height above the object's lowest point
        return np.array([xy[0], xy[1], ext[target][1][2] + PLACE_CLEARANCE + hang])

    def _carry_height(self, obj: str, target: str, eef: np.ndarray,
                      info: dict[str, Any]) -> float:
        """EEF height for carrying ``obj`` straight over to ``target``.

        The held object's bottom passes ``CARRY_CLEARANCE`` over every other object whose
        box comes near the straight corridor from the object to the target (the target
        itself is cleared by the place height), and the carry starts at least
        ``MIN_LIFT`` above the grasp point.
        """
        poses, ext = info["object_poses"], info["object_extents"]
        lo, hi = np.asarray(ext[obj][0]), np.asarray(ext[obj][1])
        hang = eef[2] - lo[2]
        start, end = np.asarray(poses[obj][:2]), np.asarray(poses[target][:2])
        width = float(np.max(hi[:2] - lo[:2])) / 2 + CORRIDOR_MARGIN
        line = start + (end - start) * np.linspace(0.0, 1.0, 25)[:, None]
        top = -np.inf
        for name, (a, b) in ext.items():
            if name in (obj, target):
                continue
            a, b = np.asarray(a), np.asarray(b)
            if min(_aabb_distance_xy(q, a, b) for q in line) < width:
                top = max(top, b[2])
        place_z = self._place_point(obj, target, eef, info)[2]
        return max(top + CARRY_CLEARANCE + hang, place_z, self.grasp["point"][2] + MIN_LIFT)

    def _path(self, start: np.ndarray, goal: np.ndarray, speed: float) -> np.ndarray:
        """``CHUNK`` servo targets from ``start`` to ``goal``, ``speed`` apart, then ``goal``."""
        n = max(1, int(np.ceil(np.linalg.norm(goal - start) / speed)))
        frac = np.minimum(np.arange(1, CHUNK + 1) / n, 1.0)[:, None]
        return start + (goal - start) * frac

    # ------------------------------------------------------------------ acting
    def _give_up_grasp(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        """Marks the current grasp (rim side or centre shift) as failed and backs up to
        re-plan it."""
        self.failed_sides.add(self.grasp["side"])
        return self._advance("retreat_grasp", obs, info)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        """Next chunk (the plan is a small state machine over ``self.phase``)."""
        phase = self.phase
        chunk = self._act(obs, info)
        if self.phase != phase:  # progress is judged only within one phase
            self.last_dist = None
        return chunk

    def _advance(self, next_phase: str, obs: dict[str, np.ndarray],
                 info: dict[str, Any]) -> ActionChunk:
        self.phase, self.last_dist = next_phase, None
        return self._act(obs, info)

    def _stalled(self, dist: float) -> bool:
        """Whether the last chunk of this phase brought the EEF less than ``STALL`` closer."""
        stalled = self.last_dist is not None and self.last_dist - dist < STALL
        self.last_dist = dist
        return stalled

    def _act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        eef = np.asarray(obs["eef_pos"])
        if self.start_rot is None:
            self.start_rot = quat_xyzw_to_mat(obs["eef_quat_xyzw"])
        obj, target = self._goal(info)
        if self.phase == "approach":
            self.grasp = self._plan_grasp(obj, target, info)
        g = self.grasp
        orient = mat_to_quat_xyzw(_rotz(g["yaw"]) @ self.start_rot)
        hover = g["point"] + [0, 0, HOVER]

        def go(goal: np.ndarray, grip: float, next_phase: str, tol: float = 0.01,
               speed: float = SPEED) -> ActionChunk:
            # a goal the arm cannot reach exactly (workspace edge, contact, a held load the
            # controller sags under) counts as reached once a chunk stops bringing it closer
            dist = float(np.linalg.norm(goal - eef))
            if dist < tol or self._stalled(dist):
                return self._advance(next_phase, obs, info)
            path = self._path(eef, goal, speed)
            return ActionChunk.from_targets(path, grip, np.tile(orient, (len(path), 1)),
                                            control="servo")

        def hold(at: np.ndarray, grip: float, next_phase: str) -> ActionChunk:
            self.phase = next_phase
            return ActionChunk.from_targets(np.tile(at, (GRIP_WAIT, 1)), grip,
                                            np.tile(orient, (GRIP_WAIT, 1)), control="servo")

        if self.phase == "approach":
            return go(hover, OPEN, "align", tol=0.02)
        if self.phase == "retreat_grasp":  # back up above the failed grasp, then re-plan
            return go(hover, OPEN, "approach", tol=0.02)
        rim = g["rim"]
        if self.phase == "align":
            # let the wrist finish turning above the object; for a rim grasp, half close
            # the fingers so the outer one needs less room beside the wall
            self.phase = "descend"
            grip = [OPEN] * ALIGN_STEPS + [CLOSED] * (RIM_PRESHAPE if rim else 0)
            return ActionChunk.from_targets(np.tile(hover, (len(grip), 1)), np.array(grip),
                                            np.tile(orient, (len(grip), 1)), control="servo")
        if self.phase == "descend":
            dist = float(np.linalg.norm(g["point"] - eef))
            if dist > BLOCKED_DIST and self.last_dist is not None \
                    and self.last_dist - dist < STALL:
                return self._give_up_grasp(obs, info)  # something is in the way
            return go(g["point"], HOLD if rim else OPEN, "close", GRASP_TOL, DESCEND_SPEED)
        if self.phase == "close":
            return hold(g["point"], CLOSED, "lift")
        place = self._place_point(obj, target, eef, info)
        held = eef - np.asarray(info["object_poses"][obj][:3])  # EEF relative to the object
        if self.phase == "lift":
            rise = eef[2] - g["point"][2]
            if rise > LIFT_CHECK and info["object_extents"][obj][0][2] < g["object_z"] + rise / 2:
                return self._give_up_grasp(obs, info)  # the object stayed behind
            self.held = held
            self.carry_z = self._carry_height(obj, target, eef, info)
            return go(np.array([eef[0], eef[1], self.carry_z]), CLOSED, "carry", tol=0.02)
        if self.phase in ("carry", "lower") and np.linalg.norm(held - self.held) > DROP_TOL:
            # the object slipped out of the fingers: grasp it again where it lies, another way
            self.failed_sides.add(g["side"])
            self.grasp = self._plan_grasp(obj, target, info)
            return self._advance("retreat_grasp", obs, info)
        safe_z = self.carry_z
        if self.phase == "carry":
            return go(np.array([place[0], place[1], safe_z]), CLOSED, "lower", tol=0.015)
        if self.phase == "lower":
            return go(place, CLOSED, "release", tol=0.01)
        if self.phase == "release":
            return hold(eef, OPEN, "retreat")
        if self.phase == "retreat":
            return go(place + [0, 0, 0.1], OPEN, "done", tol=0.02)
        if not info["success"]:  # released, but not where it counts: pick it up again
            self.failed_sides.add(g["side"])
            return self._advance("approach", obs, info)
        return hold(eef, OPEN, "done")


def _reach(xy: np.ndarray) -> float:
    """Horizontal distance (metres) of a point from the robot's mount."""
    return float(np.linalg.norm(np.asarray(xy[:2]) - ROBOT_BASE_XY))


def _aabb_gap_xy(lo1: np.ndarray, hi1: np.ndarray, lo2: np.ndarray, hi2: np.ndarray) -> float:
    """Horizontal gap (metres) between two boxes; 0 where they overlap."""
    d = np.maximum(np.maximum(lo2[:2] - hi1[:2], 0.0), lo1[:2] - hi2[:2])
    return float(np.linalg.norm(d))


def _aabb_distance_xy(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Horizontal distance (metres) from a point to a box; 0 inside it."""
    return _aabb_gap_xy(p, p, lo, hi)
