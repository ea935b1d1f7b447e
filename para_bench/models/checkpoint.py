"""Policy checkpoints: one ``.pt`` file holding everything evaluation needs.

Contents (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    kind: "para-bench-policy"   format: CHECKPOINT_FORMAT
    model: "para" | "ar" | "voxel_abs" | "voxel_rel" | "act"
    config: the PolicyConfig as a dict      stats: the DatasetStats as a dict
    state_dict: the weights                 train: how it was trained (data, steps, metrics,
                                            render_quality of the training images)

The file holds no wall-clock values, so the same data and seed give a bit-identical file.
Format 1 checkpoints (before set-point targets and per-model backbone position codes) load
with the settings they were trained with (:data:`FORMAT_1_DEFAULTS`).

Problems surface as :class:`CheckpointError` (a ``ValueError``) with a one-line reason
naming the file: missing, unreadable or corrupt, not a para-bench policy, a newer format,
or a policy of another kind than the agent asked for.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from para_bench.models.base import PolicyModel
from para_bench.models.stats import DatasetStats

CHECKPOINT_KIND = "para-bench-policy"
CHECKPOINT_FORMAT = 2
#: config values format-1 checkpoints were trained with, where today's defaults differ
FORMAT_1_DEFAULTS = {"targets": "achieved", "coord_channels": True, "context_pos": "absolute",
                     "context_width": 128, "context_upsample": "bilinear", "augment_shift": 0,
                     "augment_color": 0.0}
#: per model, options added since: files without them were trained (and decode) without
ADDED_OPTIONS_OFF = {"para": {"eef_height": False},
                     "ar": {"history_dropout": 0.0},
                     "voxel_abs": {"offset_head": False},
                     "voxel_rel": {"offset_head": False}}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def save_checkpoint(path: str | Path, model: PolicyModel, train_info: dict[str, Any]) -> None:
    """Writes the checkpoint atomically (a kill mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": CHECKPOINT_KIND, "format": CHECKPOINT_FORMAT, "model": model.name,
        "config": model.config.to_dict(), "stats": model.stats.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train": train_info,
    }
    # serialised in memory: torch names the archive after the file it writes to, and the
    # temporary file's name would make the bytes differ from run to run
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads and checks a checkpoint's header; raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt ({reason[:160]})") \
            from None
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"checkpoint {path}: not a para-bench policy checkpoint")
    if payload.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {payload['format']} is newer than "
                              f"this para-bench reads ({CHECKPOINT_FORMAT}); upgrade para-bench")
    for key in ("model", "config", "stats", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path}: missing {key!r}")
    return payload


def load_policy(path: str | Path, expect: str | None = None,
                device: str | torch.device = "cpu") -> PolicyModel:
    """Builds the policy a checkpoint holds, in eval mode.

    Args:
        path: the ``.pt`` file.
        expect: the model name the caller needs (e.g. the agent's); a checkpoint of another
            model is refused.
        device: where to put the weights.
    """
    from para_bench.models.zoo import load_model_class

    payload = read_checkpoint(path)
    if expect is not None and payload["model"] != expect:
        raise CheckpointError(f"checkpoint {path} holds a {payload['model']} policy, not "
                              f"{expect}; use --agent {payload['model']}")
    cls = load_model_class(payload["model"])
    config = dict(payload["config"])
    fmt = payload.get("format", 1)
    if fmt < 2:
        config = {**FORMAT_1_DEFAULTS, **config}
    elif "context_width" not in config:  # early format-2 files: the context path as before
        config = {**config, "context_width": 128, "context_upsample": "bilinear"}
    config = {**ADDED_OPTIONS_OFF.get(payload["model"], {}), **config}
    try:
        model = cls(cls.config_class.from_dict(config),
                    DatasetStats.from_dict(payload["stats"]))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    model.decode_as_format(fmt)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:  # torch: a header line, then one line per mismatch
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = (lines[1] if len(lines) > 1 else lines[0] if lines else "")[:200]
        raise CheckpointError(f"checkpoint {path}: weights do not fit the {payload['model']} "
                              f"model ({why})") from None
    model.train_info = dict(payload.get("train") or {})
    return model.to(device).eval()

