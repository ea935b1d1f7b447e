"""Episodes in spawned worker processes, one writer of records.

Each worker is a fresh ``python -m para_bench.parallel`` process started in its own
session (``start_new_session=True``): on Linux the kernel shares CPU per session
(autogroup), so workers started from one session would share one core. A worker gets a
shard of the plan on stdin, each episode with its index in the run's plan, and prints one
JSON line per event on stdout: ``{"ready": true}`` once its agent is built (or
``{"fatal": reason}`` if it cannot be), then ``{"start": episode_id}`` and
``{"record": {...}}`` per episode. The parent appends records.

A worker that dies (segfault in MuJoCo, OOM, killed) costs only its in-flight episode:
that episode is retried in a fresh worker up to ``MAX_ATTEMPTS`` times, then recorded as
an error; an episode over ``episode_timeout`` seconds is killed and recorded as an error.
A worker that cannot build its agent stops the run (:class:`~para_bench.errors.StartupError`,
naming the cause), as does one that dies before it is ready ``MAX_ATTEMPTS`` times in a
row. Workers die with the parent (``PR_SET_PDEATHSIG`` on Linux), so a killed run leaves
no simulators behind. Each worker renders with one llvmpipe thread (``LP_NUM_THREADS=1``
unless set): with as many workers as cores, Mesa's default of one render thread per core
made the workers' threads fight (measured: 1.49x instead of 1.65x for 2 workers on 2 cores).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from para_bench.errors import StartupError, describe
from para_bench.types import EpisodeRecord, EpisodeSpec

if TYPE_CHECKING:
    from para_bench.runner import RunConfig

MAX_ATTEMPTS = 2
PR_SET_PDEATHSIG = 1

Item = tuple[int, EpisodeSpec]  # an episode and its index in the run (for --video N)


def importable_name(obj: Any) -> str | None:
    """``module:qualname`` under which a worker process can import ``obj``, or None.

    Args:
        obj: a module-level function or class (e.g. an ``env_factory``).

    Returns:
        The name, or None for lambdas, closures, ``__main__`` objects and the like.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return None
    try:
        found = _load(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def _load(name: str) -> Any:
    """Imports ``module:qualname``."""
    import importlib

    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def worker_environment() -> dict[str, str]:
    """The environment of a worker process: ours, with one llvmpipe render thread."""
    env = dict(os.environ)
    env.setdefault("LP_NUM_THREADS", "1")
    env.setdefault("MUJOCO_GL", "egl")
    return env


class _Worker:
    """One worker process, its shard and what it is doing."""

    def __init__(self, shard: list[Item], job: dict, log: Path) -> None:
        self.pending = list(shard)
        self.ready = False
        self.in_flight: EpisodeSpec | None = None
        self.started_at = 0.0
        self.buffer = b""
        payload = dict(job, specs=[{"index": i, "spec": s.to_dict()} for i, s in shard])
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "para_bench.parallel"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                env=worker_environment(),
            )
        self.proc.stdin.write(json.dumps(payload).encode())
        self.proc.stdin.close()
        os.set_blocking(self.proc.stdout.fileno(), False)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, episode_id: str) -> None:
        """Drops a finished episode from the shard."""
        self.pending = [(i, s) for i, s in self.pending if s.episode_id != episode_id]
        self.in_flight = None


def run_in_workers(todo: list[EpisodeSpec], config: RunConfig, out_dir: Path,
                   emit: Callable[[EpisodeRecord], None], workers: int,
                   episode_timeout: float | None, reference_root: str | Path | None,
                   env_factory: Callable | None = None) -> None:
    """Runs ``todo`` in ``workers`` processes; calls ``emit`` with each record, in this process.

    Args:
        todo: episodes to run; episode ``i`` gets video index ``i`` as in-process runs do.
        config: the run's :class:`~para_bench.runner.RunConfig`.
        out_dir: the run folder (workers write videos there; their stderr goes to
            ``workers.log``).
        emit: called in this process with every record, in completion order.
        workers: number of worker processes.
        episode_timeout: seconds before an episode's worker is killed, or None.
        reference_root: reference-trajectory cache folder, or None for the default.
        env_factory: environment factory for the workers (tests); must be importable by
            name (see :func:`importable_name`). None: the LIBERO environment.

    Raises:
        StartupError: a worker could not build its agent, or died before it was ready
            ``MAX_ATTEMPTS`` times in a row.
        ValueError: ``env_factory`` cannot be imported by a worker.
    """
    from para_bench.runner import error_record

    factory_name = importable_name(env_factory) if env_factory is not None else ""
    if factory_name is None:
        raise ValueError(f"env_factory {env_factory!r} cannot be imported by a worker process")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "workers.log"
    job = {"config": asdict(config) if hasattr(config, "__dataclass_fields__") else vars(config),
           "out_dir": str(out_dir), "reference_root": str(reference_root or ""),
           "env_factory": factory_name, "parent_pid": os.getpid()}
    attempts: dict[str, int] = {}
    failed_starts = 0
    items = list(enumerate(todo))
    sel = selectors.DefaultSelector()
    live: list[_Worker] = []

    def launch(shard: list[Item]) -> None:
        if shard:
            w = _Worker(shard, job, log)
            sel.register(w.proc.stdout, selectors.EVENT_READ, w)
            live.append(w)

    def retire(w: _Worker, reason: str) -> None:
        nonlocal failed_starts
        sel.unregister(w.proc.stdout)
        live.remove(w)
        w.kill()
        w.proc.wait()
        rest = w.pending
        if not w.ready and rest:
            failed_starts += 1
            if failed_starts >= MAX_ATTEMPTS:
                raise StartupError(f"a worker {reason} before it was ready, {failed_starts} "
                                   f"times in a row; see {log}")
        if w.in_flight is not None:
            spec = w.in_flight
            rest = [(i, s) for i, s in rest if s.episode_id != spec.episode_id]
            index = next(i for i, s in w.pending if s.episode_id == spec.episode_id)
            attempts[spec.episode_id] = attempts.get(spec.episode_id, 0) + 1
            if reason.startswith("timed out") or attempts[spec.episode_id] >= MAX_ATTEMPTS:
                emit(error_record(spec, config, f"worker {reason} (attempt "
                                                f"{attempts[spec.episode_id]})"))
            else:
                rest = [(index, spec), *rest]
        launch(rest)

    def handle(w: _Worker, msg: dict) -> None:
        nonlocal failed_starts
        if "fatal" in msg:
            raise StartupError(msg["fatal"])
        if "ready" in msg:
            w.ready, failed_starts = True, 0
        elif "start" in msg:
            w.in_flight = next(s for _, s in w.pending if s.episode_id == msg["start"])
            w.started_at = time.monotonic()
        elif "record" in msg:
            emit(EpisodeRecord.from_dict(msg["record"]))
            w.finish(msg["record"]["episode_id"])

    for shard in (items[i::workers] for i in range(workers)):
        launch(shard)
    try:
        while live:
            for key, _ in sel.select(timeout=1.0):
                w: _Worker = key.data
                chunk = w.proc.stdout.read()
                if chunk:
                    w.buffer += chunk
                    *lines, w.buffer = w.buffer.split(b"\n")
                    for line in lines:
                        if line.startswith(b"{"):
                            handle(w, json.loads(line))
                elif w.proc.poll() is not None or chunk == b"":
                    code = w.proc.wait()
                    retire(w, "exited" if not w.pending else f"died (exit code {code})")
            if episode_timeout:
                now = time.monotonic()
                for w in list(live):
                    if w.in_flight is not None and now - w.started_at > episode_timeout:
                        retire(w, f"timed out after {episode_timeout:g} s")
    finally:
        for w in live:
            w.kill()
            w.proc.wait()


def _die_with_parent(parent_pid: int | None) -> None:
    """Asks Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent_pid and os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def _worker_main() -> None:
    """Worker process: run the shard given on stdin, report on stdout."""
    from para_bench.runner import EpisodeExecutor, RunConfig

    job = json.loads(sys.stdin.read())
    _die_with_parent(job.get("parent_pid"))
    # the protocol owns the real stdout; anything libraries print goes to stderr (the log)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(msg: dict) -> None:
        out.write((json.dumps(msg) + "\n").encode())
        out.flush()

    try:
        factory = _load(job["env_factory"]) if job.get("env_factory") else None
        executor = EpisodeExecutor(RunConfig(**job["config"]), Path(job["out_dir"]),
                                   job["reference_root"] or None, factory)
    except Exception as e:  # noqa: BLE001 - report any startup failure, then stop
        traceback.print_exc()
        send({"fatal": str(e) if isinstance(e, StartupError)
              else f"a worker could not start: {describe(e)}"})
        sys.exit(1)
    send({"ready": True})
    with executor as ex:
        for item in job["specs"]:
            spec = EpisodeSpec.from_dict(item["spec"])
            send({"start": spec.episode_id})
            record = ex.run(spec, item["index"])
            send({"record": json.loads(record.to_json())})


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    _worker_main()
