"""The runner with a fake, fast environment: records, resume, fault isolation, determinism.

The fake env is only for these unit tests; real rollouts are in test_sim_*.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from para_bench.registry import register_agent
from para_bench.results.store import ResultsFormatError, RunStore
from para_bench.runner import RunConfig, run_plan
from para_bench.suites import get_suite
from para_bench.types import ActionChunk
from tests.fake_env import FakeEnv


@register_agent("test_forward")
class ForwardAgent:
    """Moves +x at a seeded random speed; fails on some seeds."""

    def reset(self, task, seed):
        self.speed = np.random.default_rng(seed).uniform(0.0, 0.2)

    def act(self, obs, info):
        assert "object_poses" not in info, "privileged info leaked to a non-privileged agent"
        return np.tile([self.speed, 0, 0, 0, 0, 0, -1], (5, 1))

    def close(self):
        pass


@register_agent("test_faulty")
class FaultyAgent:
    """Raises, returns NaN, or a wrong shape, depending on the episode seed."""

    def reset(self, task, seed):
        self.mode = seed % 4

    def act(self, obs, info):
        if self.mode == 0:
            raise RuntimeError("boom")
        if self.mode == 1:
            return np.full(7, np.nan)
        if self.mode == 2:
            return np.zeros((3, 5))
        return np.tile([1.0, 0, 0, 0, 0, 0, -1], (3, 1))


def _run(agent, out, episodes=8, suite="pos_ood", **kw):
    plan = get_suite(suite).plan("test", episodes=episodes)
    cfg = RunConfig(agent=agent, coverage=False, max_steps=40)
    return run_plan(plan, cfg, out, env_factory=FakeEnv, progress=False, **kw), plan


def test_records_have_the_documented_schema(tmp_path):
    store, plan = _run("test_forward", tmp_path / "run")
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == len(plan) == 8
    rec = json.loads(lines[0])
    for key in ("episode_id", "task", "init_state", "perturbation", "status", "error",
                "success", "steps", "metrics", "agent", "wall_time_s", "spec"):
        assert key in rec
    assert {"jerk", "accel_mean", "coverage", "stage", "latency_ms"} <= set(rec["metrics"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["n_episodes"] == 8 and "versions" in manifest


def test_resume_skips_finished_and_duplicates_nothing(tmp_path):
    out = tmp_path / "run"
    full, _ = _run("test_forward", tmp_path / "full")
    reference = {r.episode_id: r.success for r in full.records()}
    # simulate a kill: keep 3 records and a torn half line
    lines = (tmp_path / "full" / "episodes.jsonl").read_text().splitlines(keepends=True)
    out.mkdir()
    (out / "manifest.json").write_text((tmp_path / "full" / "manifest.json").read_text())
    (out / "episodes.jsonl").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    store, _ = _run("test_forward", out)
    recs = store.records()
    assert len(recs) == 8 and len({r.episode_id for r in recs}) == 8
    assert {r.episode_id: r.success for r in recs} == reference
    for line in (out / "episodes.jsonl").read_text().splitlines():
        json.loads(line)


def test_same_command_same_records(tmp_path):
    a, _ = _run("test_forward", tmp_path / "a")
    b, _ = _run("test_forward", tmp_path / "b")
    strip = lambda r: (r.episode_id, r.success, r.steps, r.eef_trajectory)  # noqa: E731
    assert [strip(r) for r in a.records()] == [strip(r) for r in b.records()]
    assert len({r.success for r in a.records()}) == 2  # the fake agent both fails and succeeds


def test_faults_stay_in_their_episode(tmp_path):
    store, _ = _run("test_faulty", tmp_path / "run", episodes=8)
    recs = store.records()
    assert len(recs) == 8
    errors = [r.error for r in recs if r.status == "error"]
    assert len(errors) + sum(r.status == "infeasible" for r in recs) == 6
    assert all(r.fault == "agent" for r in recs if r.status == "error")
    assert any("RuntimeError: boom" in e for e in errors)
    assert any("NaN" in e for e in errors)
    assert any("(7,) or (K, 7)" in e for e in errors)
    assert all(r.success for r in recs if r.status == "ok")


def test_an_infeasible_scene_is_recorded_apart_and_not_counted(tmp_path):
    from para_bench.results.tables import records_frame, summary_table

    store, _ = _run("test_forward", tmp_path / "run", episodes=20)
    bad = [r for r in store.records() if r.perturbation["objects"]["dy"] > 0.14]
    assert bad and all(r.status == "infeasible" and r.fault == "scene" and
                       "infeasible shift" in r.error for r in bad)
    row = summary_table(records_frame(tmp_path / "run")).iloc[0]
    assert row["infeasible"] == len(bad) and row["n"] == 20 - len(bad)


@register_agent("test_malformed_targets")
class MalformedTargetAgent:
    """Returns target chunks the control path must refuse, by episode seed."""

    def reset(self, task, seed):
        self.mode = seed % 3

    def act(self, obs, info):
        if self.mode == 0:  # a zero quaternion would send NaN to the simulator
            return ActionChunk.from_targets([[0.0, 0.0, 1.0]], -1.0,
                                            orientations=np.zeros((1, 4)))
        if self.mode == 1:  # a target far outside any table
            return ActionChunk.from_targets([[0.0, 40.0, 1.0]], -1.0)
        return ActionChunk.from_targets([[0.0, 0.0, 1.0]], -1.0)


def test_malformed_actions_are_agent_errors_before_the_simulator(tmp_path):
    envs = []

    def factory(**kw):
        envs.append(FakeEnv(**kw))
        return envs[-1]

    plan = get_suite("in_dist").plan("test", episodes=3)
    store = run_plan(plan, RunConfig(agent="test_malformed_targets", coverage=False,
                                     max_steps=5), tmp_path / "run", env_factory=factory,
                     progress=False)
    recs = {r.spec["seed"] % 3: r for r in store.records()}
    assert recs[0].status == recs[1].status == "error"
    assert recs[0].fault == recs[1].fault == "agent"
    assert "unit quaternion" in recs[0].error and "workspace" in recs[1].error
    assert recs[2].status == "ok" and recs[2].steps == 5
    assert sum(e.sim_steps for e in envs) == 5  # nothing of the bad chunks reached it


def test_a_different_plan_is_refused(tmp_path):
    _run("test_forward", tmp_path / "run", episodes=4)
    with pytest.raises(ResultsFormatError, match="different"):
        _run("test_forward", tmp_path / "run", episodes=5)


def test_actions_reach_the_simulator_only_through_step_chunk(tmp_path):
    envs = []

    def factory(**kw):
        envs.append(FakeEnv(**kw))
        return envs[-1]

    plan = get_suite("in_dist").plan("test", episodes=3)
    store = run_plan(plan, RunConfig(agent="test_forward", coverage=False, max_steps=40),
                     tmp_path / "run", env_factory=factory, progress=False)
    assert sum(e.sim_steps for e in envs) == sum(r.steps for r in store.records())
    assert RunStore(tmp_path / "run").finished_ids() == {s.episode_id for s in plan}


def test_stage_tracker_uses_surface_distances_and_lift():
    from para_bench.evaluation.stages import StageTracker

    rest = {"bowl": np.zeros(7)}
    tracker = StageTracker({"goal_object": "bowl", "object_poses": rest})
    tracker.update({"object_poses": rest, "goal_object_distances": [0.3, 0.05, 0.021]})
    assert tracker.stage(False) == "none"
    tracker.update({"object_poses": rest, "goal_object_distances": [0.03, 0.005, 0.04]})
    assert tracker.stage(False) == "approached"  # came close once, mid-chunk
    lifted = {"bowl": np.array([0, 0, 0.1, 0, 0, 0, 1.0])}
    tracker.update({"object_poses": lifted, "goal_object_distances": [0.02, 0.03]})
    assert tracker.stage(False) == "approached"  # risen, but the gripper is not on it
    tracker.update({"object_poses": lifted, "goal_object_distances": [0.004, 0.0]})
    assert tracker.stage(False) == "grasped" and tracker.stage(True) == "placed"
    assert StageTracker({"object_poses": rest}).stage(False) is None


def test_stage_tracker_finds_the_first_grasp_attempt():
    from para_bench.evaluation.stages import GRASP_HOLD_STEPS, StageTracker

    rest = {"bowl": np.array([0, 0, 0.9, 0, 0, 0, 1])}
    tracker = StageTracker({"goal_object": "bowl", "object_poses": rest})
    steps = 0

    def feed(grips, dists):
        nonlocal steps
        steps += len(grips)
        cmds = np.zeros((len(grips), 7))
        cmds[:, 6] = grips
        tracker.update({"object_poses": rest, "goal_object_distances": np.asarray(dists),
                        "commands": cmds, "steps": steps})

    feed([-1, 0, 1, 1, 1, -1], [0.3, 0.2, 0.1, 0.1, 0.1, 0.1])  # a 3-step pre-shape
    assert tracker.attempt_step is None
    n = GRASP_HOLD_STEPS
    feed([-1, 1, 1], [0.05, 0.04, 0.03])  # a held close begins at step 8 ...
    assert tracker.attempt_step is None
    feed([1] * (n - 2), [0.0] * (n - 2))  # ... and is held across the chunk boundary
    assert (tracker.attempt_step, tracker.attempt_m) == (8, 0.04)
    feed([-1] + [1] * n, [0.0] * (n + 1))  # only the first attempt counts
    assert (tracker.attempt_step, tracker.attempt_m) == (8, 0.04)


def test_physics_loop_reaches_the_env_and_the_manifest(tmp_path):
    envs = []

    def factory(**kw):
        envs.append(FakeEnv(**kw))
        return envs[-1]

    plan = get_suite("in_dist").plan("test", episodes=1)
    for physics in ("robosuite", "fast"):
        run_plan(plan, RunConfig(agent="test_forward", coverage=False, max_steps=40,
                                 physics=physics),
                 tmp_path / physics, env_factory=factory, progress=False)
        manifest = json.loads((tmp_path / physics / "manifest.json").read_text())
        assert manifest["config"]["physics"] == manifest["identity"]["physics"] == physics
        assert envs[-1].kwargs["physics"] == physics
    assert RunConfig(agent="x").physics == "fast"
    with pytest.raises(ResultsFormatError, match="physics"):  # a folder is bound to its loop
        run_plan(plan, RunConfig(agent="test_forward", coverage=False, max_steps=40),
                 tmp_path / "robosuite", env_factory=factory, progress=False)


def test_coverage_references_come_from_the_oracle_without_a_rim_side_margin(tmp_path,
                                                                           monkeypatch):
    """Coverage compares a run with the oracle's path; that oracle takes the best-scoring
    rim side whatever the default margin, so coverage stays comparable across runs."""
    import para_bench.registry as registry
    from para_bench.evaluation.references import REFERENCE_RIM_SIDE_MARGIN, ReferenceCache

    built = []

    def make_agent(name, **kwargs):
        built.append((name, kwargs))
        raise RuntimeError("built")

    monkeypatch.setattr(registry, "make_agent", make_agent)
    cache = ReferenceCache(tmp_path, RunConfig(agent="noop"), pool_factory=lambda: None)
    with pytest.raises(RuntimeError, match="built"):
        cache.get(get_suite("in_dist").plan("test", episodes=1)[0])
    assert REFERENCE_RIM_SIDE_MARGIN == 0.0
    assert built == [("oracle", {"rim_side_margin": 0.0})]
