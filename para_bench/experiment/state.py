"""What is done: stage markers in ``<out>/stages/``, written last and atomically.

A stage is **done** when ``stages/<stem>.done.json`` exists with the stage's key and its
output is present with the recorded sha256 (file bytes; for a run folder, its
``episodes.jsonl``). The marker is the last thing a stage writes (temp file + rename), so a
kill at any moment leaves either a finished stage or one that runs again. A marker whose
output is gone (or altered) marks the stage **lost**: it is rebuilt when something still
needs its output, and the new marker keeps the history (``rebuilt``), including whether
the rebuilt output's content equals the lost one's (:func:`content_digest`).

``stages/<stem>.running.json`` names the process running a stage (for ``status``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from para_bench.experiment.stages import Stage

__all__ = ["ExperimentLock", "StageBook", "content_digest", "read_json", "sha256_of",
           "write_json_atomic"]


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes JSON through a temp file and ``os.replace`` (fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _output_file(stage: Stage, root: Path) -> Path:
    out = root / stage.output
    return out / "episodes.jsonl" if stage.kind == "evaluate" else out


def content_digest(stage: Stage, root: Path) -> str | None:
    """A digest of what the output *means*, blind to incidental bytes.

    - demos: every dataset's bytes and every attribute (but the collector's version),
      in name order;
    - checkpoint: the model, config, stats and weights (not the training summary, which
      holds wall-clock minutes);
    - run folder: per episode (sorted by id) the status, success, steps and executed
      trajectory (not wall time or latency).

    Returns:
        16 hex digits, or None when the output cannot be read.
    """
    path = root / stage.output
    h = hashlib.sha256()
    try:
        if stage.kind in ("collect", "subset"):
            import h5py
            import numpy as np

            def visit(name: str, obj: Any) -> None:
                h.update(name.encode())
                for k in sorted(obj.attrs):
                    if k != "para_bench_version":
                        h.update(f"{k}={obj.attrs[k]!r}".encode())
                if isinstance(obj, h5py.Dataset):
                    h.update(np.ascontiguousarray(obj[()]).tobytes())

            with h5py.File(path, "r") as f:
                visit("/", f)
                f.visititems(visit)
        elif stage.kind == "train":
            import torch

            payload = torch.load(path, map_location="cpu", weights_only=True)
            for key in ("model", "config", "stats"):
                h.update(json.dumps(payload[key], sort_keys=True, default=str).encode())
            for k in sorted(payload["state_dict"]):
                h.update(k.encode())
                h.update(payload["state_dict"][k].contiguous().numpy().tobytes())
        else:
            rows = []
            for line in (path / "episodes.jsonl").read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows.append([r["episode_id"], r["status"], r["success"], r["steps"],
                             r.get("eef_trajectory")])
            rows.sort(key=lambda r: r[0])
            h.update(json.dumps(rows).encode())
    except Exception:  # noqa: BLE001 - an unreadable output has no digest
        return None
    return h.hexdigest()[:16]


class StageBook:
    """Reads and writes the markers of one experiment folder.

    Args:
        root: the experiment folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "stages"

    def done_path(self, stage: Stage) -> Path:
        return self.dir / f"{stage.stem}.done.json"

    def running_path(self, stage: Stage) -> Path:
        return self.dir / f"{stage.stem}.running.json"

    def marker(self, stage: Stage) -> dict | None:
        """The done marker of this stage (matching key), or None."""
        try:
            m = json.loads(self.done_path(stage).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return m if m.get("key") == stage.key else None

    def output_intact(self, stage: Stage, marker: dict) -> bool:
        """Whether the output recorded in ``marker`` is present, unchanged."""
        path = _output_file(stage, self.root)
        try:
            st = path.stat()
        except OSError:
            return False
        if st.st_size == marker.get("size") and st.st_mtime_ns == marker.get("mtime_ns"):
            return True
        return st.st_size == marker.get("size") and sha256_of(path) == marker.get("sha256")

    def state(self, stage: Stage) -> str:
        """``done``, ``lost`` (marker, output gone or altered) or ``todo``."""
        m = self.marker(stage)
        if m is None:
            return "todo"
        return "done" if self.output_intact(stage, m) else "lost"

    def write_done(self, stage: Stage, info: dict[str, Any]) -> dict:
        """Writes the done marker (last, atomically); returns it.

        Args:
            stage: the finished stage (its output in place).
            info: started / finished / duration_s / attempts / command / log, ...
        """
        path = _output_file(stage, self.root)
        st = path.stat()
        previous = self._previous(stage)
        digest = content_digest(stage, self.root)
        marker = {
            "key": stage.key, "name": stage.name, "kind": stage.kind, "output": stage.output,
            "sha256": sha256_of(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "content_digest": digest, "material": stage.material, "meta": stage.meta, **info,
            "rebuilt": list(previous.get("rebuilt", [])) if previous else [],
        }
        if previous:  # this run rebuilt a lost output
            marker["rebuilt"].append({
                "at": info.get("finished"), "previous_sha256": previous.get("sha256"),
                "previous_content_digest": previous.get("content_digest"),
                "identical_bytes": previous.get("sha256") == marker["sha256"],
                "identical_content": previous.get("content_digest") == digest,
                "previous_duration_s": previous.get("duration_s"),
            })
        write_json_atomic(self.done_path(stage), marker)
        return marker

    def _previous(self, stage: Stage) -> dict | None:
        return self.marker(stage)

    def set_running(self, stage: Stage, info: dict[str, Any]) -> None:
        write_json_atomic(self.running_path(stage), {"key": stage.key, **info})

    def clear_running(self, stage: Stage) -> None:
        self.running_path(stage).unlink(missing_ok=True)

    def running(self, stage: Stage) -> dict | None:
        """The running marker if its process (``pid``) is alive, else None."""
        try:
            info = json.loads(self.running_path(stage).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if info.get("key") != stage.key or not _alive(info.get("pid")):
            return None
        return info

    def train_summary(self, stage: Stage) -> dict | None:
        """A train stage's summary (``.train.json``): the copy kept in ``stages/`` (it
        outlives the checkpoint), else the one next to the checkpoint; None before."""
        return read_json(self.dir / f"{stage.stem}.train.json") or \
            read_json(self.root / (stage.output[:-len(".pt")] + ".train.json"))

    def twin(self, stage: Stage) -> Stage | None:
        """``stage`` as this folder finished it: the stage itself, or a stage of the same
        kind and key (the same inputs, so the same output) under another name -- e.g. an
        ablation variant whose options make it another experiment's agent. None unless
        done here."""
        if self.state(stage) == "done":
            return stage
        for path in sorted(self.dir.glob(f"*.{stage.key}.done.json")):
            m = read_json(path)
            if not m or m.get("key") != stage.key or m.get("kind") != stage.kind:
                continue
            # only its name and output are known here (its work path was another folder's)
            other = dataclasses.replace(stage, name=m["name"], output=m["output"], work="")
            if self.state(other) == "done":
                return other
        return None

    def adopt(self, stage: Stage, source: Path) -> bool:
        """Copies ``stage``'s finished output from another experiment folder (the same
        stage, or its :meth:`twin` there: same key, so the same inputs) and marks it done
        here, with ``reused_from``. Returns False (and does nothing) unless the stage is to
        do here and done there."""
        import shutil

        other = StageBook(source)
        there = other.twin(stage) if self.state(stage) == "todo" else None
        if there is None:
            return False
        m = other.marker(there)
        src, dst = other.root / there.output, self.root / stage.output
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
        # moved next to the output when it finished; named after this stage here
        for mine, theirs in zip(stage.output_side_files(), there.output_side_files(),
                                strict=True):
            if (other.root / theirs).exists():
                shutil.copy2(other.root / theirs, self.root / mine)
        summary = other.dir / f"{there.stem}.train.json"
        if summary.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(summary, self.dir / f"{stage.stem}.train.json")
        st = _output_file(stage, self.root).stat()
        write_json_atomic(self.done_path(stage), {
            **m, "name": stage.name, "output": stage.output, "meta": stage.meta,
            "mtime_ns": st.st_mtime_ns, "reused_from": str(Path(source).resolve())})
        return True

    def all_markers(self) -> list[dict]:
        """Every done marker in the folder (also of stages no longer in the file)."""
        out = []
        for p in sorted(self.dir.glob("*.done.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class ExperimentLock:
    """An exclusive ``flock`` on ``<out>/.lock``: one ``experiment run`` per folder.

    Raises:
        ValueError: another process holds it (the message names its pid).
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> ExperimentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"{self.path.parent} is in use by another experiment run "
                             f"(pid {other}); wait for it or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
