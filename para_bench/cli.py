"""``para-bench``: list, run, collect, train, table, plot, compare, serve, experiment.

Bad input prints one line (``para-bench: error: ...``) and exits with code 2; set
``PARA_BENCH_DEBUG=1`` for full tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from para_bench.agents.oracle import RIM_SIDE_MARGIN
from para_bench.argtypes import positive_int
from para_bench.envs.physics import PHYSICS_LOOPS
from para_bench.errors import StartupError
from para_bench.models.zoo import MODELS
from para_bench.serving.commands import (
    add_remote_arguments,
    add_serve_parser,
    cmd_serve,
    redact_secrets,
    remote_agent_kwargs,
)

CONTROL_MODES = ("delta", "servo", "teleport")
POLICY_NAMES = tuple(MODELS)


class UsageError(ValueError):
    """Bad input from the command line."""




def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="para-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list agents or suites")
    ls.add_argument("what", choices=("agents", "suites"))
    ls.add_argument("--json", action="store_true", help="print suites as JSON")

    run = sub.add_parser("run", help="evaluate an agent on a suite")
    run.add_argument("--agent", required=True, help="registry name or package.module:factory")
    run.add_argument("--suite", required=True, help="suite name or path to a suite .json")
    run.add_argument("--split", default="test")
    run.add_argument("--tasks", default=None,
                     help="comma-separated benchmark/task_id items (default: the suite's)")
    run.add_argument("--episodes", type=positive_int, default=None, help="episodes per task")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--control", choices=CONTROL_MODES, default="servo")
    run.add_argument("--zero-rotation", action="store_true")
    run.add_argument("--max-steps", type=positive_int, default=600)
    run.add_argument("--action-scale", type=float, default=1.0)
    run.add_argument("--image-size", type=positive_int, default=128)
    run.add_argument("--checkpoint", default=None)
    run.add_argument("--agent-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="keyword argument of the agent's constructor (VALUE as JSON), e.g. "
                          "--agent-arg rim_side_margin=0 for the oracle; kept in the run's "
                          "identity")
    run.add_argument("--no-coverage", action="store_true",
                     help="skip the oracle reference runs behind free-space coverage")
    run.add_argument("--render-quality", choices=("fast", "libero"), default=None,
                     help="renderer settings (default: the checkpoint's training images', "
                          "else fast)")
    run.add_argument("--out", default=None,
                     help="run folder (default results/<agent>_<suite>_<split>-<run id>)")
    run.add_argument("--retry-errors", action="store_true",
                     help="on resume, re-run episodes whose record is an error")
    run.add_argument("--allow-train-scenes", action="store_true",
                     help="evaluate on scenes the checkpoint was trained on (refused "
                          "otherwise; the records say so)")
    run.add_argument("--video", default="none", help="none | all | failures | N (first N)")
    run.add_argument("--workers", type=positive_int, default=1,
                     help="episodes in N worker processes (each its own simulator)")
    run.add_argument("--episode-timeout", type=float, default=None,
                     help="seconds before an episode is killed and recorded as an error")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local worker processes, or Ray actors (--workers N = N actors)")
    run.add_argument("--ray-address", default=None,
                     help="Ray cluster to join (e.g. auto); default: a local Ray instance")
    run.add_argument("--physics", choices=PHYSICS_LOOPS, default="fast",
                     help="control-step loop: fast (default) or robosuite's own (audits)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    add_remote_arguments(run)

    col = sub.add_parser("collect", help="record oracle demos on a suite split (HDF5)")
    col.add_argument("--suite", required=True, help="suite name or path to a suite .json")
    col.add_argument("--split", default="train")
    col.add_argument("--tasks", default=None, help="comma-separated benchmark/task_id items")
    col.add_argument("--episodes", type=positive_int, default=None, help="episodes per task")
    col.add_argument("--seed", type=int, default=0)
    col.add_argument("--image-size", type=positive_int, default=128)
    col.add_argument("--max-steps", type=positive_int, default=600)
    col.add_argument("--out", required=True, help="HDF5 file to write (resumes if it exists)")
    col.add_argument("--physics", choices=PHYSICS_LOOPS, default="fast",
                     help="control-step loop: fast (default) or robosuite's own (audits)")
    col.add_argument("--rim-side-margin", type=float, default=RIM_SIDE_MARGIN, metavar="M",
                     help="the oracle takes the first rim side (+y, -y, +x, -x) whose score is "
                          f"within M metres of the best (default {RIM_SIDE_MARGIN}; 0: the best)")
    col.add_argument("--quiet", action="store_true", help="no progress bar")

    tr = sub.add_parser("train", help="train a policy on collected demos")
    tr.add_argument("--agent", required=True, help="one of: " + ", ".join(POLICY_NAMES))
    tr.add_argument("--data", required=True, help="HDF5 demos (para-bench collect or LIBERO)")
    tr.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    tr.add_argument("--steps", type=positive_int, default=None,
                    help="optimisation steps (default: the model's train_steps, sized to fit "
                         "15 minutes on one core of a 2-core machine)")
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="stop (and save) after this many minutes")
    tr.add_argument("--no-resume", action="store_true",
                    help="start over even if an interrupted run of this training left a "
                    "resume state (<out>.resume.pt)")
    tr.add_argument("--batch-size", type=positive_int, default=32)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    tr.add_argument("--threads", type=positive_int, default=None,
                    help="torch CPU threads (default: torch's; use 1 beside running "
                         "simulators: oversubscribed threads make torch 10-100x slower)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a model config field, e.g. --set backbone=dinov2:/path")
    tr.add_argument("--camera-from-task", default=None, metavar="BENCHMARK/ID",
                    help="camera for demo files without one (LIBERO's own): that task's "
                         "default agent view")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    table = sub.add_parser("table", help="summary table of one or more run folders")
    table.add_argument("paths", nargs="+")
    table.add_argument("--markdown", action="store_true")

    plot = sub.add_parser("plot", help="bar chart with CIs and an agent x suite heatmap")
    plot.add_argument("paths", nargs="+")
    plot.add_argument("--out", default="comparison.png")

    cmp_ = sub.add_parser("compare", help="paired comparison of two agents on the same plan")
    cmp_.add_argument("paths", nargs="+")
    cmp_.add_argument("--a", required=True, help="agent A")
    cmp_.add_argument("--b", required=True, help="agent B")
    add_serve_parser(sub)

    from para_bench.experiment.command import add_parser as add_experiment_parser

    add_experiment_parser(sub)
    return p


def cmd_list(args: argparse.Namespace) -> int:
    from para_bench.registry import AGENTS
    from para_bench.suites import list_suites

    if args.what == "agents":
        rows = [(e.name, e.source, AGENTS.describe(e)) for e in AGENTS.entries()]
        width = max(len(r[0]) for r in rows)
        swidth = max(len(r[1]) for r in rows)
        for name, source, desc in rows:
            print(f"{name:<{width}}  {source:<{swidth}}  {desc}")
        return 0
    suites = list_suites()
    if args.json:
        print(json.dumps([s.to_dict() for s in suites], indent=2))
    else:
        print("\n\n".join(s.summary() for s in suites))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from para_bench.registry import AGENTS
    from para_bench.results.tables import format_table, records_frame, summary_table
    from para_bench.runner import RunConfig, default_run_dir, prepare_run, run_plan
    from para_bench.suites import get_suite

    factory = AGENTS.get(args.agent).load()  # unknown agent -> one line listing the choices
    if hasattr(factory, "check_checkpoint"):  # model agents: missing / wrong checkpoint
        factory.check_checkpoint(args.checkpoint)
    suite = get_suite(args.suite)
    tasks = _task_list(args.tasks)
    if args.video not in ("none", "all", "failures") and not args.video.isdigit():
        raise UsageError(f"--video must be none, all, failures or a number, got {args.video!r}")
    if not args.action_scale > 0:
        raise UsageError(f"--action-scale must be positive, got {args.action_scale}")
    if args.executor == "ray":
        from para_bench.executors.ray_actors import INSTALL_HINT, ray_available

        if not ray_available():
            raise UsageError(INSTALL_HINT)
    elif args.ray_address:
        raise UsageError("--ray-address needs --executor ray")
    agent_kwargs = _agent_args(factory, args)
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise UsageError(f"checkpoint {args.checkpoint}: no such file")
        agent_kwargs["checkpoint"] = args.checkpoint
    if args.episode_timeout is not None and not args.episode_timeout > 0:
        raise UsageError(f"--episode-timeout must be positive, got {args.episode_timeout}")
    agent_kwargs.update(remote_agent_kwargs(args))  # --agent remote: is the server there?
    plan = suite.plan(args.split, tasks=tasks, episodes=args.episodes, seed=args.seed)
    config = RunConfig(agent=args.agent, agent_kwargs=agent_kwargs, control=args.control,
                       zero_rotation=args.zero_rotation, max_steps=args.max_steps,
                       action_scale=args.action_scale, image_size=args.image_size,
                       render_quality=args.render_quality, coverage=not args.no_coverage,
                       video=args.video, allow_train_scenes=args.allow_train_scenes,
                       physics=args.physics)
    in_process = args.executor == "local" and args.workers == 1 and not args.episode_timeout
    prepared = prepare_run(plan, config, in_process)
    trained_quality = prepared.requirements.render_quality
    if args.render_quality and trained_quality and args.render_quality != trained_quality:
        print(f"para-bench: warning: --render-quality {args.render_quality} differs from the "
              f"checkpoint's training images ({trained_quality})", file=sys.stderr)
    if prepared.train_scene_ids is None and args.checkpoint:
        print("para-bench: note: the checkpoint does not record its training scenes; "
              "overlap with this plan cannot be checked", file=sys.stderr)
    out = Path(args.out) if args.out else default_run_dir(prepared, suite.name, args.split)
    print(f"para-bench: {args.agent} on {suite.name}/{args.split}: {len(plan)} episodes -> {out}",
          file=sys.stderr)
    t0 = time.time()
    command = ["para-bench", *redact_secrets(sys.argv[1:])]  # no API key in the manifest
    run_plan(plan, config, out, command=command, progress=not args.quiet,
             workers=args.workers, episode_timeout=args.episode_timeout,
             executor=args.executor, ray_address=args.ray_address,
             retry_errors=args.retry_errors, prepared=prepared)
    summary = summary_table(records_frame([out]))
    print(format_table(summary))
    print(f"({time.time() - t0:.0f} s; records in {out / 'episodes.jsonl'})", file=sys.stderr)
    return 0


def _task_list(text: str | None) -> list[str] | None:
    """``--tasks`` as a list of validated ``benchmark/task_id`` items (None: the suite's)."""
    from para_bench.envs.tasks import parse_task

    if not text:
        return None
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    for t in tasks:
        parse_task(t)
    return tasks


def cmd_collect(args: argparse.Namespace) -> int:
    from para_bench.suites import get_suite
    from para_bench.training.collect import collect

    suite = get_suite(args.suite)
    tasks = _task_list(args.tasks)
    plan = suite.plan(args.split, tasks=tasks, episodes=args.episodes, seed=args.seed)
    print(f"para-bench: oracle demos on {suite.name}/{args.split}: {len(plan)} episodes -> "
          f"{args.out}", file=sys.stderr)
    counts = collect(plan, args.out, image_size=args.image_size, max_steps=args.max_steps,
                     progress=not args.quiet, physics=args.physics,
                     rim_side_margin=args.rim_side_margin)
    print(f"wrote {counts['written']} demos ({counts['failed']} oracle failures dropped, "
          f"{counts['skipped']} already there) to {args.out}")
    return 0


def _overrides(items: list[str], flag: str = "--set") -> dict:
    """``KEY=VALUE`` items as a dict; VALUE read as JSON where it parses, else a string."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _agent_args(factory: object, args: argparse.Namespace) -> dict:
    """``--agent-arg`` items, checked against the agent's constructor before anything runs."""
    import inspect

    given = _overrides(args.agent_arg, "--agent-arg")
    if "checkpoint" in given:
        raise UsageError("give the checkpoint with --checkpoint, not --agent-arg")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C factory: let it judge its arguments
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return given
    takes = sorted(k for k, p in params.items() if p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and k != "checkpoint")
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise UsageError(f"--agent-arg {', '.join(unknown)}: {args.agent} takes "
                         f"{', '.join(takes) if takes else 'no arguments'}")
    return given


def cmd_train(args: argparse.Namespace) -> int:
    if args.agent not in POLICY_NAMES:
        raise UsageError(f"cannot train agent {args.agent!r}; choose one of: "
                         f"{', '.join(POLICY_NAMES)}")
    from para_bench.models.zoo import load_model_class
    from para_bench.training.train import train_policy

    if args.camera_from_task:
        from para_bench.envs.tasks import parse_task

        parse_task(args.camera_from_task)
    if not os.path.isfile(args.data):
        raise UsageError(f"dataset {args.data}: no such file")
    overrides = _overrides(args.set)
    known = set(load_model_class(args.agent).config_class.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown config field(s) {unknown} for {args.agent}; fields: "
                         f"{', '.join(sorted(known))}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device visible to torch")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    summary = train_policy(args.agent, args.data, args.out, steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, device=args.device,
                           seed=args.seed, overrides=overrides, max_minutes=args.max_minutes,
                           progress=not args.quiet, camera_task=args.camera_from_task,
                           resume=not args.no_resume)
    metrics = {k: v for k, v in summary.items() if k.startswith("val_")}
    early = " (interrupted)" if summary.get("interrupted") else ""
    print(f"{args.agent}: {summary['steps']} steps{early} in {summary['train_minutes']} min; "
          + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    print(f"wrote {args.out} (+ .train.json, .loss.png, .overlay.png)")
    return 0


def _frame(paths: list[str]):
    from para_bench.results.store import find_runs
    from para_bench.results.tables import records_frame

    runs = [r for p in paths for r in find_runs(p)]
    if not runs:
        raise UsageError(f"no run folders (with episodes.jsonl) under {', '.join(paths)}")
    return records_frame(runs)


def cmd_table(args: argparse.Namespace) -> int:
    from para_bench.results.tables import format_table, summary_table, to_markdown

    summary = summary_table(_frame(args.paths))
    print(to_markdown(summary) if args.markdown else format_table(summary))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from para_bench.results.plots import plot_comparison
    from para_bench.results.tables import summary_table

    path = plot_comparison(summary_table(_frame(args.paths)), args.out)
    print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from para_bench.results.tables import paired_comparison

    df = _frame(args.paths)
    for agent in (args.a, args.b):
        if agent not in set(df["agent"]):
            raise UsageError(f"agent {agent!r} not in these runs; found: "
                             f"{', '.join(sorted(set(df['agent'])))}")
    res = paired_comparison(df, args.a, args.b)
    print(json.dumps(res, indent=2, default=float))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from para_bench.experiment.command import cmd_experiment as run

    return run(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "collect": cmd_collect, "train": cmd_train,
            "table": cmd_table, "plot": cmd_plot, "compare": cmd_compare, "serve": cmd_serve,
            "experiment": cmd_experiment}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``para-bench`` console script."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ValueError, FileNotFoundError) as e:
        if os.environ.get("PARA_BENCH_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"para-bench: error: {msg}", file=sys.stderr)
        return 2
    except StartupError as e:  # the agent (or a worker / actor) could not be built
        if os.environ.get("PARA_BENCH_DEBUG"):
            raise
        print(f"para-bench: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("para-bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
