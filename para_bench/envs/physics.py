"""The control step of a LIBERO scene: robosuite's own loop, or the same dynamics faster.

``robosuite`` runs robosuite 1.4's ``env.step``: for each of the 25 substeps of a control
step, ``mj_forward``, the controller (which runs ``mj_forward`` again), ``mj_step`` (which
runs the forward pass a third time before integrating) and an update of every observable
of the env; then the reward and LIBERO's success predicate (twice) and every observation.

``fast`` (:class:`FastControlLoop`) runs the same integration with none of the repeats:

* per substep ``mj_step1`` (positions, velocities) -> the controller's torques
  (:class:`~para_bench.envs.osc.OSCPose`, bit-identical to robosuite's) -> ``mj_step2``
  (actuation, constraints, integration). MuJoCo keeps no state between forward passes
  (the solver's warm start is saved by the integrator only), so this is the same step;
* the goal is set once per control step, torques every substep (robosuite's
  ``policy_step``);
* only the observables of the observation contract (agent-view image and depth, arm
  joints, finger joints) are updated per substep, with robosuite's own ``Observable``
  timing, so the camera still renders inside the substep where robosuite renders it;
* LIBERO's post-step hook (light / stove states, visual sites) and its BDDL success
  predicate run once per control step, with a contact test that looks geoms up in
  precomputed tables instead of by name (same answer; ``tests/test_sim_physics.py``).

Both loops give the same simulator state; ``tests/test_sim_physics.py`` compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PHYSICS_LOOPS = ("fast", "robosuite")


class FastControlLoop:
    """robosuite 1.4's ``env.step`` for a LIBERO env, without work nobody reads.

    Args:
        env: the robosuite (LIBERO) environment, ``OffScreenRenderEnv(...).env``.
        observables: names of the observables to keep updated every substep (the rest are
            refreshed only by forced updates such as ``_get_observations(force_update=True)``).

    robosuite's episode bookkeeping (``horizon`` / ``done``) is not reproduced: the env must
    be built with ``ignore_done=True`` (``LiberoEnv`` counts its own steps).

    Raises:
        UnsupportedController: the robot is not driven by OSC_POSE + Panda gripper, or the
            env ends episodes itself (``ignore_done=False``).
    """

    def __init__(self, env, observables: Sequence[str]) -> None:
        import mujoco

        from para_bench.envs.osc import OSCPose, UnsupportedController

        if len(env.robots) != 1 or not env.ignore_done:
            raise UnsupportedController("fast physics drives one robot, with ignore_done=True")
        self._step1, self._step2 = mujoco.mj_step1, mujoco.mj_step2
        self.env = env
        self._observables = [env._observables[name] for name in observables]
        self._substeps = int(env.control_timestep / env.model_timestep)
        self._osc = OSCPose(env.robots[0])
        self._contacts = ContactTable(env)

    def step(self, action: np.ndarray) -> bool:
        """One control step of ``action`` (7,); returns LIBERO's success after it."""
        env = self.env
        robot = env.robots[0]
        if not self._osc.bound_to(robot):  # robosuite builds a new controller at each reset
            self._osc = type(self._osc)(robot)
        osc = self._osc
        m, d = osc.model, osc.data
        observables, obs_cache, dt = self._observables, env._obs_cache, env.model_timestep
        step1, step2 = self._step1, self._step2
        env.timestep += 1
        for i in range(self._substeps):
            step1(m, d)
            if i == 0:
                osc.set_action(action)
            osc.apply()
            step2(m, d)
            for observable in observables:
                observable.update(timestep=dt, obs_cache=obs_cache)
        env.cur_time += env.control_timestep
        env._post_process()
        return bool(self._contacts.check_success())

    def observations(self) -> dict[str, np.ndarray]:
        """The kept observables' current values (what ``_get_observations`` would say)."""
        return {o.name: o.obs for o in self._observables}


class ContactTable:
    """LIBERO's success predicate with robosuite's ``check_contact`` answered from tables.

    robosuite's ``check_contact`` turns every contact's geom ids into names and searches
    name lists; this answers the same question with one boolean table per object (geom id
    -> belongs to it), built once per object and model.
    """

    def __init__(self, env) -> None:
        from robosuite.models.base import MujocoModel

        self.env = env
        self._model_class = MujocoModel
        self._model = None
        self._masks: dict[int, tuple[object, np.ndarray]] = {}  # id(object model) -> mask

    def check_success(self) -> bool:
        """``env._check_success()`` with the fast contact test installed for the call."""
        env = self.env
        env.check_contact = self.check_contact
        try:
            return env._check_success()
        finally:
            del env.check_contact

    def check_contact(self, geoms_1, geoms_2=None) -> bool:
        """Same contract and answer as robosuite's ``MujocoEnv.check_contact``."""
        d = self.env.sim.data._data
        if d.ncon == 0:
            return False
        mask_1 = self._mask(geoms_1)
        g1, g2 = d.contact.geom1, d.contact.geom2
        if geoms_2 is None:
            return bool(np.any(mask_1[g1] | mask_1[g2]))
        mask_2 = self._mask(geoms_2)
        return bool(np.any((mask_1[g1] & mask_2[g2]) | (mask_2[g1] & mask_1[g2])))

    def _mask(self, geoms) -> np.ndarray:
        model = self.env.sim.model
        if model is not self._model:
            self._model, self._masks = model, {}
        key = id(geoms)
        cached = self._masks.get(key)
        if cached is not None and cached[0] is geoms:
            return cached[1]
        is_model = isinstance(geoms, self._model_class)
        if isinstance(geoms, str):
            names = [geoms]
        else:
            names = geoms.contact_geoms if is_model else geoms
        wanted = set(names)  # geom g belongs when robosuite's name for it is listed
        mask = np.array([model.geom_id2name(g) in wanted for g in range(model.ngeom)])
        if is_model:  # object models live as long as the scene: build their table once
            self._masks[key] = (geoms, mask)
        return mask


def divergence_count(data: Any) -> int:
    """MuJoCo's count of bad-qpos / qvel / qacc events (it silently resets data on them)."""
    import mujoco

    w = mujoco.mjtWarning
    return sum(int(data.warning[k].number) for k in (w.mjWARN_BADQPOS, w.mjWARN_BADQVEL,
                                                     w.mjWARN_BADQACC))

