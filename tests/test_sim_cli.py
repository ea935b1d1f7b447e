"""Smoke rollouts through the CLI in the real simulator, and the example plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "para_bench_hello"


def _cli(*args, check=True):
    env = dict(os.environ, MUJOCO_GL="egl")
    proc = subprocess.run([sys.executable, "-m", "para_bench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def _records(folder):
    return [json.loads(x) for x in (Path(folder) / "episodes.jsonl").read_text().splitlines()]


def test_oracle_solves_spatial_task0_through_the_cli(tmp_path):
    out = tmp_path / "oracle"
    proc = _cli("run", "--agent", "oracle", "--suite", "in_dist", "--episodes", "1",
                "--no-coverage", "--out", str(out), "--quiet")
    recs = _records(out)
    assert len(recs) == 1 and recs[0]["status"] == "ok", recs[0]["error"]
    assert recs[0]["success"], "the oracle did not solve libero_spatial/0 init state 0"
    assert "1/1" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["physics"] == "fast"  # the default loop, recorded


def test_random_agent_runs_resumes_and_tabulates(tmp_path):
    out = tmp_path / "random"
    args = ("run", "--agent", "random", "--suite", "pos_ood", "--episodes", "2",
            "--max-steps", "30", "--no-coverage", "--out", str(out), "--quiet",
            "--physics", "robosuite")
    _cli(*args)
    assert json.loads((out / "manifest.json").read_text())["config"]["physics"] == "robosuite"
    first = _records(out)
    assert len(first) == 2 and all(r["status"] == "ok" and not r["success"] for r in first)
    assert all(len(r["eef_trajectory"]) == 31 for r in first)  # start + one per control step
    _cli(*args)  # resume: nothing left to run, nothing duplicated
    assert _records(out) == first
    table = _cli("table", str(tmp_path)).stdout
    assert "random" in table and "0/2" in table
    png = tmp_path / "cmp.png"
    _cli("plot", str(tmp_path), "--out", str(png))
    assert png.stat().st_size > 1000


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, needle in [
        (("run", "--agent", "nope", "--suite", "in_dist"), "unknown agent 'nope'"),
        (("run", "--agent", "random", "--suite", "nope"), "unknown suite 'nope'"),
        (("run", "--agent", "random", "--suite", "in_dist", "--tasks", "libero_goal/11"),
         "unknown task"),
        (("run", "--agent", "random", "--suite", "in_dist", "--split", "dev"), "unknown split"),
        (("run", "--agent", "random", "--suite", "in_dist", "--checkpoint", "/no/file.pt"),
         "no such file"),
        (("table", str(tmp_path)), "no run folders"),
    ]:
        proc = _cli(*args, check=False)
        assert proc.returncode == 2, args
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_example_plugin_installs_and_runs(tmp_path):
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "-e", str(EXAMPLE)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    listing = _cli("list", "agents").stdout
    assert "hello_lift" in listing and "para-bench-hello" in listing
    out = tmp_path / "hello"
    _cli("run", "--agent", "hello_lift", "--suite", "in_dist", "--episodes", "1",
         "--max-steps", "12", "--no-coverage", "--out", str(out), "--quiet")
    rec = _records(out)[0]
    assert rec["status"] == "ok" and rec["steps"] == 12
    z = [p[2] for p in rec["eef_trajectory"]]
    assert z[-1] > z[0] + 0.05  # it lifted, through the servo control path


def test_two_workers_give_the_same_records_as_one(tmp_path):
    common = ("run", "--agent", "random", "--suite", "viewpoint_ood", "--episodes", "4",
              "--max-steps", "15", "--no-coverage", "--quiet")
    _cli(*common, "--out", str(tmp_path / "one"))
    _cli(*common, "--workers", "2", "--out", str(tmp_path / "two"))
    key = lambda r: (r["episode_id"], r["success"], r["steps"], r["eef_trajectory"])  # noqa: E731
    assert sorted(map(key, _records(tmp_path / "one"))) == \
        sorted(map(key, _records(tmp_path / "two")))


def test_a_dying_or_hanging_worker_costs_only_its_episode(tmp_path):
    out = tmp_path / "crash"
    _cli("run", "--agent", "tests.crashing_agent:CrashingAgent", "--suite", "in_dist",
         "--episodes", "4", "--max-steps", "10", "--no-coverage", "--quiet", "--workers", "2",
         "--episode-timeout", "40", "--out", str(out))
    recs = {r["spec"]["seed"]: r for r in _records(out)}
    assert sorted(recs) == [0, 1, 2, 3]
    assert recs[1]["status"] == "ok" and recs[1]["steps"] == 10
    assert recs[0]["status"] == "error" and "died" in recs[0]["error"]
    assert "attempt 2" in recs[2]["error"]  # retried once in a fresh worker
    assert recs[3]["status"] == "error" and "timed out" in recs[3]["error"]
