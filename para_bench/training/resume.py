"""Resuming an interrupted training where its last validation left it.

At every validation the training loop writes ``<out>.resume.pt`` next to the checkpoint:
the model, optimiser and learning-rate schedule, every random state it draws from (the
batch sampler's numpy generator, the augmentation's torch generator, torch's global RNG),
the loss curve and the time spent. A later run of the same training (the same model, data
bytes, config, steps, batch size, learning rate, seed and device: its
:func:`fingerprint`) continues from there, and ends with the checkpoint an uninterrupted run
would have written, byte for byte. The file is removed when the training completes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["fingerprint", "load_resume_state", "resume_path", "save_resume_state"]

RESUME_FORMAT = 1


def resume_path(out: str | Path) -> Path:
    """Where the resume state of the checkpoint ``out`` lives."""
    out = Path(out)
    return out.with_name(out.stem + ".resume.pt")


def fingerprint(model: str, data: str | Path, config: dict[str, Any], steps: int,
                batch_size: int, lr: float, seed: int, device: str) -> dict[str, Any]:
    """Everything a training's trajectory depends on (the data by its bytes)."""
    h = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"format": RESUME_FORMAT, "model": model, "data_sha256": h.hexdigest(),
            "config": config, "steps": steps, "batch_size": batch_size, "lr": lr,
            "seed": seed, "device": device}


def save_resume_state(path: Path, state: dict[str, Any]) -> None:
    """Writes the state atomically (a kill mid-write keeps the previous one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_resume_state(path: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state if it belongs to this very training, else None."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - unreadable: train from the start
        return None
    return state if state.get("fingerprint") == expected else None
