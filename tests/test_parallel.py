"""The local worker pool with the fake environment: startup failures and video counts.

No simulator: workers import the fake env by name (``tests.fake_env:make_env``) and
find ``tests.*`` through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from para_bench.errors import StartupError
from para_bench.executors import importable_name
from para_bench.runner import RunConfig, run_plan
from para_bench.suites import get_suite
from tests.conftest import ROOT
from tests.fake_env import FakeEnv, make_env


@pytest.fixture(autouse=True)
def _workers_find_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _plan(episodes=6):
    return get_suite("in_dist").plan("test", episodes=episodes)


def test_only_module_level_factories_reach_workers():
    assert importable_name(make_env) == "tests.fake_env:make_env"
    assert importable_name(FakeEnv) == "tests.fake_env:FakeEnv"
    assert importable_name(lambda **kw: FakeEnv(**kw)) is None


@pytest.mark.parametrize("agent, cause", [
    ("tests.fake_env:BrokenAgent", "RuntimeError: checkpoint is corrupt"),
    ("tests.fake_env:VanishingAgent", "died (exit code 3) before it was ready"),
])
def test_a_worker_that_cannot_start_stops_the_run(tmp_path, agent, cause):
    cfg = RunConfig(agent=agent, coverage=False, max_steps=40)
    with pytest.raises(StartupError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        run_plan(_plan(), cfg, tmp_path / "run", env_factory=make_env, progress=False,
                 workers=2)
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_prints_an_agent_that_cannot_be_built_as_one_line(tmp_path, workers):
    args = ["run", "--agent", "tests.fake_env:BrokenAgent", "--suite", "in_dist",
            "--episodes", "2", "--no-coverage", "--quiet", "--workers", workers,
            "--out", str(tmp_path / "run")]
    env = dict(os.environ, MUJOCO_GL="egl")
    env.pop("PARA_BENCH_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "para_bench.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    err = [x for x in proc.stderr.strip().splitlines() if x.startswith("para-bench: error")]
    assert proc.returncode == 1, proc.stderr
    assert len(err) == 1 and "RuntimeError: checkpoint is corrupt" in err[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_video_n_counts_across_workers(tmp_path):
    plan = _plan()
    cfg = RunConfig(agent="tests.fake_env:ForwardAgent", coverage=False, max_steps=40,
                    video="3")
    run_plan(plan, cfg, tmp_path / "run", env_factory=make_env, progress=False, workers=2)
    videos = {p.stem for p in (tmp_path / "run" / "videos").glob("*.mp4")}
    assert videos == {s.episode_id for s in plan[:3]}  # the first 3 of the run, not 3 a worker


def _records(out):
    return {r["episode_id"]: r for r in map(json.loads, (out / "episodes.jsonl").open())}


def _untimed(record: dict) -> dict:
    record = dict(record, wall_time_s=None)
    record["metrics"] = {k: v for k, v in record["metrics"].items() if k != "latency_ms"}
    return record


def test_worker_records_equal_an_in_process_run(tmp_path):
    cfg = RunConfig(agent="tests.fake_env:ForwardAgent", coverage=False, max_steps=40)
    plan = get_suite("pos_ood").plan("test", episodes=6)
    run_plan(plan, cfg, tmp_path / "one", env_factory=make_env, progress=False)
    run_plan(plan, cfg, tmp_path / "two", env_factory=make_env, progress=False, workers=2)
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert {k: _untimed(r) for k, r in two.items()} == {k: _untimed(r) for k, r in one.items()}


def test_a_dying_or_hanging_worker_costs_only_its_episode(tmp_path):
    cfg = RunConfig(agent="tests.fake_env:DyingAgent", coverage=False, max_steps=40)
    run_plan(_plan(), cfg, tmp_path / "run", env_factory=make_env, progress=False, workers=2,
             episode_timeout=3)
    by_seed = {r["spec"]["seed"]: r for r in _records(tmp_path / "run").values()}
    assert sorted(by_seed) == list(range(6))
    assert by_seed[1]["status"] == "error" and "died" in by_seed[1]["error"]
    assert "attempt 2" in by_seed[1]["error"]  # retried once in a fresh worker
    assert by_seed[2]["status"] == "error" and "timed out" in by_seed[2]["error"]
    assert all(by_seed[s]["status"] == "ok" for s in (0, 3, 4, 5))
