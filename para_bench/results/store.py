"""Append-only, resumable record store for one run folder.

A run folder holds ``manifest.json`` (how the run was made, including ``plan_hash`` and
``format``) and ``episodes.jsonl`` (one :class:`~para_bench.types.EpisodeRecord` per line).

Crash safety: every record is one ``os.write`` of a complete line on a file opened with
``O_APPEND``, followed by ``os.fsync``. A process killed mid-write can leave at most a torn
last line. Readers skip such a line silently; before the first append, a store calls
:meth:`RunStore.repair`, which cuts the torn tail off so the file stays valid JSON lines.
One writer per run folder is assumed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from para_bench.types import RECORD_FORMAT_VERSION, EpisodeRecord

MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"

__all__ = ["EPISODES", "MANIFEST", "ResultsFormatError", "RunStore", "find_runs"]


class ResultsFormatError(ValueError):
    """A run folder's files cannot be used as they are (wrong plan, format or corrupt)."""


def _format_age(found: object) -> str:
    if isinstance(found, int) and found > RECORD_FORMAT_VERSION:
        return "a newer"
    return "an older"


class RunStore:
    """The files of one run folder.

    The folder is created on the first write, not on construction.

    Args:
        path: the run folder.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST
        self.episodes_path = self.path / EPISODES
        self._repaired = False

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- manifest ---------------------------------------------------------------------------

    def write_manifest(self, manifest: dict) -> Path:
        """Writes ``manifest.json`` (pretty JSON, replaced atomically).

        Args:
            manifest: JSON-serialisable run description; should hold ``plan_hash`` and
                ``format``.

        Returns:
            The manifest path.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.manifest_path)
        return self.manifest_path

    def read_manifest(self) -> dict | None:
        """Returns the stored manifest, or None when there is none.

        Raises:
            ResultsFormatError: the manifest is not a JSON object.
        """
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise ResultsFormatError(f"{self.manifest_path} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ResultsFormatError(f"{self.manifest_path} does not hold a JSON object")
        return data

    def check_manifest(self, manifest: dict) -> None:
        """Checks that this folder may receive records of the run described by ``manifest``.

        Passes when the folder has no manifest yet.

        Args:
            manifest: the new run's manifest (its ``plan_hash`` is compared).

        Raises:
            ResultsFormatError: the stored manifest has another ``format`` than
                :data:`RECORD_FORMAT_VERSION` or another ``plan_hash``.
        """
        existing = self.read_manifest()
        if existing is None:
            return
        self.check_format()
        if existing.get("plan_hash") != manifest.get("plan_hash"):
            raise ResultsFormatError(
                f"{self.path} holds a different episode plan (plan_hash "
                f"{existing.get('plan_hash')} vs {manifest.get('plan_hash')}); "
                "use another --out to start a new run."
            )

    def check_format(self) -> None:
        """Raises :class:`ResultsFormatError` when the stored manifest has another record
        ``format`` than :data:`RECORD_FORMAT_VERSION` (passes without a manifest)."""
        existing = self.read_manifest()
        found = existing.get("format") if existing else RECORD_FORMAT_VERSION
        if found != RECORD_FORMAT_VERSION:
            raise ResultsFormatError(
                f"{self.path} was written by {_format_age(found)} para-bench record format "
                f"({found}, this version reads {RECORD_FORMAT_VERSION}); use another --out."
            )

    # -- records ----------------------------------------------------------------------------

    def repair(self) -> int:
        """Cuts a torn or unparseable last line off ``episodes.jsonl``.

        A complete last line that only lacks its newline gets the newline instead. Called
        automatically before the first :meth:`append` of this store.

        Returns:
            The number of bytes removed.
        """
        self._repaired = True
        try:
            data = self.episodes_path.read_bytes()
        except FileNotFoundError:
            return 0
        content = data.rstrip()
        cut = content.rfind(b"\n") + 1  # start of the last non-blank line
        if content and _parse(content[cut:]) is None:
            with open(self.episodes_path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            return len(data) - cut
        if content and not data.endswith(b"\n"):
            with open(self.episodes_path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        return 0

    def append(self, record: EpisodeRecord) -> None:
        """Appends one record as a JSON line: a single ``os.write`` then ``os.fsync``.

        Args:
            record: the finished episode.

        Raises:
            OSError: the write was short (e.g. disk full); the torn line is repaired on the
                next append.
        """
        if not self._repaired:
            self.path.mkdir(parents=True, exist_ok=True)
            self.repair()
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.episodes_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if written != len(line):
            self._repaired = False
            raise OSError(f"short write to {self.episodes_path}: {written} of {len(line)} bytes")

    def records(self) -> list[EpisodeRecord]:
        """Reads all records; of several records of one ``episode_id`` (an errored episode
        re-run with ``--retry-errors``) the last is kept, in the position of the first.

        A torn or unparseable last line (a kill mid-write) is skipped silently.

        Raises:
            ResultsFormatError: a line before the last is corrupt, or a record's ``format``
                differs from :data:`RECORD_FORMAT_VERSION`.
        """
        try:
            data = self.episodes_path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
        out: dict[str, EpisodeRecord] = {}
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            obj = _parse(raw)
            if obj is None:
                if i == last:
                    break
                raise ResultsFormatError(
                    f"{self.episodes_path}: line {i + 1} is not a JSON record (corrupt file)"
                )
            if obj.get("format") != RECORD_FORMAT_VERSION:
                raise ResultsFormatError(
                    f"{self.episodes_path}: line {i + 1} has record format {obj.get('format')}, "
                    f"this para-bench reads format {RECORD_FORMAT_VERSION}"
                )
            try:
                rec = EpisodeRecord.from_dict(obj)
            except TypeError as e:
                raise ResultsFormatError(
                    f"{self.episodes_path}: line {i + 1} is missing record fields ({e})"
                ) from e
            out[rec.episode_id] = rec
        return list(out.values())

    def finished_ids(self) -> set[str]:
        """Episode ids that already have a record (any status)."""
        return {r.episode_id for r in self.records()}


def _parse(raw: bytes) -> dict | None:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders under ``root``.

    Args:
        root: a run folder or a folder of runs.

    Returns:
        ``[root]`` when it holds ``episodes.jsonl``, else every folder below it (recursive,
        sorted) that does; empty when there are none.
    """
    root = Path(root)
    if (root / EPISODES).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob(EPISODES) if p.is_file())
