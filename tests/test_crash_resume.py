"""Survival: a run SIGKILLed at random points, resumed each time, equals an uninterrupted one.

Real process kills, no simulator: ``tests/crash_run.py`` runs a slow fake plan in a child
process (in-process episodes, or two worker processes); the test kills the child with
``SIGKILL`` a seeded-random moment after it has written a new record, five times, then
lets one resume tear its second record (half a line on disk, then ``SIGKILL``), then
resumes to the end. With workers, it also checks that the workers die with their parent.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from para_bench.runner import run_plan
from tests import crash_run
from tests.conftest import ROOT, process_alive
from tests.fake_env import make_env

KILLS = 5


def _launch(out: Path, workers: int, tear_at: int = 0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MUJOCO_GL="egl")
    cmd = [sys.executable, "-m", "tests.crash_run", str(out), "--workers", str(workers),
           "--tear-at", str(tear_at)]
    with open(out.parent / "children.log", "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)


def _lines(out: Path) -> list[bytes]:
    try:
        data = (out / "episodes.jsonl").read_bytes()
    except FileNotFoundError:
        return []
    return [x for x in data.split(b"\n") if x.strip()]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _kill_mid_run(out: Path, workers: int, rng: random.Random) -> dict:
    """Starts a resume, waits for a new record plus a random delay, SIGKILLs it."""
    before = len(_lines(out))
    proc = _launch(out, workers)
    deadline = time.monotonic() + 30
    while len(_lines(out)) <= before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    delay = rng.uniform(0.0, 0.3)
    time.sleep(delay)
    workers_pids = _children(proc.pid) if workers > 1 else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill; slow it down"
    deadline = time.monotonic() + 10
    while any(map(process_alive, workers_pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(process_alive, workers_pids)), "workers outlived their killed parent"
    return {"delay": delay, "records": len(_lines(out)), "workers": len(workers_pids)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_killed_five_times_and_resumed_equals_an_uninterrupted_run(tmp_path, workers):
    plan = crash_run.plan()
    reference = run_plan(plan, crash_run.config(delay=0.0), tmp_path / "ref",
                         env_factory=make_env, progress=False).records()
    out = tmp_path / "run"
    rng = random.Random(1000 + workers)
    history = [_kill_mid_run(out, workers, rng) for _ in range(KILLS)]
    counts = [h["records"] for h in history]
    assert counts == sorted(counts) and 0 < counts[-1] < len(plan), history
    if workers > 1:
        assert all(h["workers"] == workers for h in history), history

    torn = _launch(out, workers, tear_at=2)  # half a line on disk, then SIGKILL
    assert torn.wait(timeout=60) == -signal.SIGKILL
    tail = _lines(out)[-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(tail)

    final = _launch(out, workers)
    assert final.wait(timeout=60) == 0, (tmp_path / "children.log").read_text()[-3000:]
    records = [json.loads(x) for x in _lines(out)]  # every line parses: the tear was cut
    ids = Counter(r["episode_id"] for r in records)
    assert len(records) == len(plan) and max(ids.values()) == 1
    assert set(ids) == {s.episode_id for s in plan}
    assert {r["episode_id"]: r["success"] for r in records} == \
        {r.episode_id: r.success for r in reference}
    assert sum(r["success"] for r in records) == sum(r.success for r in reference)
    assert 0 < sum(r.success for r in reference) < len(plan)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_killed_parent(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MUJOCO_GL="egl")
    cmd = [sys.executable, "-m", "tests.crash_run", str(tmp_path / "run"), "--workers", "2",
           "--delay", "60"]  # each worker sleeps in its first act() for a minute
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(_children(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(child.pid)
        assert len(workers) == 2
        time.sleep(1.0)  # let them get into act()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 5
    while any(map(process_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(process_alive, workers)), "workers outlived their killed parent"
