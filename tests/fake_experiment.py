"""Fake experiment stages for scheduler tests: short Python commands, no simulator.

Each stage runs ``python -c STAGE_SCRIPT work seconds trace exit_code``: it appends
``start <name> <time>`` to the trace file, sleeps, writes its output, appends ``end ...``
and exits with ``exit_code``. ``python -m tests.fake_experiment ROOT JOBS SECONDS`` runs the
diamond experiment (a, b -> c) in ROOT (used by the kill test).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from para_bench.experiment.scheduler import RunOptions, Scheduler
from para_bench.experiment.stages import Stage, stage_key

STAGE_SCRIPT = """
import os, sys, time
work, secs, trace, code = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
name = os.path.basename(work)
def note(ev):
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{ev} {name} {time.time():.4f} {os.getpid()}\\n".encode())
    os.close(fd)
note("start")
time.sleep(secs)
if code == 0:
    os.makedirs(os.path.dirname(work), exist_ok=True)
    with open(work, "w") as f:
        f.write(name)
note("end")
sys.exit(code)
"""


def fake_stage(name: str, deps: tuple[str, ...] = (), seconds: float = 0.2, code: int = 0,
               trace: str = "trace.txt", salt: str = "") -> Stage:
    """A ``collect``-kind stage whose command is :data:`STAGE_SCRIPT`; its key covers the
    name, exit code and ``salt`` (not the duration: a resume may run it faster)."""
    material = {"name": name, "code": code, "salt": salt}
    key = stage_key(material)
    work, output = f"out/.partial/{name}", f"out/{name}.{key}"
    return Stage("collect", f"demos {name}", key, material, tuple(f"demos {d}" for d in deps),
                 output, work, ["python", "-c", STAGE_SCRIPT, work, str(seconds), trace,
                                str(code)], {"demos": 1, "setting": "fake"})


def diamond(seconds: float = 0.2) -> list[Stage]:
    """a, b (independent) -> c."""
    return [fake_stage("a", seconds=seconds), fake_stage("b", seconds=seconds),
            fake_stage("c", ("a", "b"), seconds=seconds)]


#: an experiment of fake stages: no agents, settings or baselines to order them by
FAKE_SPEC = SimpleNamespace(name="fake", agents=(), settings=(), baselines=())


def run(root: Path, stages: list[Stage], jobs: int) -> tuple[int, Scheduler]:
    sched = Scheduler(FAKE_SPEC, stages, root, RunOptions(jobs=jobs, live=False))
    return sched.run(), sched


def trace(root: Path) -> list[tuple[str, str, float, int]]:
    """Events of the trace file: (event, stage file name, time, pid)."""
    try:
        lines = (root / "trace.txt").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        ev, name, t, pid = line.split()
        out.append((ev, name, float(t), int(pid)))
    return out


if __name__ == "__main__":
    root, jobs, secs = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    sys.exit(run(root, diamond(secs), jobs)[0])
