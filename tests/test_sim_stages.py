"""Stages measure what they name: every successful oracle episode, on the real simulator,
passes through every stage (the gripper reaches the object's surface, lifts it, places it)
and makes its first grasp attempt on the object."""

from __future__ import annotations

import pytest

from para_bench.envs.libero_env import LiberoEnv
from para_bench.evaluation.episode import run_episode
from para_bench.evaluation.stages import APPROACH_M
from para_bench.registry import make_agent
from para_bench.suites import get_suite

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("suite, split, task, episodes", [
    ("pos_ood", "test", "libero_spatial/0", 2),     # bowls grasped by the rim
    ("in_dist", "train", "libero_spatial/0", 1),    # a sampled scene
    ("in_dist", "test", "libero_object/0", 1),      # a narrow object grasped at its centre
    # init state 1: the hand would come down on the tomato sauce beside the cream cheese
    ("in_dist", "test", "libero_object/1", 2),
])
def test_every_oracle_success_passes_through_every_stage(suite, split, task, episodes):
    plan = get_suite(suite).plan(split, tasks=[task], episodes=episodes)
    env = LiberoEnv(plan[0].benchmark, plan[0].task_id, image_size=64, control="servo")
    try:
        for spec in plan:
            out = run_episode(env, make_agent("oracle"), spec)
            assert out.success, spec.episode_id
            assert out.stages_observed == {"approached": True, "grasped": True,
                                           "placed": True}, spec.episode_id
            assert out.stage == "placed"
            # the oracle's first grasp attempt is on the object (its pre-shape is not one)
            assert out.grasp_attempt_step is not None and out.grasp_attempt_m < APPROACH_M, \
                (spec.episode_id, out.grasp_attempt_m)
    finally:
        env.close()
