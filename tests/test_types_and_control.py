"""ActionChunk validation and the control path, against a fake controllable body."""

from __future__ import annotations

import numpy as np
import pytest

from para_bench.envs.control import (
    ControlConfig,
    execute_chunk,
    quat_xyzw_to_mat,
    rotation_error,
)
from para_bench.types import ActionChunk, as_action_chunk


class PointBody:
    """A point that moves by ``0.05 * a[:3]`` per control step, like OSC at steady state."""

    def __init__(self, max_steps: int = 100) -> None:
        self.pos = np.zeros(3)
        self.steps = 0
        self.max_steps = max_steps
        self.sent: list[np.ndarray] = []
        self.renders = 0

    def _control_step(self, action, render):
        self.sent.append(action.copy())
        self.pos = self.pos + 0.05 * action[:3]
        self.steps += 1
        self.renders += bool(render)
        return False

    def _eef_pos(self):
        return self.pos.copy()

    def _eef_rotmat(self):
        return np.eye(3)

    @property
    def _start_rotmat(self):
        return np.eye(3)

    @property
    def _steps_left(self):
        return self.max_steps - self.steps


def test_plain_arrays_are_deltas_and_bad_actions_are_rejected():
    assert as_action_chunk(np.zeros(7)).deltas.shape == (1, 7)
    assert len(as_action_chunk(np.zeros((4, 7)))) == 4
    with pytest.raises(ValueError, match="NaN"):
        as_action_chunk(np.full(7, np.nan))
    with pytest.raises(ValueError, match=r"\(7,\) or \(K, 7\)"):
        as_action_chunk(np.zeros(6))
    with pytest.raises(ValueError, match="targets must have shape"):
        ActionChunk(targets=np.zeros((2, 2)), gripper=np.zeros(2)).validate()
    with pytest.raises(ValueError, match="exactly one"):
        ActionChunk().validate()


def test_delta_chunk_applies_scale_and_clips_and_renders_once():
    body = PointBody()
    res = execute_chunk(body, as_action_chunk(np.tile([0.5, 0, 0, 0, 0, 0, -1], (4, 1))),
                        ControlConfig(action_scale=3.0))
    assert res.steps == 4 and body.renders == 1 and res.rendered_in_step
    assert np.allclose([a[0] for a in body.sent], 1.0)  # 0.5 * 3 clipped to 1
    assert res.eef_trajectory.shape == (4, 3)
    assert np.isclose(body.pos[0], 0.2)


def test_teleport_reaches_each_target_within_tolerance():
    body = PointBody()
    targets = np.array([[0.1, 0, 0], [0.1, 0.1, 0]])
    res = execute_chunk(body, ActionChunk.from_targets(targets, -1.0, control="teleport"),
                        ControlConfig(mode="servo", teleport_tol=0.005))
    assert np.linalg.norm(body.pos - targets[-1]) < 0.005
    assert res.steps >= 4


def test_every_chunk_makes_progress_and_max_steps_bounds_it():
    body = PointBody(max_steps=3)
    res = execute_chunk(body, ActionChunk.from_targets(np.zeros((2, 3)), -1.0,
                                                       control="teleport"), ControlConfig())
    assert res.steps == 1  # already at the target: still one step, so episodes always end
    res = execute_chunk(body, as_action_chunk(np.zeros((10, 7))), ControlConfig())
    assert res.steps == 2 and body._steps_left == 0


def test_rotation_error_inverts_a_known_rotation():
    angle = 0.3
    rz = quat_xyzw_to_mat([0, 0, np.sin(angle / 2), np.cos(angle / 2)])
    assert np.allclose(rotation_error(rz, np.eye(3)), [0, 0, angle])


def test_bad_control_config_is_a_value_error():
    with pytest.raises(ValueError, match="unknown control mode"):
        ControlConfig(mode="warp")
    with pytest.raises(ValueError, match="action_scale"):
        ControlConfig(action_scale=0)
