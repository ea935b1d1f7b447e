"""para-bench: evaluation harness for pixel-aligned robot policies on LIBERO.

Importing this package is cheap: it registers the Gymnasium ids
``para_bench/<benchmark>-<task_id>-v0`` (no simulator import) and exposes the
small public types. Everything heavy (robosuite, MuJoCo, torch) loads lazily.
"""

from para_bench.envs.registration import register_envs
from para_bench.types import ActionChunk, EpisodeRecord, EpisodeSpec

__version__ = "0.1.0"
__all__ = ["ActionChunk", "EpisodeRecord", "EpisodeSpec", "__version__"]

register_envs()
