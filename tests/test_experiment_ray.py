"""Experiment stages as Ray tasks on a local Ray instance (fake stages, no simulator):
inputs travel with the task, outputs and logs come back into the experiment folder."""

from __future__ import annotations

import pytest

from para_bench.experiment.scheduler import RunOptions, Scheduler
from para_bench.experiment.state import StageBook
from tests.fake_experiment import FAKE_SPEC, fake_stage

ray = pytest.importorskip("ray")


def test_stages_run_on_ray_and_their_outputs_come_back(tmp_path, local_ray):
    stages = [fake_stage("a"), fake_stage("b"), fake_stage("c", ("a", "b")),
              fake_stage("bad", code=4), fake_stage("after_bad", ("bad",))]
    sched = Scheduler(FAKE_SPEC, stages, tmp_path,
                      RunOptions(jobs=2, executor="ray", live=False))
    assert sched.run() == 1
    book = StageBook(tmp_path)
    for s in stages[:3]:
        assert book.state(s) == "done" and (tmp_path / s.output).read_text() == s.work[-1]
        assert "(on Ray)" in (tmp_path / s.log).read_text()
    assert not (tmp_path / "trace.txt").exists()  # the command ran in a scratch folder
    assert sched.views["demos bad"].state == "failed" and "exit code 4" in sched.failed["demos bad"]
    assert sched.views["demos after_bad"].state == "blocked"
