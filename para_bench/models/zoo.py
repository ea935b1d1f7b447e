"""Names of the learned policies -> their classes (imported lazily: importing this module
does not import torch, so the CLI can list the names cheaply)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from para_bench.models.base import PolicyModel

#: policy name -> ``"module:Class"``; each class carries ``name`` and ``config_class``.
MODELS: dict[str, str] = {
    "para": "para_bench.agents.para.modeling:ParaPolicy",
    "ar": "para_bench.agents.ar.modeling:ARPolicy",
    "voxel_abs": "para_bench.agents.voxel.modeling:VoxelAbsPolicy",
    "voxel_rel": "para_bench.agents.voxel.modeling:VoxelRelPolicy",
    "act": "para_bench.agents.act.modeling:ACTPolicy",
}


def load_model_class(name: str) -> type[PolicyModel]:
    """The :class:`PolicyModel` subclass registered as ``name`` (KeyError if unknown)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)
