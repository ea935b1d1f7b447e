"""robosuite 1.4's OSC_POSE arm controller and Panda gripper, without per-substep overhead.

LIBERO drives its Panda with robosuite's ``OperationalSpaceController`` (``OSC_POSE``:
fixed impedance, kp 150, critically damped, delta commands, position and orientation
uncoupled, no interpolator) and ``PandaGripper``. :class:`OSCPose` computes exactly the
torques and gripper commands those classes compute, from MuJoCo's data as it stands after
``mj_step1`` (positions, velocities, Jacobians, mass matrix, bias forces), with

* one ``mj_jacSite`` per substep (robosuite calls it four times, behind two ``mj_forward``
  calls that ``mj_step1`` makes unnecessary),
* every index, limit and gain looked up once per episode instead of every substep,
* the same floating-point operations in the same order on arrays of the same layout, and
  robosuite's own compiled operational-space math (``opspace_matrices``,
  ``orientation_error``, ``nullspace_torques``), so the torques are bit-identical.

The goal (set once per control step, robosuite's ``policy_step``) is robosuite's own
``set_goal``; the robosuite controller object stays the single holder of the goal, the
nullspace posture and the gains, so either physics loop can run at any time.
"""

from __future__ import annotations

import mujoco
import numpy as np
from robosuite.controllers.osc import OperationalSpaceController
from robosuite.models.grippers.panda_gripper import PandaGripper
from robosuite.utils.control_utils import (
    nullspace_torques,
    opspace_matrices,
    orientation_error,
)

_GRIPPER_DIRECTION = np.array([-1.0, 1.0])


class UnsupportedController(ValueError):
    """The robot is not driven the way this fast path reproduces (use the robosuite loop)."""


class OSCPose:
    """Torques of one robot's OSC_POSE controller plus its Panda gripper commands.

    Args:
        robot: robosuite ``SingleArm`` robot whose ``controller`` is an OSC_POSE
            ``OperationalSpaceController`` (as LIBERO builds it) with a ``PandaGripper``.
            robosuite builds a new controller at every reset: build a new ``OSCPose`` then
            (:meth:`bound_to` tells whether this one still matches).

    Raises:
        UnsupportedController: another controller type or configuration (interpolators,
            variable impedance, absolute commands, coupled position / orientation).
    """

    def __init__(self, robot) -> None:
        ctrl = robot.controller
        if type(ctrl) is not OperationalSpaceController or ctrl.name_suffix != "POSE":
            raise UnsupportedController(f"fast physics needs OSC_POSE, got {type(ctrl).__name__}")
        if (ctrl.interpolator_pos is not None or ctrl.interpolator_ori is not None
                or ctrl.impedance_mode != "fixed" or not ctrl.use_delta or not ctrl.uncoupling):
            raise UnsupportedController(
                "fast physics reproduces OSC_POSE with fixed impedance, delta commands, "
                "uncoupled position / orientation and no interpolator"
            )
        if not isinstance(robot.gripper, PandaGripper) or \
                type(robot.gripper).format_action is not PandaGripper.format_action:
            raise UnsupportedController(f"fast physics needs a PandaGripper, "
                                        f"got {type(robot.gripper).__name__}")
        sim = ctrl.sim
        self.robot = robot
        self.controller = ctrl
        self.gripper = robot.gripper
        self.model, self.data = sim.model._model, sim.data._data  # MuJoCo's own MjModel / MjData
        nv = self.model.nv
        self._site = sim.model.site_name2id(ctrl.eef_name)
        self._qvel_index = list(ctrl.qvel_index)  # columns of 2-D arrays: robosuite's layout
        self._qpos = _index(ctrl.qpos_index)
        self._qvel = _index(ctrl.qvel_index)
        self._kp_pos, self._kp_ori = np.array(ctrl.kp[0:3]), np.array(ctrl.kp[3:6])
        self._kd_pos, self._kd_ori = ctrl.kd[0:3], ctrl.kd[3:6]
        low, high = robot.torque_limits
        self._torque_low, self._torque_high = np.array(low), np.array(high)
        self._arm_actuators = _index(robot._ref_joint_actuator_indexes)
        grip_actuators = [sim.model.actuator_name2id(a) for a in self.gripper.actuators]
        self._grip_actuators = _index(grip_actuators)
        ctrl_range = sim.model.actuator_ctrlrange[grip_actuators]
        self._grip_bias = 0.5 * (ctrl_range[:, 1] + ctrl_range[:, 0])
        self._grip_weight = 0.5 * (ctrl_range[:, 1] - ctrl_range[:, 0])
        self._arm_dim = ctrl.control_dim
        self._jacp = np.zeros((3, nv))
        self._jacr = np.zeros((3, nv))
        self._full_mass = np.zeros((nv, nv))
        self._grip_step = np.zeros(2)
        self._goal_pos = self._goal_ori = None
        self._first_state: tuple | None = None

    def bound_to(self, robot) -> bool:
        """Whether this controller still drives ``robot``'s current robosuite controller."""
        return robot is self.robot and robot.controller is self.controller

    def set_action(self, action: np.ndarray) -> None:
        """A new control step (robosuite's ``policy_step``): sets the goal from ``action``.

        Call it after ``mj_step1`` of the control step's first substep and before its
        :meth:`apply`. The arm goal is robosuite's own ``set_goal``; the gripper's
        per-substep increment follows the sign of ``action[6]``.

        Like robosuite, the goal and the first substep's torques use the controller's
        stored state when it has not been invalidated since it was read: right after a
        reset robosuite builds its controller on the reset pose and reads nothing new
        before the first step, so that step starts from the pose before the init state.
        """
        ctrl = self.controller
        if ctrl.new_update:
            state = self._read_state()
            ctrl.ee_pos, ctrl.ee_ori_mat = state[0], state[1]
            ctrl.new_update = False  # the state above is current: no extra mj_forward
        else:
            state = (ctrl.ee_pos, ctrl.ee_ori_mat, ctrl.ee_pos_vel, ctrl.ee_ori_vel,
                     ctrl.joint_pos, ctrl.joint_vel, ctrl.J_pos, ctrl.J_ori, ctrl.J_full,
                     ctrl.mass_matrix)
        ctrl.set_goal(action[:self._arm_dim])
        self._goal_pos, self._goal_ori = ctrl.goal_pos, ctrl.goal_ori
        self._grip_step = _GRIPPER_DIRECTION * self.gripper.speed * np.sign(action[self._arm_dim:])
        ctrl.new_update = True  # as after robosuite's run_controller
        self._first_state = state

    def apply(self) -> None:
        """Writes this substep's arm torques and gripper command into ``data.ctrl``.

        Call it between ``mj_step1`` and ``mj_step2``: it reads positions, velocities, the
        mass matrix and bias forces from the current state.
        """
        d = self.data
        if self._first_state is not None:
            state, self._first_state = self._first_state, None
        else:
            state = self._read_state()
        ee_pos, ee_ori_mat, ee_pos_vel, ee_ori_vel, joint_pos, joint_vel, j_pos, j_ori, \
            j_full, mass_matrix = state
        ori_error = orientation_error(self._goal_ori, ee_ori_mat)
        desired_force = np.multiply(self._goal_pos - ee_pos, self._kp_pos) + \
            np.multiply(-ee_pos_vel, self._kd_pos)
        desired_torque = np.multiply(ori_error, self._kp_ori) + \
            np.multiply(-ee_ori_vel, self._kd_ori)
        _, lambda_pos, lambda_ori, nullspace_matrix = opspace_matrices(
            mass_matrix, j_full, j_pos, j_ori)
        wrench = np.concatenate([np.dot(lambda_pos, desired_force),
                                 np.dot(lambda_ori, desired_torque)])
        torques = np.dot(j_full.T, wrench) + d.qfrc_bias[self._qvel]
        torques += nullspace_torques(mass_matrix, nullspace_matrix,
                                     self.controller.initial_joint, joint_pos, joint_vel)
        gripper = self.gripper
        # np.clip's arithmetic (max, then min) without its Python wrappers
        gripper.current_action = np.minimum(
            np.maximum(gripper.current_action + self._grip_step, -1.0), 1.0)
        d.ctrl[self._arm_actuators] = np.minimum(np.maximum(torques, self._torque_low),
                                                 self._torque_high)
        d.ctrl[self._grip_actuators] = self._grip_bias + self._grip_weight * gripper.current_action

    def _read_state(self) -> tuple[np.ndarray, ...]:
        """What robosuite's ``Controller.update`` reads, in the same array layouts."""
        d, qvel_index = self.data, self._qvel_index
        ee_pos, ee_ori_mat = self._ee_pose()
        jacp, jacr = self._jacp, self._jacr
        mujoco.mj_jacSite(self.model, d, jacp, jacr, self._site)
        j_pos = jacp[:, qvel_index]
        j_ori = jacr[:, qvel_index]
        mass = self._full_mass
        mujoco.mj_fullM(self.model, d, mass)
        return (ee_pos, ee_ori_mat, np.dot(jacp, d.qvel), np.dot(jacr, d.qvel),
                np.array(d.qpos[self._qpos]), np.array(d.qvel[self._qvel]),
                j_pos, j_ori, np.concatenate([j_pos, j_ori]), mass[qvel_index, :][:, qvel_index])

    def _ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        return np.array(d.site_xpos[self._site]), np.array(d.site_xmat[self._site].reshape(3, 3))


def _index(indexes) -> slice | list[int]:
    """A slice for contiguous ascending indexes (a view of the same values), else a list."""
    indexes = [int(i) for i in indexes]
    if indexes and indexes == list(range(indexes[0], indexes[0] + len(indexes))):
        return slice(indexes[0], indexes[0] + len(indexes))
    return indexes
