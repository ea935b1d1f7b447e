"""``para-bench experiment run|status|report FILE``: the command line of experiments."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from para_bench.argtypes import positive_int

__all__ = ["add_parser", "cmd_experiment"]

HELP = """run: collect -> train -> evaluate -> report, resuming where it stopped;
status: which stages are done, running, left, with an ETA; report: rebuild <out>/report/
from the records alone."""




def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds the ``experiment`` sub-command to the ``para-bench`` parser."""
    p = sub.add_parser("experiment", help="run an experiment file: collect, train, "
                       "evaluate, report (resumable)", description=HELP)
    p.add_argument("action", choices=("run", "status", "report"))
    p.add_argument("file", help="experiment file (TOML), e.g. experiments/para_matrix.toml")
    p.add_argument("--out", default=None,
                   help="experiment folder (default results/experiments/<name>)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="simulators + trainings at once (default: the number of cores)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="stages as local processes, or as tasks on a Ray cluster")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (e.g. auto); default: a local Ray instance")
    p.add_argument("--train-gpus", type=float, default=0.0,
                   help="GPUs per training (Ray); trainings then use --device cuda")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="another experiment folder whose finished stages with the same "
                   "inputs (demos, checkpoints, runs) are copied instead of run again "
                   "(repeatable)")
    p.add_argument("--quiet", action="store_true", help="no live view")
    return p


def cmd_experiment(args: argparse.Namespace) -> int:
    """Runs ``experiment run|status|report``; malformed input raises ``ValueError``."""
    from para_bench.experiment.spec import load_experiment
    from para_bench.experiment.stages import expand

    spec = load_experiment(args.file)
    if args.train_gpus < 0:
        raise ValueError(f"--train-gpus must be >= 0, got {args.train_gpus:g}")
    if args.action == "run" and args.executor != "ray" and (args.train_gpus or args.ray_address):
        raise ValueError("--train-gpus and --ray-address need --executor ray")
    out = Path(args.out or Path("results") / "experiments" / spec.name)
    stages = expand(spec, train_device="cuda" if args.train_gpus else None)
    if args.action == "status":
        return _status(spec, stages, out, args.jobs or os.cpu_count() or 1)
    if args.action == "report":
        if not out.is_dir():
            raise ValueError(f"{out}: no such experiment folder (run it first, or give --out)")
        from para_bench.experiment.report import write_report

        print(f"wrote {write_report(spec, stages, out)}")
        return 0
    if args.executor == "ray":
        from para_bench.executors.ray_actors import INSTALL_HINT, ray_available

        if not ray_available():
            raise ValueError(INSTALL_HINT)
    from para_bench.experiment.run import run_experiment
    from para_bench.experiment.scheduler import RunOptions

    # on Ray without --jobs: the cluster's CPUs (known once connected)
    jobs = args.jobs or (0 if args.executor == "ray" else os.cpu_count() or 1)
    for folder in args.reuse:
        if not (Path(folder) / "stages").is_dir():
            raise ValueError(f"--reuse {folder}: not an experiment folder (no stages/)")
    opts = RunOptions(jobs=jobs, executor=args.executor, train_gpus=args.train_gpus,
                      ray_address=args.ray_address, live=not args.quiet,
                      reuse=tuple(Path(f) for f in args.reuse))
    for note in spec.notes:
        print(f"note: {note}", file=sys.stderr)
    return run_experiment(spec, stages, out, opts)


def _status(spec, stages, out: Path, jobs: int) -> int:
    from para_bench.experiment.progress import render
    from para_bench.experiment.scheduler import stage_views
    from para_bench.experiment.state import StageBook

    book = StageBook(out)
    lines = render(spec.name, stage_views(stages, book), jobs, every_stage=True)
    keys = {s.key for s in stages}
    stale = [m for m in book.all_markers() if m.get("key") not in keys]
    if stale:
        lines.append(f"({len(stale)} done stage(s) in {out} belong to other settings of this "
                     "file; they are kept, not used)")
    lines.append(f"folder: {out}" + ("" if out.is_dir() else " (not started)"))
    lines += [f"note: {note}" for note in spec.notes]
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `status | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
