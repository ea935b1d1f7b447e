"""``SuiteSpec``: a named, versioned set of perturbations with train / test splits.

A suite expands, before anything runs, into a fixed list of
:class:`~para_bench.types.EpisodeSpec` — (suite version, task, init state, perturbation,
seed) — independent of the agent, so every agent sees the same scenes.

Expansion rule for ``episodes`` episodes of one task and split with perturbations
``P[0..m-1]``: episode ``i`` gets perturbation ``P[i % m]`` and seed ``seed * 100003 + i``;
its base scene is

* for evaluation splits (``test``, ...): official init state ``init_states[i % n]`` -- the
  50 init states LIBERO ships, the comparable protocol;
* for sampled splits (``train`` and ``val`` by default, :attr:`SuiteSpec.sampled_splits`):
  a fresh object placement from LIBERO's own placement sampler (the BDDL regions, the way
  LIBERO generated its init files) with placement seed
  :func:`placement_seed` ``(split, seed, i)``. ``train`` and ``val`` draw from disjoint
  seed streams, so ``val`` holds unseen scenes of the training distribution, and no
  sampled scene is an official init state: train scenes never equal test scenes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from para_bench.envs.tasks import parse_task
from para_bench.registry import SUITES, RegistryError
from para_bench.types import EpisodeSpec

N_INIT_STATES = 50  # every LIBERO task ships 50 official init states
SAMPLED_SPLITS = ("train", "val")


def placement_seed(split: str, seed: int, index: int) -> int:
    """Seed of LIBERO's placement sampler for episode ``index`` of a sampled split.

    A hash of (split, seed, index): ``train`` and ``val`` (and every ``--seed``) draw from
    their own streams, reproducibly.
    """
    digest = hashlib.sha1(f"placement:{split}:{seed}:{index}".encode()).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


@dataclass
class SuiteSpec:
    """A perturbation suite.

    Attributes:
        name: registry name.
        version: bumped whenever the perturbations change (part of every episode id).
        description: one line for ``para-bench list suites``.
        tasks: default tasks, ``benchmark/task_id``.
        splits: split name -> list of perturbations, each ``{"camera": ..., "objects": ...,
            "extra": ...}`` (``extra`` annotates records, e.g. distance to training positions).
        default_episodes: episodes per task when ``--episodes`` is not given (per split).
        init_states: init-state indices cycled through by evaluation splits.
        params: the parameters the splits were generated from (for display).
        sampled_splits: splits whose scenes come from LIBERO's placement sampler instead of
            the official init states (training scenes and their held-out ``val`` twins).
    """

    name: str
    version: int
    description: str
    splits: dict[str, list[dict]]
    tasks: list[str] = field(default_factory=lambda: ["libero_spatial/0"])
    default_episodes: dict[str, int] = field(default_factory=dict)
    init_states: list[int] = field(default_factory=lambda: list(range(N_INIT_STATES)))
    params: dict = field(default_factory=dict)
    sampled_splits: list[str] = field(default_factory=lambda: list(SAMPLED_SPLITS))

    def is_sampled(self, split: str) -> bool:
        """Whether ``split`` draws its scenes from the placement sampler."""
        return split in self.sampled_splits

    def plan(self, split: str = "test", tasks: list[str] | None = None,
             episodes: int | None = None, seed: int = 0) -> list[EpisodeSpec]:
        """Expands one split into the episode plan; raises ``ValueError`` on bad input."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for suite {self.name}; "
                             f"choose one of: {', '.join(self.splits)}")
        perts = self.splits[split]
        n = episodes if episodes is not None else self.default_episodes.get(split, len(perts))
        if n < 1:
            raise ValueError(f"--episodes must be >= 1, got {n}")
        plan = []
        for task in tasks or self.tasks:
            bench, tid = parse_task(task)
            for i in range(n):
                p = perts[i % len(perts)]
                sampled = self.is_sampled(split)
                plan.append(EpisodeSpec(
                    suite=self.name, suite_version=self.version, split=split,
                    benchmark=bench, task_id=tid,
                    init_state=None if sampled else self.init_states[i % len(self.init_states)],
                    placement_seed=placement_seed(split, seed, i) if sampled else None,
                    camera=p.get("camera"), objects=p.get("objects"),
                    seed=seed * 100003 + i, extra=dict(p.get("extra", {})),
                ))
        return plan

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SuiteSpec:
        return cls(**json.loads(text))

    def summary(self) -> str:
        """One line per split: number of perturbations and the generating parameters."""
        lines = [f"{self.name} v{self.version}: {self.description}",
                 f"  tasks: {', '.join(self.tasks)}"]
        for split, perts in self.splits.items():
            scenes = ("sampled placements" if self.is_sampled(split)
                      else "official init states")
            lines.append(f"  {split}: {len(perts)} perturbation(s) on {scenes}; "
                         f"{self.default_episodes.get(split, len(perts))} episodes/task by default")
        for k, v in self.params.items():
            lines.append(f"  {k}: {v}")
        return "\n".join(lines)


def plan_hash(plan: list[EpisodeSpec]) -> str:
    """Hash of a plan's episode ids (in order): pins a run folder to its plan."""
    return hashlib.sha1("\n".join(s.episode_id for s in plan).encode()).hexdigest()[:16]


def get_suite(name: str) -> SuiteSpec:
    """A suite by registry name, ``module:factory``, or a path to a suite JSON file."""
    if name.endswith(".json"):
        try:
            with open(name) as f:
                return SuiteSpec.from_json(f.read())
        except (OSError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read suite file {name}: {e}") from e
    try:
        factory = SUITES.get(name).load()
    except RegistryError as e:
        raise ValueError(str(e)) from None
    return factory()


def list_suites() -> list[SuiteSpec]:
    return [get_suite(n) for n in SUITES.names()]
