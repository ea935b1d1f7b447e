"""Running one stage's command: a local child process, or a task on a Ray cluster.

Both give the scheduler the same handle: :meth:`poll` (exit code or None), :meth:`kill`
and :meth:`collect` (called once after a zero exit; Ray tasks write the files they bring
back there).

**Local.** ``para-bench ...`` runs as ``python -m para_bench.cli ...`` in the experiment
folder, in its own session (Linux shares CPU per session: children of one session would
share a core), killed by the kernel when the experiment process dies
(``PR_SET_PDEATHSIG``), stdout and stderr appended to the stage's log. Each child gets one
torch / OpenMP thread and one llvmpipe render thread.

**Ray.** The same command runs in a scratch folder on whichever node Ray picks
(``num_cpus`` = the stage's slots, ``num_gpus`` for trainings with ``--train-gpus``): the
stage's input files (demos, checkpoint, a partial run folder to resume) travel with the
task, and its outputs and log come back as bytes, so the cluster needs no shared
filesystem. para-bench must be installed on every node.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from para_bench.experiment.stages import Stage

__all__ = ["LocalLaunch", "RayLaunch", "child_environment", "resolve_argv"]

PR_SET_PDEATHSIG = 1


def resolve_argv(argv: list[str]) -> list[str]:
    """``para-bench ...`` / ``python ...`` -> this interpreter's command line."""
    if argv[0] == "para-bench":
        return [sys.executable, "-m", "para_bench.cli", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return list(argv)


def child_environment() -> dict[str, str]:
    """Our environment, with one compute and one render thread per child, and progress
    bars that update every 2 s (they go to the stage's log)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LP_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("TQDM_MININTERVAL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


class LocalLaunch:
    """A stage's command as a child process of this one.

    Args:
        stage: the stage.
        argv: its command (see :func:`resolve_argv`), possibly with extra flags.
        root: the experiment folder (working directory).
    """

    def __init__(self, stage: Stage, argv: list[str], root: Path) -> None:
        self.stage = stage
        log = root / stage.log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            f.write(f"\n$ {' '.join(argv)}\n".encode())
            f.flush()
            self.proc = subprocess.Popen(
                resolve_argv(argv), cwd=root, stdin=subprocess.DEVNULL, stdout=f,
                stderr=subprocess.STDOUT, env=child_environment(), start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.pid = self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def collect(self) -> None:
        """Local outputs are already in place."""


# -- Ray --------------------------------------------------------------------------------------


def _read_tree(root: Path, rel: str) -> dict[str, bytes]:
    """``rel`` (a file or a folder, relative to ``root``) as {relative path: bytes}."""
    path = root / rel
    if path.is_file():
        return {rel: path.read_bytes()}
    if not path.is_dir():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def run_stage_remotely(argv: list[str], inputs: dict[str, bytes],
                       outputs: list[str]) -> dict[str, Any]:
    """Body of the Ray task: the command in a scratch folder, outputs and log as bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="para-bench-stage-") as tmp:
        root = Path(tmp)
        _write_tree(root, inputs)
        proc = subprocess.run(resolve_argv(argv), cwd=root, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=child_environment(), check=False)
        files: dict[str, bytes] = {}
        for rel in outputs:
            files.update(_read_tree(root, rel))
        return {"returncode": proc.returncode, "log": proc.stdout, "files": files}


class RayLaunch:
    """A stage's command as a Ray task (see the module docstring).

    Args:
        stage: the stage.
        argv: its command.
        root: the experiment folder (inputs are read from it, outputs written to it).
        inputs: paths (relative to ``root``) the command reads.
        num_cpus: CPUs to reserve.
        num_gpus: GPUs to reserve (trainings with ``--train-gpus``).
    """

    _remote: Any = None

    def __init__(self, stage: Stage, argv: list[str], root: Path, inputs: list[str],
                 num_cpus: int, num_gpus: float = 0) -> None:
        import ray

        if RayLaunch._remote is None:
            RayLaunch._remote = ray.remote(run_stage_remotely)
        self.stage, self.root, self.pid = stage, root, None
        files: dict[str, bytes] = {}
        for rel in inputs:
            files.update(_read_tree(root, rel))
        outputs = [stage.work, *stage.side_files()]
        self.ref = RayLaunch._remote.options(num_cpus=num_cpus, num_gpus=num_gpus,
                                             max_retries=0).remote(argv, files, outputs)
        self._result: dict | None = None
        log = root / stage.log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            f.write(f"\n$ {' '.join(argv)}   (on Ray)\n".encode())

    def poll(self) -> int | None:
        import ray

        if self._result is None:
            ready, _ = ray.wait([self.ref], timeout=0)
            if not ready:
                return None
            try:
                self._result = ray.get(self.ref)
            except Exception as e:  # noqa: BLE001 - a lost task is a failed stage
                self._result = {"returncode": 1, "files": {},
                                "log": f"ray task failed: {type(e).__name__}: {e}\n".encode()}
            with open(self.root / self.stage.log, "ab") as f:
                f.write(self._result["log"])
        return int(self._result["returncode"])

    def kill(self) -> None:
        import ray

        try:
            ray.cancel(self.ref, force=True)
        except Exception:  # noqa: BLE001 - already finished or gone
            pass

    def collect(self) -> None:
        """Writes the returned output files into the experiment folder."""
        if self._result is not None:
            _write_tree(self.root, self._result["files"])
