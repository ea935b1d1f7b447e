"""collect -> train -> run for every learned policy, through the CLI, in the real simulator."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.test_sim_cli import _cli, _records

pytestmark = pytest.mark.sim
POLICIES = ("para", "ar", "voxel_abs", "voxel_rel", "act")
TINY = ("--set", "dim=32", "--set", "n_window=4", "--set", "stride=2")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Two oracle demos of libero_spatial/0, 64 px (one per init state), as a user collects."""
    path = tmp_path_factory.mktemp("data") / "demos.hdf5"
    proc = _cli("collect", "--suite", "in_dist", "--split", "train", "--episodes", "2",
                "--image-size", "64", "--out", str(path), "--quiet")
    assert "wrote 2 demos" in proc.stdout
    return path


def test_collected_demos_have_libero_layout_and_a_camera(demos):
    with h5py.File(demos) as f:
        data = f["data"]
        assert len(data) == 2 and data.attrs["image_origin"] == "top"
        g = data["demo_0"]
        t = g.attrs["num_samples"]
        assert g["actions"].shape == (t, 7) and g["obs/agentview_rgb"].shape == (t, 64, 64, 3)
        assert g["camera/intrinsics"].shape == (t, 3, 3)
        assert json.loads(g.attrs["perturbation"]) == {"camera": None, "objects": None}
        # the recorded EEF moves between frames: every control step was recorded
        assert np.linalg.norm(np.diff(g["obs/ee_pos"][()], axis=0), axis=1).max() > 1e-3
    again = _cli("collect", "--suite", "in_dist", "--split", "train", "--episodes", "2",
                 "--image-size", "64", "--out", str(demos), "--quiet")
    assert "wrote 0 demos" in again.stdout and "2 already there" in again.stdout


@pytest.fixture(scope="module")
def checkpoints(demos, tmp_path_factory):
    """A tiny checkpoint of every policy (3 steps), trained through the CLI."""
    folder = tmp_path_factory.mktemp("ckpts")
    out = {}
    for name in POLICIES:
        ckpt = folder / f"{name}.pt"
        proc = _cli("train", "--agent", name, "--data", str(demos), "--out", str(ckpt),
                    "--steps", "3", "--batch-size", "4", "--quiet", *TINY)
        assert ckpt.is_file() and "val_pixel_error" in proc.stdout
        out[name] = ckpt
    return out


@pytest.mark.parametrize("name", POLICIES)
def test_train_then_run_through_the_servo_path(name, checkpoints, tmp_path):
    ckpt = checkpoints[name]
    summary = json.loads(ckpt.with_suffix(".train.json").read_text())
    assert summary["steps"] == 3 and len(summary["curve"]) >= 1
    assert ckpt.with_suffix(".overlay.png").stat().st_size > 1000
    out = tmp_path / "run"
    _cli("run", "--agent", name, "--checkpoint", str(ckpt), "--suite", "in_dist",
         "--episodes", "1", "--max-steps", "24", "--no-coverage", "--quiet", "--out", str(out))
    rec = _records(out)[0]
    assert rec["status"] == "ok", rec["error"]
    assert rec["steps"] == 24 and rec["checkpoint_sha"]
    assert rec["metrics"]["n_calls"] >= 24 // (2 * 4)  # chunks of n_exec * stride targets


def test_demos_and_checkpoints_know_their_scenes_and_run_refuses_them(demos, tmp_path):
    from para_bench.suites import get_suite

    plan = get_suite("in_dist").plan("train", episodes=2)
    with h5py.File(demos) as f:
        demo_scenes = sorted(g.attrs["scene_id"] for g in f["data"].values())
    assert demo_scenes == sorted(s.scene_id for s in plan)
    ckpt = tmp_path / "act.pt"
    _cli("train", "--agent", "act", "--data", str(demos), "--out", str(ckpt),
         "--steps", "1", "--batch-size", "2", "--quiet", *TINY)
    summary = json.loads(ckpt.with_suffix(".train.json").read_text())
    assert summary["train_scene_ids"] == demo_scenes
    args = ("run", "--agent", "act", "--checkpoint", str(ckpt), "--suite", "in_dist",
            "--split", "train", "--episodes", "2", "--max-steps", "8", "--no-coverage",
            "--quiet")
    proc = _cli(*args, "--out", str(tmp_path / "refused"), check=False)
    assert proc.returncode == 2 and "--allow-train-scenes" in proc.stderr
    assert not (tmp_path / "refused" / "episodes.jsonl").exists()
    _cli(*args, "--allow-train-scenes", "--out", str(tmp_path / "allowed"))
    assert all(r["train_scene"] is True for r in _records(tmp_path / "allowed"))
    # the held-out scenes of the training distribution are not training scenes
    _cli("run", "--agent", "act", "--checkpoint", str(ckpt), "--suite", "in_dist",
         "--split", "val", "--episodes", "2", "--max-steps", "8", "--no-coverage", "--quiet",
         "--out", str(tmp_path / "val"))
    assert all(r["train_scene"] is False for r in _records(tmp_path / "val"))


def test_collect_refuses_evaluation_scenes(tmp_path):
    proc = _cli("collect", "--suite", "pos_ood", "--split", "test", "--episodes", "1",
                "--out", str(tmp_path / "x.hdf5"), check=False)
    assert proc.returncode == 2 and "evaluation scenes" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and not (tmp_path / "x.hdf5").exists()


def test_checkpoint_of_another_model_is_refused(demos, tmp_path):
    ckpt = tmp_path / "voxel.pt"
    _cli("train", "--agent", "voxel_abs", "--data", str(demos), "--out", str(ckpt),
         "--steps", "1", "--batch-size", "2", "--quiet", *TINY)
    for args, needle in [
        (("--agent", "para", "--checkpoint", str(ckpt)), "holds a voxel_abs policy"),
        (("--agent", "para",), "needs --checkpoint"),
        (("--agent", "act", "--checkpoint", str(demos)), "unreadable or corrupt"),
    ]:
        proc = _cli("run", *args, "--suite", "in_dist", "--episodes", "1", check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("train", "--agent", "oracle", "--data", str(demos), "--out", "x.pt", check=False)
    assert proc.returncode == 2 and "cannot train agent 'oracle'" in proc.stderr


class _StepAudit:
    """Wraps a real LiberoEnv: simulated time may only advance inside its reset (settling)
    and its control-path step (``_control_step``, called by ``execute_chunk`` only)."""

    def __init__(self, env):
        self.env, self.inside, self.t_start, self.episodes = env, 0.0, None, 0
        self.violations: list[str] = []
        real_step, real_reset, real_close = env._control_step, env.reset, env.close

        def control_step(action, render):
            t0 = self._time()
            try:
                return real_step(action, render)
            finally:
                self.inside += self._time() - t0

        def reset(**kw):
            self.check()
            out = real_reset(**kw)
            self.t_start, self.inside = self._time(), 0.0
            self.episodes += 1
            return out

        def close():
            self.check()
            real_close()

        env._control_step, env.reset, env.close = control_step, reset, close

    def _time(self):
        return float(self.env._rs.sim.data.time)

    def check(self):
        if self.t_start is not None:
            outside = self._time() - self.t_start - self.inside
            if abs(outside) > 1e-9:
                self.violations.append(f"{outside:.4f} s simulated outside the control path")

    def __getattr__(self, name):
        return getattr(self.env, name)


AUDITED: list = []


def _audited_env(**kw):
    from para_bench.envs.libero_env import LiberoEnv

    AUDITED.append(_StepAudit(LiberoEnv(**kw)))
    return AUDITED[-1]


class _SneakyAgent:
    """Steps the simulator itself between chunks: the audit must catch it."""

    def reset(self, task, seed):
        pass

    def act(self, obs, info):
        AUDITED[-1].env._rs.step(np.zeros(7))
        return np.zeros((2, 7))

    def close(self):
        pass


def test_every_simulator_step_of_every_builtin_agent_comes_from_the_control_path(
        checkpoints, tmp_path):
    from para_bench.registry import register_agent
    from para_bench.runner import RunConfig, run_plan
    from para_bench.suites import get_suite

    plan = get_suite("pos_ood").plan("test", episodes=1)
    agents = [("oracle", {}), ("noop", {}), ("random", {})] + [
        (name, {"checkpoint": str(ckpt)}) for name, ckpt in checkpoints.items()]
    for name, kwargs in agents:
        AUDITED.clear()
        store = run_plan(plan, RunConfig(agent=name, agent_kwargs=kwargs, coverage=False,
                                         max_steps=40), tmp_path / name,
                         env_factory=_audited_env, progress=False)
        rec = store.records()[0]
        assert rec.status == "ok", (name, rec.error)
        audit = AUDITED[-1]
        assert audit.episodes == 1 and audit.inside > 0 and not audit.violations, name
    register_agent("test_sneaky")(_SneakyAgent)
    AUDITED.clear()
    run_plan(plan, RunConfig(agent="test_sneaky", coverage=False, max_steps=6),
             tmp_path / "sneaky", env_factory=_audited_env, progress=False)
    assert AUDITED[-1].violations and "outside the control path" in AUDITED[-1].violations[0]
