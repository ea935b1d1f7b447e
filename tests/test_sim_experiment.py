"""``experiments/smoke.toml`` end to end on the real simulator: SIGKILLed once in the middle
of an evaluation, resumed, then its report checked against counts recomputed here from
the run folders' ``episodes.jsonl``; a lost checkpoint and run folder rebuilt identically.

Runs with ``--jobs 2`` (the CI machine's cores); ``PARA_BENCH_TEST_JOBS=1`` runs one stage
at a time on a shared machine.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, process_alive

pytestmark = pytest.mark.sim
SMOKE = ROOT / "experiments" / "smoke.toml"
JOBS = os.environ.get("PARA_BENCH_TEST_JOBS", "2")


def _cmd(action: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "para_bench.cli", "experiment", action, str(SMOKE), "--out",
            str(out), *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, MUJOCO_GL="egl", PYTHONPATH=str(ROOT))


def _run(action: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(action, out, *extra), capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _lines(path: Path) -> list[str]:
    try:
        return [x for x in path.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke experiment, killed once while an evaluation has 1 of 2 records, resumed."""
    out = tmp_path_factory.mktemp("exp") / "smoke"
    with open(out.parent / "first.log", "wb") as log:
        proc = subprocess.Popen(_cmd("run", out, "--jobs", JOBS), cwd=ROOT, env=_env(),
                                stdout=log, stderr=log)
    deadline, partial = time.monotonic() + 600, None
    while partial is None:
        assert proc.poll() is None, "the experiment ended before it could be killed mid-stage"
        assert time.monotonic() < deadline
        for run in (out / "runs").glob("*.*") if (out / "runs").is_dir() else []:
            done = list((out / "stages").glob(f"*{run.name.rsplit('.', 1)[1]}.done.json"))
            if len(_lines(run / "episodes.jsonl")) == 1 and not done:
                partial = run
        time.sleep(0.05)
    first_record = _lines(partial / "episodes.jsonl")[0]
    running = [json.loads(p.read_text()) for p in (out / "stages").glob("*.running.json")]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pids = [r["pid"] for r in running]
    deadline = time.monotonic() + 15
    while any(process_alive(p) for p in pids):
        assert time.monotonic() < deadline, "stages outlived the killed experiment"
        time.sleep(0.1)
    resumed = _run("run", out, "--jobs", JOBS)
    return {"out": out, "partial": partial, "first_record": first_record, "resumed": resumed}


def _recount(out: Path) -> dict[str, tuple[str, str, str, int, int]]:
    """run folder -> (agent, suite, split, k, n), read straight from the manifest and
    ``episodes.jsonl`` (infeasible scenes are not trials)."""
    counts = {}
    for folder in sorted((out / "runs").iterdir()):
        if not (folder / "episodes.jsonl").is_file():
            continue
        recs = [json.loads(x) for x in _lines(folder / "episodes.jsonl")]
        agent = json.loads((folder / "manifest.json").read_text())["config"]["agent"]
        where = {(r["spec"]["suite"], r["spec"]["split"]) for r in recs}
        assert len(where) == 1 and len({r["episode_id"] for r in recs}) == len(recs)
        k = sum(r["success"] and r["status"] == "ok" for r in recs)
        n = sum(r["status"] != "infeasible" for r in recs)
        counts[f"runs/{folder.name}"] = (agent, *where.pop(), k, n)
    return counts


def test_resumed_smoke_experiment_reports_what_the_records_say(smoke):
    out = smoke["out"]
    markers = list((out / "stages").glob("*.done.json"))
    assert len(markers) == 10 and not list((out / "stages").glob("*.running.json"))
    # the evaluation killed mid-way kept its first episode and was not started over
    assert _lines(smoke["partial"] / "episodes.jsonl")[0] == smoke["first_record"]
    logs = [p.read_text() for p in (out / "logs").glob("eval-*.log")]
    assert sum(log.count("\n$ ") == 2 for log in logs) >= 1  # that stage ran twice
    counts = _recount(out)
    assert sorted(c[:3] for c in counts.values()) == [
        ("noop", "in_dist", "test"), ("noop", "pos_ood", "test"), ("para", "in_dist", "test"),
        ("para", "in_dist", "val"), ("para", "pos_ood", "test"), ("para", "pos_ood", "val")]
    rows = list(csv.DictReader(open(out / "report" / "cells.csv")))
    assert len(rows) == 6
    md = (out / "report" / "report.md").read_text()
    tables = {"test": md.split("## Success matrix")[1].split("###")[0],
              "val": md.split("### Held-out scenes")[1].split("###")[0]}
    for r in rows:
        agent, suite, split, k, n = counts[r["run_dir"]]
        assert (r["agent"], r["setting"], r["split"], int(r["k"]), int(r["n"])) == \
            (agent, suite, split, k, n)
        line = next(ln for ln in tables[split].splitlines() if ln.startswith(f"| {agent} |"))
        column = ["in_dist", "pos_ood"].index(suite)
        assert line.split("|")[2 + column].strip().startswith(f"{k}/{n}  ")
    for png in ("matrix", "bars", "perturbation", "training"):
        assert (out / "report" / f"{png}.png").stat().st_size > 3000


def test_rerun_does_nothing_and_status_and_report_agree(smoke):
    out = smoke["out"]
    before = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.done.json")}
    logs = {p: p.read_text() for p in (out / "logs").glob("*.log")}
    report = (out / "report" / "report.md").read_text()
    _run("run", out, "--jobs", JOBS)
    assert {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.done.json")} == before
    assert {p: p.read_text() for p in (out / "logs").glob("*.log")} == logs
    status = _run("status", out).stdout
    assert "10 stages: 10 done, 0 running, 0 left" in status
    _run("report", out)
    assert (out / "report" / "report.md").read_text().split("## Provenance")[0] == \
        report.split("## Provenance")[0]


def test_lost_checkpoint_and_records_are_rebuilt_identically(smoke):
    out = smoke["out"]
    ckpt = next((out / "checkpoints").glob("para-pos_ood-*.pt"))
    run = next((out / "runs").glob("para-pos_ood-*-test.*"))
    before = sorted((json.loads(x)["episode_id"], json.loads(x)["success"],
                     json.loads(x)["eef_trajectory"]) for x in _lines(run / "episodes.jsonl"))
    ckpt.unlink()
    subprocess.run(["rm", "-r", str(run)], check=True)
    assert "lost     eval para pos_ood/test" in _run("status", out).stdout
    _run("run", out, "--jobs", JOBS)
    after = sorted((json.loads(x)["episode_id"], json.loads(x)["success"],
                    json.loads(x)["eef_trajectory"]) for x in _lines(run / "episodes.jsonl"))
    assert after == before  # same seeds -> same episodes, outcomes and trajectories
    md = (out / "report" / "report.md").read_text()
    rebuilt = md.split("### Rebuilt stages")[1].split("###")[0]
    assert "`train para pos_ood d2 s0`: output lost, rebuilt" in rebuilt
    assert "`eval para pos_ood/test d2 s0`: output lost, rebuilt" in rebuilt
    assert rebuilt.count("identical content") == 2  # weights and records equal the lost ones
