"""The Ray executor on a local Ray instance, with the fake environment of the runner tests."""

from __future__ import annotations

import json

import pytest

from para_bench import cli
from para_bench.runner import RunConfig, run_plan
from para_bench.suites import get_suite
from tests.fake_env import make_env

ray = pytest.importorskip("ray")


def _run(out, agent, executor, suite="pos_ood", workers=1, episode_timeout=None):
    plan = get_suite(suite).plan("test", episodes=6)
    cfg = RunConfig(agent=agent, coverage=False, max_steps=40)
    run_plan(plan, cfg, out, env_factory=make_env, progress=False, workers=workers,
             episode_timeout=episode_timeout, executor=executor)
    return {r["episode_id"]: r for r in map(json.loads, (out / "episodes.jsonl").open())}


def _untimed(record: dict) -> dict:
    record = dict(record, wall_time_s=None)
    record["metrics"] = {k: v for k, v in record["metrics"].items() if k != "latency_ms"}
    return record


def test_ray_records_equal_an_in_process_run(tmp_path, local_ray):
    one = _run(tmp_path / "one", "tests.fake_env:ForwardAgent", "local")
    two = _run(tmp_path / "ray", "tests.fake_env:ForwardAgent", "ray", workers=2)
    assert len(two) == 6 and {r["success"] for r in two.values()} == {True, False}
    assert {k: _untimed(r) for k, r in two.items()} == {k: _untimed(r) for k, r in one.items()}


def test_a_dying_or_hanging_actor_costs_only_its_episode(tmp_path, local_ray):
    recs = _run(tmp_path / "crash", "tests.fake_env:DyingAgent", "ray", suite="in_dist",
                workers=2, episode_timeout=5)
    by_seed = {r["spec"]["seed"]: r for r in recs.values()}
    assert sorted(by_seed) == list(range(6))
    assert by_seed[1]["status"] == "error" and "died" in by_seed[1]["error"]
    assert "attempt 2" in by_seed[1]["error"]  # retried once in a fresh actor
    assert by_seed[2]["status"] == "error" and "timed out" in by_seed[2]["error"]
    assert all(by_seed[s]["status"] == "ok" for s in (0, 3, 4, 5))


def test_executor_ray_without_ray_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr("para_bench.executors.ray_actors.ray_available", lambda: False)
    code = cli.main(["run", "--agent", "random", "--suite", "in_dist", "--executor", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "pip install 'para-bench[ray]'" in err[0]


def test_an_actor_that_cannot_build_its_agent_stops_the_run(tmp_path, local_ray):
    from para_bench.errors import StartupError

    with pytest.raises(StartupError, match="RuntimeError: checkpoint is corrupt"):
        _run(tmp_path / "broken", "tests.fake_env:BrokenAgent", "ray", workers=2)
