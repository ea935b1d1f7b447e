"""A run folder is one identity: resume only what the same agent, checkpoint and settings
made; never evaluate on training scenes unless asked (fake environment, no simulator)."""

from __future__ import annotations

import json

import pytest

from para_bench import cli
from para_bench.results.store import ResultsFormatError, RunStore
from para_bench.runner import RunConfig, TrainSceneOverlap, prepare_run, run_plan
from para_bench.suites import get_suite
from tests.fake_env import FakeEnv

AGENT = "tests.fake_env:FileCheckpointAgent"


def _ckpt(path, speed_scale=1.0, scenes=None):
    path.write_text(json.dumps({"speed_scale": speed_scale, "train_scene_ids": scenes}))
    return str(path)


def _config(ckpt, **kw):
    return RunConfig(agent=AGENT, agent_kwargs={"checkpoint": ckpt}, coverage=False,
                     max_steps=kw.pop("max_steps", 40), **kw)


def _run(plan, config, out, **kw):
    return run_plan(plan, config, out, env_factory=FakeEnv, progress=False, **kw)


def test_a_retrained_checkpoint_at_the_same_path_is_not_skipped(tmp_path):
    plan = get_suite("pos_ood").plan("test", episodes=4)
    ckpt = _ckpt(tmp_path / "ckpt.json", speed_scale=1.0)
    first = prepare_run(plan, _config(ckpt))
    _run(plan, _config(ckpt), tmp_path / "run", prepared=first)
    _ckpt(tmp_path / "ckpt.json", speed_scale=0.0)  # retrained in place: never succeeds now
    second = prepare_run(plan, _config(ckpt))
    assert second.run_id != first.run_id  # its default folder is another one
    with pytest.raises(ResultsFormatError, match="checkpoint_sha256"):
        _run(plan, _config(ckpt), tmp_path / "run", prepared=second)
    store = _run(plan, _config(ckpt), tmp_path / "run2", prepared=second)
    assert len(store.records()) == 4 and not any(r.success for r in store.records())
    assert {r.run_id for r in store.records()} == {second.run_id}


def test_a_changed_setting_is_refused_naming_each_difference(tmp_path):
    plan = get_suite("pos_ood").plan("test", episodes=4)
    ckpt = _ckpt(tmp_path / "ckpt.json")
    _run(plan, _config(ckpt), tmp_path / "run")
    with pytest.raises(ResultsFormatError) as err:
        _run(plan, _config(ckpt, max_steps=30, control="teleport"), tmp_path / "run")
    msg = str(err.value)
    assert "max_steps 40 -> 30" in msg and 'control "servo" -> "teleport"' in msg
    assert len(msg.splitlines()) == 1
    _run(plan, _config(ckpt), tmp_path / "run")  # the same identity resumes


def test_cli_refuses_a_changed_max_steps_in_one_line(tmp_path, capsys):
    args = ["run", "--agent", "random", "--suite", "in_dist", "--episodes", "1",
            "--no-coverage", "--quiet", "--out", str(tmp_path / "run")]
    RunStore(tmp_path / "run").write_manifest({"format": 2, "identity": {"max_steps": 1}})
    assert cli.main([*args, "--max-steps", "300"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert len(err) == 1 and "holds another run" in err[0] and "max_steps 1 -> 300" in err[0]


def test_agent_args_are_checked_and_bound_to_the_run(tmp_path, capsys):
    """--agent-arg reaches the agent's constructor and the run's identity; an argument the
    agent does not take is one line, before anything runs."""
    args = ["run", "--agent", "oracle", "--suite", "in_dist", "--episodes", "1",
            "--no-coverage", "--quiet", "--out", str(tmp_path / "run")]
    assert cli.main([*args, "--agent-arg", "margin=0.03"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--agent-arg margin: oracle takes rim_side_margin" in err[0]
    assert cli.main([*args, "--agent-arg", "rim_side_margin"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    RunStore(tmp_path / "run").write_manifest({"format": 2, "identity": {"agent_args": {}}})
    assert cli.main([*args, "--agent-arg", "rim_side_margin=0.03"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert len(err) == 1 and 'agent_args {} -> {"rim_side_margin"' in err[0]


def test_retry_errors_reruns_only_errored_episodes(tmp_path):
    plan = get_suite("pos_ood").plan("test", episodes=6)
    ckpt = _ckpt(tmp_path / "ckpt.json")
    store = _run(plan, _config(ckpt), tmp_path / "run")
    records = store.records()
    ok_ids = [r.episode_id for r in records]
    # make two of them errors, as a crashed worker would have left them
    lines = store.episodes_path.read_text().splitlines()
    broken = [json.loads(x) for x in lines]
    for rec in broken[:2]:
        rec.update(status="error", success=False, error="worker died", fault="worker")
    store.episodes_path.write_text("".join(json.dumps(r) + "\n" for r in broken))
    _run(plan, _config(ckpt), tmp_path / "run")  # plain resume keeps the errors
    assert sum(r.status == "error" for r in RunStore(tmp_path / "run").records()) == 2
    _run(plan, _config(ckpt), tmp_path / "run", retry_errors=True)
    again = RunStore(tmp_path / "run").records()
    assert [r.episode_id for r in again] == ok_ids
    assert [r.status for r in again] == [r.status for r in records] and "error" not in {
        r.status for r in again}
    assert [r.success for r in again] == [r.success for r in records]
    assert len(RunStore(tmp_path / "run").episodes_path.read_text().splitlines()) == 8


def test_training_scenes_are_refused_unless_allowed(tmp_path):
    suite = get_suite("pos_ood")
    train = suite.plan("train", episodes=3)
    ckpt = _ckpt(tmp_path / "ckpt.json", scenes=[s.scene_id for s in train])
    with pytest.raises(TrainSceneOverlap, match="3 of 3 episodes use scenes"):
        _run(train, _config(ckpt), tmp_path / "run")
    store = _run(train, _config(ckpt, allow_train_scenes=True), tmp_path / "run")
    assert all(r.train_scene is True for r in store.records())
    test = _run(suite.plan("test", episodes=3), _config(ckpt), tmp_path / "test")
    assert all(r.train_scene is False for r in test.records())


def test_cli_refuses_training_scenes_in_one_line(tmp_path, capsys):
    train = get_suite("in_dist").plan("train", episodes=2)
    ckpt = _ckpt(tmp_path / "ckpt.json", scenes=[s.scene_id for s in train])
    code = cli.main(["run", "--agent", AGENT, "--checkpoint", ckpt, "--suite", "in_dist",
                     "--split", "train", "--episodes", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--allow-train-scenes" in err[0]
