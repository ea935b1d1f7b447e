"""Episodes in spawned worker processes, one writer of records.

Each worker is a fresh ``python -m para_bench.executors.processes`` process started in its
own session (``start_new_session=True``): on Linux the kernel shares CPU per session
(autogroup), so workers started from one session would share one core. A worker gets a
shard of the plan on stdin, each episode with its index in the run's plan, and prints one
JSON line per event on stdout: ``{"ready": true}`` once its agent is built (or
``{"fatal": reason}`` if it cannot be), then per episode ``{"start": episode_id}`` (after
the episode's reference rollout: the timeout clock starts here) and ``{"record": {...}}``.
The parent appends records; faults follow :mod:`para_bench.executors.base`.

Workers die with the parent (``PR_SET_PDEATHSIG`` on Linux), so a killed run leaves no
simulators behind. Each worker renders with one llvmpipe thread (``LP_NUM_THREADS=1``
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
from pathlib import Path

from para_bench.errors import StartupError, describe
from para_bench.executors.base import Emit, Item, LostEpisodes, RetryPolicy, WorkerJob
from para_bench.types import EpisodeRecord, EpisodeSpec

PR_SET_PDEATHSIG = 1


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
                [sys.executable, "-m", "para_bench.executors.processes"], stdin=subprocess.PIPE,
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


class ProcessExecutor:
    """Runs episodes in ``workers`` spawned processes (see the module docstring).

    Args:
        job: what each worker builds (its ``env_factory`` must be importable by name).
        workers: number of worker processes.
        policy: retries and timeout.
    """

    def __init__(self, job: WorkerJob, workers: int, policy: RetryPolicy) -> None:
        self.job, self.workers, self.policy = job, max(1, workers), policy

    def run(self, items: list[Item], emit: Emit) -> None:
        """Runs ``items``; ``emit`` gets every record in this process, in completion order.

        Raises:
            StartupError: a worker could not build its agent, or died before it was ready
                ``max_attempts`` times in a row.
        """
        out_dir = Path(self.job.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "workers.log"
        job = dict(self.job.to_dict(), parent_pid=os.getpid())
        book = LostEpisodes(self.policy, self.job.config, emit)
        failed_starts = 0
        sel = selectors.DefaultSelector()
        live: list[_Worker] = []

        def launch(shard: list[Item]) -> None:
            if shard:
                w = _Worker(shard, job, log)
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                live.append(w)

        def retire(w: _Worker, reason: str, timed_out: bool = False) -> None:
            nonlocal failed_starts
            sel.unregister(w.proc.stdout)
            live.remove(w)
            w.kill()
            w.proc.wait()
            rest = w.pending
            if not w.ready and rest:
                failed_starts += 1
                if failed_starts >= self.policy.max_attempts:
                    raise StartupError(f"a worker {reason} before it was ready, "
                                       f"{failed_starts} times in a row; see {log}")
            if w.in_flight is not None:
                spec = w.in_flight
                index = next(i for i, s in w.pending if s.episode_id == spec.episode_id)
                rest = [(i, s) for i, s in rest if s.episode_id != spec.episode_id]
                if book.lost(spec, f"worker {reason}", timed_out):
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

        for shard in (items[i::self.workers] for i in range(self.workers)):
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
                timeout = self.policy.episode_timeout
                if timeout:
                    now = time.monotonic()
                    for w in list(live):
                        if w.in_flight is not None and now - w.started_at > timeout:
                            retire(w, f"timed out after {timeout:g} s", timed_out=True)
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
    payload = json.loads(sys.stdin.read())
    _die_with_parent(payload.get("parent_pid"))
    # the protocol owns the real stdout; anything libraries print goes to stderr (the log)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(msg: dict) -> None:
        out.write((json.dumps(msg) + "\n").encode())
        out.flush()

    try:
        worker = WorkerJob.from_dict(payload).build()
    except Exception as e:  # noqa: BLE001 - report any startup failure, then stop
        traceback.print_exc()
        send({"fatal": str(e) if isinstance(e, StartupError)
              else f"a worker could not start: {describe(e)}"})
        sys.exit(1)
    send({"ready": True})
    with worker:
        for item in payload["specs"]:
            spec = EpisodeSpec.from_dict(item["spec"])
            worker.prepare(spec)  # the reference rollout: before the timeout clock starts
            send({"start": spec.episode_id})
            record = worker.run(spec, item["index"])
            send({"record": json.loads(record.to_json())})


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    _worker_main()
