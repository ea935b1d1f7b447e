"""Episodes in spawned worker processes, one writer of records.

Each worker is a fresh ``python -m para_bench.parallel`` process started in its own
session (``start_new_session=True``): on Linux the kernel shares CPU per session
(autogroup), so workers started from one session would share one core. A worker gets a
shard of the plan on stdin and prints one JSON line per event on stdout:
``{"start": episode_id}`` then ``{"record": {...}}``. The parent appends records.

A worker that dies (segfault in MuJoCo, OOM, killed) costs only its in-flight episode:
that episode is retried in a fresh worker up to ``MAX_ATTEMPTS`` times, then recorded as
an error; an episode over ``episode_timeout`` seconds is killed and recorded as an error.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from para_bench.types import EpisodeRecord, EpisodeSpec

MAX_ATTEMPTS = 2


class _Worker:
    def __init__(self, shard: list[EpisodeSpec], job: dict, log: Path) -> None:
        self.pending = list(shard)
        self.in_flight: EpisodeSpec | None = None
        self.started_at = 0.0
        self.buffer = b""
        payload = dict(job, specs=[s.to_dict() for s in shard])
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "para_bench.parallel"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            )
        self.proc.stdin.write(json.dumps(payload).encode())
        self.proc.stdin.close()
        os.set_blocking(self.proc.stdout.fileno(), False)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_in_workers(todo: list[EpisodeSpec], config, out_dir: Path,
                   emit: Callable[[EpisodeRecord], None], workers: int,
                   episode_timeout: float | None, reference_root) -> None:
    """Runs ``todo`` in ``workers`` processes; calls ``emit`` with each record, in this process."""
    from para_bench.runner import error_record

    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "workers.log"
    job = {"config": asdict(config) if hasattr(config, "__dataclass_fields__") else vars(config),
           "out_dir": str(out_dir), "reference_root": str(reference_root or "")}
    attempts: dict[str, int] = {}
    queue = [todo[i::workers] for i in range(workers) if todo[i::workers]]
    sel = selectors.DefaultSelector()
    live: list[_Worker] = []

    def launch(shard: list[EpisodeSpec]) -> None:
        if shard:
            w = _Worker(shard, job, log)
            sel.register(w.proc.stdout, selectors.EVENT_READ, w)
            live.append(w)

    def retire(w: _Worker, reason: str) -> None:
        sel.unregister(w.proc.stdout)
        live.remove(w)
        w.kill()
        w.proc.wait()
        rest = w.pending
        if w.in_flight is not None:
            spec = w.in_flight
            rest = [s for s in rest if s.episode_id != spec.episode_id]
            attempts[spec.episode_id] = attempts.get(spec.episode_id, 0) + 1
            if reason.startswith("timed out") or attempts[spec.episode_id] >= MAX_ATTEMPTS:
                emit(error_record(spec, config, f"worker {reason} (attempt "
                                                f"{attempts[spec.episode_id]})"))
            else:
                rest = [spec, *rest]
        launch(rest)

    for shard in queue:
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
                        if not line.startswith(b"{"):
                            continue
                        msg = json.loads(line)
                        if "start" in msg:
                            w.in_flight = next(s for s in w.pending
                                               if s.episode_id == msg["start"])
                            w.started_at = time.monotonic()
                        elif "record" in msg:
                            emit(EpisodeRecord.from_dict(msg["record"]))
                            w.pending = [s for s in w.pending if s.episode_id != msg["record"]
                                         ["episode_id"]]
                            w.in_flight = None
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


def _worker_main() -> None:
    """Worker process: run the shard given on stdin, report on stdout."""
    from para_bench.runner import EpisodeExecutor, RunConfig

    job = json.loads(sys.stdin.read())
    # the protocol owns the real stdout; anything libraries print goes to stderr (the log)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    config = RunConfig(**job["config"])
    with EpisodeExecutor(config, Path(job["out_dir"]), job["reference_root"] or None) as ex:
        for i, d in enumerate(job["specs"]):
            spec = EpisodeSpec.from_dict(d)
            out.write((json.dumps({"start": spec.episode_id}) + "\n").encode())
            out.flush()
            record = ex.run(spec, i)
            out.write((json.dumps({"record": json.loads(record.to_json())}) + "\n").encode())
            out.flush()


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    _worker_main()
