"""The experiment scheduler on fake stages (short Python commands, no simulator): slots,
dependencies, failures, markers, resume after SIGKILL, lazy rebuild of lost outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from para_bench.experiment.scheduler import needed_stages, stage_views
from para_bench.experiment.state import StageBook
from tests.conftest import ROOT, process_alive
from tests.fake_experiment import diamond, fake_stage, run, trace


def _intervals(root: Path) -> dict[str, tuple[float, float]]:
    ev = trace(root)
    starts = {n: t for e, n, t, _ in ev if e == "start"}
    ends = {n: t for e, n, t, _ in ev if e == "end"}
    return {n: (starts[n], ends.get(n, float("inf"))) for n in starts}


def _max_overlap(iv: dict[str, tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in iv.values()] + [(e, -1) for _, e in iv.values()])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_independent_stages_fill_the_slots_and_never_exceed_them(tmp_path):
    stages = [fake_stage(n, seconds=0.6) for n in "abcde"]
    code, _ = run(tmp_path, stages, jobs=2)
    assert code == 0
    iv = _intervals(tmp_path)
    assert len(iv) == 5 and _max_overlap(iv) == 2
    book = StageBook(tmp_path)
    for s in stages:
        m = book.marker(s)
        assert m and m["key"] == s.key and (tmp_path / s.output).read_text() == s.output[4:5]
        assert not (tmp_path / s.work).exists() and book.state(s) == "done"


def test_dependencies_run_first_and_a_rerun_does_nothing(tmp_path):
    stages = diamond(0.3)
    assert run(tmp_path, stages, jobs=3)[0] == 0
    iv = _intervals(tmp_path)
    assert iv["c"][0] >= max(iv["a"][1], iv["b"][1])
    assert _max_overlap({k: iv[k] for k in "ab"}) == 2
    n_events = len(trace(tmp_path))
    assert run(tmp_path, stages, jobs=3)[0] == 0
    assert len(trace(tmp_path)) == n_events  # all done: nothing ran again


def test_a_failed_stage_blocks_its_dependants_only(tmp_path):
    stages = [fake_stage("a", code=3), fake_stage("b"), fake_stage("c", ("a",)),
              fake_stage("d", ("b",))]
    code, sched = run(tmp_path, stages, jobs=1)
    assert code == 1
    states = {v.stage.name: v.state for v in sched.views.values()}
    assert states == {"demos a": "failed", "demos b": "done", "demos c": "blocked",
                      "demos d": "done"}
    assert "exit code 3" in sched.failed["demos a"]
    assert StageBook(tmp_path).marker(stages[0]) is None
    assert "$ python -c" in (tmp_path / stages[0].log).read_text()  # one log per stage


def test_a_changed_key_reruns_and_keeps_the_old_output(tmp_path):
    a = fake_stage("a")
    assert run(tmp_path, [a], jobs=1)[0] == 0
    a2 = fake_stage("a", salt="other")  # another input -> another key, another path
    assert a2.key != a.key and a2.output != a.output
    assert run(tmp_path, [a2], jobs=1)[0] == 0
    assert (tmp_path / a.output).is_file() and (tmp_path / a2.output).is_file()
    assert sum(e == "start" for e, *_ in trace(tmp_path)) == 2


def test_lost_outputs_are_rebuilt_only_when_needed():
    class S:  # stand-ins: only name, kind, deps matter
        def __init__(self, name, kind, deps=()):
            self.name, self.kind, self.deps = name, kind, deps

    stages = [S("demos", "collect"), S("train", "train", ("demos",)),
              S("eval", "evaluate", ("train",)), S("eval2", "evaluate", ("train",))]
    done = {"demos": "done", "train": "done", "eval": "done", "eval2": "done"}
    assert needed_stages(stages, {**done, "demos": "lost", "train": "lost"}) == set()
    assert needed_stages(stages, {**done, "demos": "lost", "eval": "lost"}) == {"eval"}
    assert needed_stages(stages, {**done, "demos": "lost", "train": "lost", "eval2": "todo"}) \
        == {"demos", "train", "eval2"}


def test_a_lost_output_is_rebuilt_and_the_rebuild_recorded(tmp_path):
    stages = diamond(0.1)
    assert run(tmp_path, stages, jobs=2)[0] == 0
    a, c = stages[0], stages[2]
    first = StageBook(tmp_path).marker(a)
    (tmp_path / a.output).unlink()
    (tmp_path / c.output).unlink()
    c_marker = tmp_path / "stages" / f"{c.stem}.done.json"
    c_marker.unlink()  # c must run again, so it needs a's output: a is rebuilt
    views = {v.stage.name: v.state for v in stage_views(stages, StageBook(tmp_path))}
    assert views == {"demos a": "lost", "demos b": "done", "demos c": "todo"}
    assert run(tmp_path, stages, jobs=2)[0] == 0
    m = StageBook(tmp_path).marker(a)
    assert len(m["rebuilt"]) == 1 and m["rebuilt"][0]["identical_bytes"]
    assert m["rebuilt"][0]["previous_sha256"] == first["sha256"]
    starts = [n for e, n, *_ in trace(tmp_path) if e == "start"]
    assert sorted(starts) == ["a", "a", "b", "c", "c"]


def test_an_altered_output_is_set_aside_and_rebuilt(tmp_path):
    a = fake_stage("a")
    assert run(tmp_path, [a], jobs=1)[0] == 0
    (tmp_path / a.output).write_text("tampered!")
    assert StageBook(tmp_path).state(a) == "lost"
    # an evaluate-kind dependant would force it; here, a plain rerun of the only stage:
    b = fake_stage("b", ("a",))
    assert run(tmp_path, [a, b], jobs=1)[0] == 0
    assert (tmp_path / a.output).read_text() == "a"
    assert list((tmp_path / "out").glob("a.*.altered-1"))


def test_sigkill_of_the_experiment_kills_its_stages_and_a_rerun_resumes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "tests.fake_experiment", str(tmp_path), "2", "30"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while len([e for e in trace(tmp_path) if e[0] == "start"]) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    children = [pid for e, _, _, pid in trace(tmp_path) if e == "start"]
    running = list((tmp_path / "stages").glob("*.running.json"))
    assert len(running) == 2 and {json.loads(p.read_text())["pid"] for p in running} == \
        set(children)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in children):  # PR_SET_PDEATHSIG: they die with it
        assert time.monotonic() < deadline, "stage processes outlived the experiment"
        time.sleep(0.05)
    # resume with short stages: a and b run again (lost in flight), then c
    stages = diamond(0.1)
    assert run(tmp_path, stages, jobs=2)[0] == 0
    book = StageBook(tmp_path)
    assert all(book.state(s) == "done" for s in stages)
    for s in stages[:2]:  # the two stages in flight ran twice, logged in one file each
        assert (tmp_path / s.log).read_text().count("$ python -c") == 2
    assert not list((tmp_path / "stages").glob("*.running.json"))


def test_a_collection_torn_by_a_kill_is_repaired_before_it_resumes(tmp_path):
    import h5py
    import numpy as np

    from para_bench.training.collect import repair_demo_file

    path = tmp_path / "demos.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i, complete in enumerate((True, False)):  # demo_1: killed mid-write
            g = data.create_group(f"demo_{i}")
            g.attrs.update({"episode_id": f"ep{i}", "num_samples": 5})
            g.create_dataset("actions", data=np.zeros((5, 7)))
            if complete:
                g.create_dataset("camera/extrinsics", data=np.zeros((5, 4, 4)))
    assert repair_demo_file(path)
    with h5py.File(path) as f:
        assert list(f["data"]) == ["demo_0"]  # collect will record episode ep1 again
    path.write_bytes(b"not an hdf5 file")
    assert not repair_demo_file(path)
    assert not path.exists()  # unreadable: the collection starts over


def test_eta_of_a_resumed_stage_counts_only_what_this_attempt_did():
    from para_bench.experiment.progress import StageView, remaining_seconds

    now = 1000.0
    fresh = StageView(fake_stage("a"), "running", started=now - 100, progress=(30, 50))
    resumed = StageView(fake_stage("b"), "running", started=now - 100, progress=(30, 50),
                        progress_start=20)
    left = remaining_seconds([fresh, resumed], now=now)
    assert abs(left["demos a"] - 100 * 20 / 30) < 1e-6  # 30 done in 100 s
    assert abs(left["demos b"] - 100 * 20 / 10) < 1e-6  # 10 done in 100 s, 20 left


def test_a_resumed_stage_costs_its_earlier_attempts():
    from para_bench.experiment.progress import stage_seconds

    marker = {"duration_s": 30.0, "earlier_attempts_s": 90.0}
    assert stage_seconds(fake_stage("a"), marker) == 120.0
    assert stage_seconds(fake_stage("a"), {"duration_s": 30.0}) == 30.0
    assert stage_seconds(fake_stage("a"), None) is None


def test_progress_is_read_from_the_current_attempt_of_a_stage_only(tmp_path):
    from para_bench.experiment.progress import stage_progress

    stage = fake_stage("a")
    log = tmp_path / stage.log
    log.parent.mkdir(parents=True)
    log.write_bytes(b"\n$ para-bench collect\n 49/50 [01:00<00:01]\n")  # killed at 49/50
    assert stage_progress(stage, tmp_path) == (49, 50)
    with open(log, "ab") as f:  # relaunched: its command line, no bar yet
        f.write(b"\n$ para-bench collect\nloading\n")
    assert stage_progress(stage, tmp_path) is None
    with open(log, "ab") as f:
        f.write(b" 12/50 [00:03<00:09]\n")
    assert stage_progress(stage, tmp_path) == (12, 50)


def test_finished_stages_of_another_folder_are_reused_not_run_again(tmp_path):
    from para_bench.experiment.run import _adopt

    first, second = tmp_path / "first", tmp_path / "second"
    assert run(first, diamond(), jobs=2)[0] == 0
    stages = diamond() + [fake_stage("d", ("c",))]  # one stage more than the first folder
    adopted = _adopt(stages, second, (first,))
    assert sorted(adopted) == ["demos a", "demos b", "demos c"]
    assert run(second, stages, jobs=2)[0] == 0
    assert [name for ev, name, *_ in trace(second) if ev == "start"] == ["d"]
    book = StageBook(second)
    for s in stages[:3]:
        assert book.state(s) == "done"
        assert book.marker(s)["reused_from"] == str(first.resolve())
    assert _adopt(stages, second, (first,)) == {}  # nothing left to take


def test_a_stage_with_the_same_key_under_another_name_is_reused_under_its_own(tmp_path):
    """An ablation variant whose options equal another experiment's agent has that stage's
    key (the same inputs): it is copied, under this experiment's name and output path."""
    import dataclasses

    from para_bench.experiment.run import _adopt

    first, second = tmp_path / "first", tmp_path / "second"
    a = fake_stage("a")
    assert run(first, [a], jobs=1)[0] == 0
    variant = dataclasses.replace(a, name="demos a_variant", output=f"out/a_variant.{a.key}",
                                  meta={**a.meta, "agent": "a_variant"})
    other = fake_stage("a", salt="other inputs")  # another key: never a twin
    assert _adopt([variant, other], second, (first,)) == {"demos a_variant": str(first)}
    book = StageBook(second)
    assert book.state(variant) == "done" and book.state(other) == "todo"
    marker = book.marker(variant)
    assert marker["name"] == "demos a_variant" and marker["output"] == variant.output
    assert marker["meta"]["agent"] == "a_variant"
    assert (second / variant.output).read_bytes() == (first / a.output).read_bytes()



def test_a_reused_training_brings_its_side_files_under_this_stages_name(tmp_path):
    """The summary, loss curve and overlay lie next to the finished checkpoint; adopted under
    another name (a variant), they are renamed with it."""
    import dataclasses

    from para_bench.experiment.run import _adopt

    first, second = tmp_path / "first", tmp_path / "second"
    base = fake_stage("a")
    key = base.key
    trained = dataclasses.replace(base, kind="train", name="train a",
                                  output=f"checkpoints/a.{key}.pt",
                                  work=f"checkpoints/.partial/a.{key}.pt")
    for path in (trained.output, *trained.output_side_files()):
        (first / path).parent.mkdir(parents=True, exist_ok=True)
        (first / path).write_text(Path(path).name)
    StageBook(first).write_done(trained, {"duration_s": 1.0})
    variant = dataclasses.replace(trained, name="train a_variant",
                                  output=f"checkpoints/a_variant.{key}.pt",
                                  work=f"checkpoints/.partial/a_variant.{key}.pt")
    assert _adopt([variant], second, (first,)) == {"train a_variant": str(first)}
    for mine, theirs in zip(variant.output_side_files(), trained.output_side_files(),
                            strict=True):
        assert "a_variant." in mine
        assert (second / mine).read_text() == Path(theirs).name
