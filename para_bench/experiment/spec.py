"""Experiment files: TOML in, a validated :class:`ExperimentSpec` out.

An experiment file names what to train, on which settings, and how to evaluate it::

    name = "para_matrix"
    tasks = ["libero_spatial/0"]
    agents = ["para", "ar", "voxel_abs", "voxel_rel", "act"]   # trained once per cell
    baselines = ["oracle", "noop"]                              # evaluated, never trained
    settings = ["in_dist", "viewpoint_ood", "pos_ood"]          # suites: train on "train",
    demos = [50]                                                #   evaluate on "test"
    train_seeds = [0]
    episodes = 40                                               # test episodes per cell, task

    [collect]        # seed (0), image_size (128), max_steps (600), rim_side_margin (0.03)
    [train]          # steps, batch_size, lr, device, max_minutes, + any model config field
    [train.para]     #   per-agent overrides
    [variants]       # ablations: a named variant of a trainable agent, listed in ``agents``
                     #   and configured by its own [train.<variant>] table, e.g.
                     #   para_abs_pos = "para"  +  [train.para_abs_pos] context_pos = "absolute"
    [eval]           # seed, control, zero_rotation, max_steps, action_scale, image_size,
                     #   coverage, episode_timeout, heldout_split ("val"), heldout_episodes (20)
    [eval.in_dist]   #   per-setting overrides, and ``episodes``

Everything is checked before anything runs: an unknown key, agent, baseline, suite or
model config field, a setting whose suite lacks a ``train`` or ``test`` split, a count
below 1 or a value of the wrong type raises :class:`ExperimentError` (a ``ValueError``)
with one line naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from para_bench.agents.oracle import RIM_SIDE_MARGIN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ExperimentError", "ExperimentSpec", "load_experiment", "parse_experiment"]

TOP_KEYS = ("name", "description", "tasks", "agents", "baselines", "settings", "demos",
            "train_seeds", "episodes", "collect", "train", "eval", "variants")
COLLECT_DEFAULTS: dict[str, Any] = {"seed": 0, "image_size": 128, "max_steps": 600,
                                    "rim_side_margin": RIM_SIDE_MARGIN}
#: trainer options of ``para-bench train`` (every other [train] key is a model config field)
TRAINER_DEFAULTS: dict[str, Any] = {"steps": None, "batch_size": 32, "lr": 1e-3,
                                    "device": "cpu", "max_minutes": None}
EVAL_DEFAULTS: dict[str, Any] = {
    "seed": 0, "control": "servo", "zero_rotation": False, "max_steps": 600,
    "action_scale": 1.0, "image_size": 128, "coverage": True, "episode_timeout": None,
    "heldout_split": "val", "heldout_episodes": 20,
}
CONTROL_MODES = ("delta", "servo", "teleport")
_TYPES: dict[str, tuple[type, ...]] = {
    "seed": (int,), "image_size": (int,), "max_steps": (int,), "steps": (int,),
    "batch_size": (int,), "lr": (float, int), "device": (str,), "max_minutes": (float, int),
    "control": (str,), "zero_rotation": (bool,), "action_scale": (float, int),
    "coverage": (bool,), "episode_timeout": (float, int), "heldout_split": (str,),
    "heldout_episodes": (int,), "episodes": (int,), "rim_side_margin": (float, int),
}
_POSITIVE = {"image_size", "max_steps", "steps", "batch_size", "lr", "max_minutes",
             "action_scale", "episode_timeout", "heldout_episodes", "episodes"}


class ExperimentError(ValueError):
    """A malformed experiment file; the message is one line naming the problem."""


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment.

    Attributes:
        name: the experiment's name (default output folder ``results/experiments/<name>``).
        path: the file it was read from.
        text_sha256: sha256 of that file's bytes (provenance).
        tasks: ``benchmark/task_id`` items, the same for every setting.
        agents: learned policies (``para-bench train`` names, or names of ``variants``),
            trained per cell.
        baselines: registered agents evaluated without training (``oracle``, ``noop``, ...).
        settings: suite names; each is trained on its ``train`` split, tested on ``test``.
        demos: collected demos (episodes attempted) per setting; several = a sweep.
        train_seeds: training seeds; several = seed variance, aggregated in the report.
        collect: ``seed``, ``image_size``, ``max_steps``, ``rim_side_margin`` of
            ``para-bench collect`` (the margin also of the ``oracle`` baseline's runs).
        train: agent -> merged training options: the trainer's (``steps``, ``batch_size``,
            ``lr``, ``device``, ``max_minutes``) and ``set``, the model config overrides.
        eval: setting -> merged evaluation options (:data:`EVAL_DEFAULTS` + ``episodes``).
        description: free text.
        variants: variant name -> the trainable agent it configures (ablations).
    """

    name: str
    path: str
    text_sha256: str
    tasks: tuple[str, ...]
    agents: tuple[str, ...]
    baselines: tuple[str, ...]
    settings: tuple[str, ...]
    demos: tuple[int, ...]
    train_seeds: tuple[int, ...]
    collect: dict[str, Any]
    train: dict[str, dict[str, Any]]
    eval: dict[str, dict[str, Any]]
    description: str = ""
    notes: tuple[str, ...] = field(default=())
    variants: dict[str, str] = field(default_factory=dict)

    def model_of(self, agent: str) -> str:
        """The trainable agent (``para-bench train --agent`` name) behind an agent or variant."""
        return self.variants.get(agent, agent)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (provenance, ``experiment.json``)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Reads and validates an experiment file; raises :class:`ExperimentError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ExperimentError(f"experiment file {path}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ExperimentError(f"{path}: not valid TOML ({str(e).splitlines()[0]})") from None
    return parse_experiment(data, path=str(path), text_sha256=hashlib.sha256(raw).hexdigest())


def parse_experiment(data: dict[str, Any], path: str = "<dict>",
                     text_sha256: str | None = None) -> ExperimentSpec:
    """Validates a parsed experiment file (see the module docstring for the keys)."""
    where = Path(path).name
    _known(data, TOP_KEYS, where)
    name = _typed(data.get("name", Path(path).stem), (str,), f"{where}: name")
    if not name or "/" in name:
        raise ExperimentError(f"{where}: name must be a non-empty string without '/'")
    tasks = _str_list(data, "tasks", where, default=["libero_spatial/0"])
    for t in tasks:
        _check_task(t, where)
    agents = _str_list(data, "agents", where, default=[], allow_empty=True)
    baselines = _str_list(data, "baselines", where, default=[], allow_empty=True)
    if not agents and not baselines:
        raise ExperimentError(f"{where}: nothing to evaluate: agents and baselines are empty")
    settings = _str_list(data, "settings", where)
    demos = _int_list(data, "demos", where, minimum=1, default=[50])
    seeds = _int_list(data, "train_seeds", where, minimum=0, default=[0])
    episodes = _count(data.get("episodes", 40), f"{where}: episodes")
    variants = _variants(data.get("variants", {}), agents, where)
    _check_agents([variants.get(a, a) for a in agents], baselines, where)
    _check_settings(settings, where)
    notes: list[str] = []

    collect = _section(data, "collect", COLLECT_DEFAULTS, where)
    train = _train_section(data.get("train", {}), agents, variants, where)
    evals = _eval_section(data.get("eval", {}), settings, episodes, where)
    for setting in settings:
        split = evals[setting]["heldout_split"]
        if agents and not _has_split(setting, split):
            notes.append(f"{setting} has no {split!r} split yet: held-out scenes of its "
                         "training distribution are not evaluated")
    text_sha = text_sha256 or hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return ExperimentSpec(
        name=name, path=path, text_sha256=text_sha, tasks=tuple(tasks), agents=tuple(agents),
        baselines=tuple(baselines), settings=tuple(settings), demos=tuple(demos),
        train_seeds=tuple(seeds), collect=collect, train=train, eval=evals,
        description=str(data.get("description", "")), notes=tuple(notes), variants=variants,
    )


# -- pieces ------------------------------------------------------------------------------------


def _known(table: dict, keys: tuple[str, ...] | set[str], where: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ExperimentError(f"{where}: unknown key {unknown[0]!r}; known keys: "
                              f"{', '.join(sorted(keys))}")


def _typed(value: Any, types: tuple[type, ...], what: str) -> Any:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise ExperimentError(f"{what} must be {names}, got {value!r}")
    return value


def _count(value: Any, what: str) -> int:
    value = _typed(value, (int,), what)
    if value < 1:
        raise ExperimentError(f"{what} must be >= 1, got {value}")
    return value


def _str_list(data: dict, key: str, where: str, default: list[str] | None = None,
              allow_empty: bool = False) -> list[str]:
    if key not in data and default is None:
        raise ExperimentError(f"{where}: missing {key!r}")
    value = data.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExperimentError(f"{where}: {key} must be a list of strings, got {value!r}")
    if not value and not allow_empty:
        raise ExperimentError(f"{where}: {key} is empty")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise ExperimentError(f"{where}: {key} lists {dup[0]!r} twice")
    return list(value)


def _int_list(data: dict, key: str, where: str, minimum: int, default: list[int]) -> list[int]:
    value = data.get(key, default)
    if not isinstance(value, list) or not value:
        raise ExperimentError(f"{where}: {key} must be a non-empty list of integers, "
                              f"got {value!r}")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool):
            raise ExperimentError(f"{where}: {key} must hold integers, got {v!r}")
        if v < minimum:
            raise ExperimentError(f"{where}: {key} must be >= {minimum}, got {v}")
    if len(set(value)) != len(value):
        raise ExperimentError(f"{where}: {key} lists a value twice: {value}")
    return sorted(value)


def _check_task(task: str, where: str) -> None:
    from para_bench.envs.tasks import parse_task

    try:
        parse_task(task)
    except ValueError as e:
        raise ExperimentError(f"{where}: tasks: {e}") from None


def _variants(table: Any, agents: list[str], where: str) -> dict[str, str]:
    from para_bench.models.zoo import MODELS

    if not isinstance(table, dict):
        raise ExperimentError(f"{where}: [variants] must be a table of name = \"agent\"")
    for name, base in table.items():
        if not isinstance(base, str) or base not in MODELS:
            raise ExperimentError(f"{where}: [variants] {name}: {base!r} is not a trainable "
                                  f"agent ({', '.join(MODELS)})")
        if name in MODELS:
            raise ExperimentError(f"{where}: [variants] {name!r} is an agent's own name; "
                                  "give the variant another")
        if name not in agents:
            raise ExperimentError(f"{where}: [variants] {name!r} is not listed in agents")
    return dict(table)


def _check_agents(agents: list[str], baselines: list[str], where: str) -> None:
    from para_bench.models.zoo import MODELS
    from para_bench.registry import AGENTS, RegistryError

    for a in agents:
        if a not in MODELS:
            raise ExperimentError(f"{where}: unknown agent {a!r} in agents; trainable agents: "
                                  f"{', '.join(MODELS)}")
    for b in baselines:
        if b in MODELS:
            raise ExperimentError(f"{where}: baseline {b!r} needs a checkpoint; list it under "
                                  "agents to train it")
        try:
            AGENTS.get(b)
        except RegistryError as e:
            raise ExperimentError(f"{where}: baselines: {e}") from None
    both = sorted(set(agents) & set(baselines))
    if both:
        raise ExperimentError(f"{where}: {both[0]!r} is both an agent and a baseline")


def _suite(name: str, where: str):
    from para_bench.suites import get_suite

    try:
        return get_suite(name)
    except ValueError as e:
        raise ExperimentError(f"{where}: settings: {str(e).splitlines()[0]}") from None


def _has_split(setting: str, split: str) -> bool:
    from para_bench.suites import get_suite

    return split in get_suite(setting).splits


def _check_settings(settings: list[str], where: str) -> None:
    for s in settings:
        suite = _suite(s, where)
        for split in ("train", "test"):
            if split not in suite.splits:
                raise ExperimentError(
                    f"{where}: setting {s!r}: suite {suite.name} has no {split!r} split "
                    f"(it has: {', '.join(suite.splits)}); a setting trains on 'train' and "
                    "tests on 'test'")


def _option(key: str, value: Any, where: str) -> Any:
    value = _typed(value, _TYPES[key], f"{where}: {key}")
    if key in _POSITIVE and not value > 0:
        raise ExperimentError(f"{where}: {key} must be > 0, got {value}")
    if key == "rim_side_margin" and not 0 <= value < 0.1:
        raise ExperimentError(f"{where}: rim_side_margin must be in [0, 0.1) metres, got {value}")
    if key == "seed" and value < 0:
        raise ExperimentError(f"{where}: seed must be >= 0, got {value}")
    if key == "control" and value not in CONTROL_MODES:
        raise ExperimentError(f"{where}: control must be one of {', '.join(CONTROL_MODES)}, "
                              f"got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and float in _TYPES[key]:
        value = float(value)
    return value


def _section(data: dict, name: str, defaults: dict[str, Any], where: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ExperimentError(f"{where}: [{name}] must be a table")
    _known(table, tuple(defaults), f"{where} [{name}]")
    return {**defaults, **{k: _option(k, v, f"{where} [{name}]") for k, v in table.items()}}


def _config_fields(agent: str) -> dict[str, Any]:
    """Model config field -> default value, for one trainable agent."""
    from dataclasses import fields

    from para_bench.models.zoo import load_model_class

    cls = load_model_class(agent).config_class
    return {f.name: f.default for f in fields(cls)}


def _model_option(agent: str, key: str, value: Any, fields_: dict[str, Any], where: str) -> Any:
    if key not in fields_:
        raise ExperimentError(f"{where}: unknown option {key!r} for {agent}; trainer options: "
                              f"{', '.join(TRAINER_DEFAULTS)}; model fields: "
                              f"{', '.join(sorted(fields_))}")
    default = fields_[key]
    kind = type(default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ExperimentError(f"{where}: {key} must be {kind.__name__} (as {agent}'s "
                              f"default {default!r}), got {value!r}")
    return value


def _train_section(table: Any, agents: list[str], variants: dict[str, str],
                   where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ExperimentError(f"{where}: [train] must be a table")
    common = {k: v for k, v in table.items() if not isinstance(v, dict)}
    per_agent = {k: v for k, v in table.items() if isinstance(v, dict)}
    for k in per_agent:
        if k not in agents:
            raise ExperimentError(f"{where}: [train.{k}]: {k!r} is not one of this "
                                  f"experiment's agents ({', '.join(agents) or 'none'})")
    out = {}
    for agent in agents:
        fields_ = _config_fields(variants.get(agent, agent))
        merged = {**common, **per_agent.get(agent, {})}
        options = dict(TRAINER_DEFAULTS)
        model: dict[str, Any] = {}
        for key, value in merged.items():
            w = f"{where} [train{'.' + agent if key in per_agent.get(agent, {}) else ''}]"
            if key in TRAINER_DEFAULTS:
                options[key] = _option(key, value, w)
            else:
                model[key] = _model_option(agent, key, value, fields_, w)
        options["set"] = dict(sorted(model.items()))
        out[agent] = options
    return out


def _eval_section(table: Any, settings: list[str], episodes: int,
                  where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ExperimentError(f"{where}: [eval] must be a table")
    common = {k: v for k, v in table.items() if not isinstance(v, dict)}
    per_setting = {k: v for k, v in table.items() if isinstance(v, dict)}
    _known(common, tuple(EVAL_DEFAULTS), f"{where} [eval]")
    for k, sub in per_setting.items():
        if k not in settings:
            raise ExperimentError(f"{where}: [eval.{k}]: {k!r} is not one of this "
                                  f"experiment's settings ({', '.join(settings)})")
        _known(sub, (*EVAL_DEFAULTS, "episodes"), f"{where} [eval.{k}]")
    out = {}
    for s in settings:
        merged = {**EVAL_DEFAULTS, "episodes": episodes}
        for key, value in {**common, **per_setting.get(s, {})}.items():
            w = f"{where} [eval{'.' + s if key in per_setting.get(s, {}) else ''}]"
            merged[key] = _option(key, value, w)
        out[s] = merged
    return out
