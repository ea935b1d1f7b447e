"""An experiment expands into stages: demos -> train -> evaluate, each keyed by its inputs.

Stage kinds and what their key covers (a sha256 of the JSON of these, 16 hex digits):

- ``collect`` -- oracle demos for one (setting, demos, collection seed): the train split's
  episode plan (suite name, version, tasks, episodes, seed: its ``plan_hash``), image size,
  step limit and the oracle's rim-side margin (when not 0). Smaller counts of a demos sweep
  are ``subset`` stages: the first ``n`` episodes of the largest collection (the plan of
  ``n`` episodes is a prefix of the plan of ``N``), with the key a direct collection of
  ``n`` would have.
- ``train`` -- one checkpoint per (agent, setting, demos, train seed): the agent, its merged
  ``[train]`` options (trainer options and model config overrides), the model config it
  resolves to (the model's defaults included, so a changed default recipe retrains; an option
  added since and set to its off value left out, so pinning it off keeps the old key), the
  number of steps, the demos stage's key, the seed and the device.
- ``evaluate`` -- one run folder per (checkpoint or baseline, split): the train stage's key
  (or the baseline's name), the plan (suite, version, split, tasks, episodes, eval seed:
  ``plan_hash``), every ``[eval]`` setting that can change an outcome, the control path's
  version and the record format (the run folder's identity refuses anything else); for the
  ``oracle`` row also the ``[collect]`` rim-side margin (when not 0): the experiment's oracle
  row is its demonstrator. Each learned cell
  has a ``test`` stage and, where the suite has one, a ``heldout`` stage on the
  ``heldout_split`` (held-out scenes of its own training distribution).

Code changes that show in none of these (the oracle's behaviour, the training loop, a
model's architecture behind an unchanged config) need :data:`KEY_VERSION` bumped or a new
experiment folder; every done marker records the git sha that built it, and the report
says when stages come from several code versions.

Changing one agent's training options changes only its train and evaluate keys; changing
``[eval]`` settings only evaluate keys. Every output path carries its key, so a folder or
file is never reused for other inputs. Commands are ``para-bench`` argv lists with paths
relative to the experiment folder (stages run with it as their working directory).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from para_bench.experiment.spec import ExperimentSpec

__all__ = ["KEY_VERSION", "Stage", "expand", "stage_key"]

#: bump when the meaning of a stage's output changes without any of its inputs changing
KEY_VERSION = 1
KIND_ORDER = {"collect": 0, "subset": 0, "train": 1, "evaluate": 2}
EVAL_OUTCOME_SETTINGS = ("control", "zero_rotation", "max_steps", "action_scale", "image_size",
                         "coverage", "episode_timeout")


#: what ``para-bench train`` writes next to ``<out>.pt``
TRAIN_SIDE_SUFFIXES = (".train.json", ".loss.png", ".overlay.png")


@dataclass
class Stage:
    """One cached unit of work.

    Attributes:
        kind: ``collect``, ``subset``, ``train`` or ``evaluate``.
        name: human-readable and unique within the experiment, e.g. ``train para pos_ood d50 s0``.
        key: 16 hex digits of the sha256 of ``material``.
        material: everything that produces the output (JSON).
        deps: names of the stages whose outputs this one reads.
        output: final output (file, or the run folder for ``evaluate``), relative to the
            experiment folder.
        work: where the command writes before the output is moved into place (``collect``,
            ``subset``, ``train``); the run folder itself for ``evaluate`` (runs resume).
        argv: the command, ``["para-bench", ...]`` or ``["python", "-m", ...]``.
        meta: agent, setting, demos, train_seed, split, role (``test`` / ``heldout``),
            baseline, episodes -- what the report needs to place the output.
    """

    kind: str
    name: str
    key: str
    material: dict[str, Any]
    deps: tuple[str, ...]
    output: str
    work: str
    argv: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """File-name form of the stage: name words joined by ``-``, then ``.key``."""
        return "-".join(self.name.replace("/", "_").split()) + "." + self.key

    @property
    def log(self) -> str:
        return f"logs/{self.stem}.log"

    def side_files(self) -> list[str]:
        """Files written next to the work output that move with it (train: the summary,
        loss curve and overlay next to ``ckpt.pt``)."""
        return self._beside(self.work)

    def output_side_files(self) -> list[str]:
        """The :meth:`side_files` where they lie once the stage is done: next to
        ``output``, in the same order."""
        return self._beside(self.output)

    def _beside(self, path: str) -> list[str]:
        if self.kind != "train":
            return []
        return [path[:-len(".pt")] + ext for ext in TRAIN_SIDE_SUFFIXES]


def stage_key(material: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of the canonical JSON of ``material`` (+ :data:`KEY_VERSION`)."""
    blob = json.dumps({"key_version": KEY_VERSION, **material}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _suite_arg(setting: str) -> str:
    return str(Path(setting).resolve()) if setting.endswith(".json") else setting


def _label(setting: str) -> str:
    return Path(setting).stem if setting.endswith(".json") else setting


def _plan_material(setting: str, split: str, tasks: list[str], episodes: int,
                   seed: int) -> dict[str, Any]:
    from para_bench.suites import get_suite
    from para_bench.suites.spec import plan_hash

    suite = get_suite(setting)
    plan = suite.plan(split, tasks=tasks, episodes=episodes, seed=seed)
    return {"suite": suite.name, "version": suite.version, "split": split, "tasks": tasks,
            "episodes": episodes, "seed": seed, "plan": plan_hash(plan)}


def _demos_stages(spec: ExperimentSpec, setting: str) -> dict[int, Stage]:
    c, tasks, label = spec.collect, list(spec.tasks), _label(setting)
    out: dict[int, Stage] = {}
    top = max(spec.demos)
    for n in sorted(spec.demos, reverse=True):
        material = {"kind": "demos", **_plan_material(setting, "train", tasks, n, c["seed"]),
                    "image_size": c["image_size"], "max_steps": c["max_steps"]}
        margin = c["rim_side_margin"]
        if margin:  # 0 (the oracle before the margin) leaves the keys of earlier demos alone
            material["rim_side_margin"] = margin
        key = stage_key(material)
        name = f"demos {label} d{n} c{c['seed']}"
        stem = "-".join(name.split()[1:])
        output, work = f"demos/{stem}.{key}.hdf5", f"demos/.partial/{stem}.{key}.hdf5"
        if n == top:
            argv = ["para-bench", "collect", "--suite", _suite_arg(setting), "--split", "train",
                    "--tasks", ",".join(tasks), "--episodes", str(n), "--seed", str(c["seed"]),
                    "--image-size", str(c["image_size"]), "--max-steps", str(c["max_steps"]),
                    "--out", work, "--rim-side-margin", repr(margin)]
            kind, deps = "collect", ()
        else:
            src = out[top]
            argv = ["python", "-m", "para_bench.experiment.subset", src.output, work, "--suite",
                    _suite_arg(setting), "--tasks", ",".join(tasks), "--episodes", str(n),
                    "--seed", str(c["seed"])]
            kind, deps = "subset", (src.name,)
        out[n] = Stage(kind, name, key, material, deps, output, work, argv,
                       {"setting": setting, "demos": n})
    return out


def resolved_config(agent: str, overrides: dict[str, Any], image_size: int) -> dict[str, Any]:
    """The model config a training will use: the model's defaults, the file's overrides,
    and the demos' image size unless overridden (as ``para-bench train`` does)."""
    from para_bench.models.zoo import load_model_class

    cls = load_model_class(agent).config_class
    return cls.from_dict({"image_size": image_size, **overrides}).to_dict()


def _keyed_config(model: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as a train key covers it: an option added to the model since, set to
    its off value, is left out, so a stage that pins it off keeps the key (and the
    checkpoint and evaluations) it had before the option existed."""
    from para_bench.models.checkpoint import ADDED_OPTIONS_OFF

    off = ADDED_OPTIONS_OFF.get(model, {})
    return {k: v for k, v in config.items() if not (k in off and off[k] == v)}


def _train_stage(spec: ExperimentSpec, agent: str, setting: str, demos: Stage, seed: int,
                 device: str | None) -> Stage:
    opts = dict(spec.train[agent])
    if device:
        opts["device"] = device
    model = spec.model_of(agent)
    config = resolved_config(model, opts["set"], spec.collect["image_size"])
    opts["steps"] = opts["steps"] or config["train_steps"]  # a changed default changes the key
    # keyed by the model, not the variant's name: what produces the checkpoint
    material = {"kind": "train", "agent": model, "demos": demos.key, "seed": seed,
                "options": {k: v for k, v in opts.items() if k != "set"},
                "config": _keyed_config(model, config)}
    key = stage_key(material)
    n = demos.meta["demos"]
    name = f"train {agent} {_label(setting)} d{n} s{seed}"
    stem = f"{agent}-{_label(setting)}-d{n}-s{seed}"
    output, work = f"checkpoints/{stem}.{key}.pt", f"checkpoints/.partial/{stem}.{key}.pt"
    argv = ["para-bench", "train", "--agent", model, "--data", demos.output, "--out", work,
            "--seed", str(seed), "--threads", "1", "--batch-size", str(opts["batch_size"]),
            "--lr", repr(opts["lr"]), "--device", opts["device"], "--steps", str(opts["steps"])]
    if opts["max_minutes"] is not None:
        argv += ["--max-minutes", repr(opts["max_minutes"])]
    for k, v in opts["set"].items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    return Stage("train", name, key, material, (demos.name,), output, work, argv,
                 {"agent": agent, "setting": setting, "demos": n, "train_seed": seed})


def _eval_stage(spec: ExperimentSpec, agent: str, setting: str, split: str, episodes: int,
                role: str, train: Stage | None) -> Stage:
    e = spec.eval[setting]
    from para_bench.envs.control import CONTROL_PATH_VERSION
    from para_bench.types import RECORD_FORMAT_VERSION

    model = spec.model_of(agent)
    material = {"kind": "evaluate", "agent": model,
                "checkpoint": train.key if train else None,
                **_plan_material(setting, split, list(spec.tasks), episodes, e["seed"]),
                "settings": {k: e[k] for k in EVAL_OUTCOME_SETTINGS},
                "control_path_version": CONTROL_PATH_VERSION,
                "record_format": RECORD_FORMAT_VERSION}
    # the oracle row is the experiment's demonstrator: the [collect] table's oracle
    margin = spec.collect["rim_side_margin"] if model == "oracle" else 0
    if margin:  # 0 leaves the keys of earlier oracle rows as they were
        material["oracle_rim_side_margin"] = margin
    key = stage_key(material)
    label = _label(setting)
    cell = f" d{train.meta['demos']} s{train.meta['train_seed']}" if train else ""
    name = f"eval {agent} {label}/{split}{cell}"
    folder = f"runs/{agent}-{label}{cell.replace(' ', '-')}-{split}.{key}"
    argv = ["para-bench", "run", "--agent", model, "--suite", _suite_arg(setting), "--split",
            split, "--tasks", ",".join(spec.tasks), "--episodes", str(episodes), "--seed",
            str(e["seed"]), "--control", e["control"], "--max-steps", str(e["max_steps"]),
            "--action-scale", repr(e["action_scale"]), "--image-size", str(e["image_size"]),
            "--out", folder]
    if train:
        argv += ["--checkpoint", train.output]
    if model == "oracle":
        argv += ["--agent-arg", f"rim_side_margin={json.dumps(margin)}"]
    if e["zero_rotation"]:
        argv.append("--zero-rotation")
    if not e["coverage"]:
        argv.append("--no-coverage")
    if e["episode_timeout"]:
        argv += ["--episode-timeout", repr(e["episode_timeout"])]
    meta = {"agent": agent, "setting": setting, "split": split, "role": role,
            "episodes": episodes * len(spec.tasks), "baseline": train is None}
    if train:
        meta.update(demos=train.meta["demos"], train_seed=train.meta["train_seed"])
    return Stage("evaluate", name, key, material, (train.name,) if train else (), folder,
                 folder, argv, meta)


def expand(spec: ExperimentSpec, train_device: str | None = None) -> list[Stage]:
    """All stages of an experiment, dependencies first.

    Args:
        spec: the validated experiment.
        train_device: overrides every agent's ``device`` (``--train-gpus``: ``cuda``); part
            of the train keys, since a GPU-trained checkpoint is another checkpoint.

    Returns:
        Stages ordered by kind (demos, train, evaluate), then by the file's order.
    """
    from para_bench.suites import get_suite

    stages: list[Stage] = []
    for setting in spec.settings:
        e = spec.eval[setting]
        has_heldout = e["heldout_split"] in get_suite(setting).splits
        if spec.agents:
            demos = _demos_stages(spec, setting)
            stages += [demos[n] for n in sorted(demos)]
            for agent in spec.agents:
                for n in spec.demos:
                    for seed in spec.train_seeds:
                        t = _train_stage(spec, agent, setting, demos[n], seed, train_device)
                        stages.append(t)
                        stages.append(_eval_stage(spec, agent, setting, "test", e["episodes"],
                                                  "test", t))
                        if has_heldout:
                            stages.append(_eval_stage(spec, agent, setting, e["heldout_split"],
                                                      e["heldout_episodes"], "heldout", t))
        for b in spec.baselines:
            stages.append(_eval_stage(spec, b, setting, "test", e["episodes"], "test", None))
    order = {s.name: i for i, s in enumerate(stages)}
    if len(order) != len(stages):
        raise AssertionError("stage names must be unique")
    return sorted(stages, key=lambda s: (KIND_ORDER[s.kind], order[s.name]))
