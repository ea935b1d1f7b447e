"""Experiment files: validation (one line, exit 2, nothing run) and stage keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from para_bench.agents.oracle import RIM_SIDE_MARGIN
from para_bench.cli import main
from para_bench.experiment.spec import ExperimentError, load_experiment, parse_experiment
from para_bench.experiment.stages import expand
from tests.conftest import ROOT

SMOKE = ROOT / "experiments" / "smoke.toml"
BASE = {
    "name": "t", "tasks": ["libero_spatial/0"], "agents": ["para", "act"],
    "baselines": ["oracle"], "settings": ["in_dist", "pos_ood"], "demos": [10, 25],
    "train_seeds": [0, 1], "episodes": 4,
    "train": {"steps": 10, "para": {"dim": 32}}, "eval": {"max_steps": 50},
}


def _keys(data: dict) -> dict[str, str]:
    return {s.name: s.key for s in expand(parse_experiment(data))}


def _changed(a: dict, b: dict) -> set[str]:
    ka, kb = _keys(a), _keys(b)
    assert ka.keys() == kb.keys()
    return {name for name in ka if ka[name] != kb[name]}


def test_shipped_experiment_files_are_valid():
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        spec = load_experiment(path)
        assert expand(spec), path
    matrix = load_experiment(ROOT / "experiments" / "para_matrix.toml")
    assert matrix.agents == ("para", "ar", "voxel_abs", "voxel_rel", "act")
    assert matrix.baselines == ("oracle", "noop")
    assert {s: e["episodes"] for s, e in matrix.eval.items()} == \
        {"in_dist": 50, "viewpoint_ood": 48, "pos_ood": 40}


def test_changing_one_agents_training_option_invalidates_only_its_stages():
    b = copy.deepcopy(BASE)
    b["train"]["para"]["dim"] = 48
    changed = _changed(BASE, b)
    assert changed and all(" para " in n and n.split()[0] in ("train", "eval") for n in changed)
    # every para train, test and held-out stage (2 settings x 2 demos x 2 seeds, each x3)
    assert len(changed) == 24
    b = copy.deepcopy(BASE)
    b["train"]["steps"] = 11  # common option: every agent's train + eval, no demos, no baseline
    changed = _changed(BASE, b)
    assert len(changed) == 48 and not any("oracle" in n or n.startswith("demos") for n in changed)


def test_changing_eval_settings_invalidates_only_evaluations():
    b = copy.deepcopy(BASE)
    b["eval"]["max_steps"] = 60
    changed = _changed(BASE, b)
    assert changed == {n for n in _keys(BASE) if n.startswith("eval")}
    b = copy.deepcopy(BASE)
    b["eval"]["pos_ood"] = {"episodes": 5}  # one setting's test episodes only
    changed = _changed(BASE, b)
    assert changed == {n for n in _keys(BASE) if n.startswith("eval") and "pos_ood/test" in n}
    b = copy.deepcopy(BASE)
    b["eval"]["heldout_episodes"] = 3  # the held-out evaluations only
    changed = _changed(BASE, b)
    assert changed == {n for n in _keys(BASE) if n.startswith("eval") and "/val" in n}
    assert len(changed) == 16


def test_collection_and_seed_changes_reach_exactly_their_dependants():
    b = copy.deepcopy(BASE)
    b["collect"] = {"image_size": 64}
    assert _changed(BASE, b) == {n for n in _keys(BASE) if not n.startswith("eval oracle")}
    b = copy.deepcopy(BASE)
    b["train_seeds"] = [0, 1, 2]  # adds stages, changes none of the old ones
    ka, kb = _keys(BASE), _keys(b)
    assert all(kb[n] == k for n, k in ka.items()) and len(kb) > len(ka)


def test_a_subset_of_demos_has_the_key_of_a_direct_collection():
    sweep = {s.name: s for s in expand(parse_experiment(BASE))}
    direct = {s.name: s for s in expand(parse_experiment({**BASE, "demos": [10]}))}
    name = "demos in_dist d10 c0"
    assert sweep[name].kind == "subset" and direct[name].kind == "collect"
    assert sweep[name].key == direct[name].key and sweep[name].output == direct[name].output


def test_the_oracles_rim_side_margin_keys_new_demos_and_leaves_old_keys_alone():
    """0 (the oracle before the margin) keeps the keys demos had before the option; the
    default margin, written out or not, makes other demos, collected with it (and the
    stages downstream follow), and an oracle row run with it."""
    plain = {s.name: s for s in expand(parse_experiment(BASE))}
    zero = {s.name: s for s in expand(parse_experiment({**BASE,
                                                        "collect": {"rim_side_margin": 0}}))}
    margin = {s.name: s for s in expand(parse_experiment({
        **BASE, "collect": {"rim_side_margin": RIM_SIDE_MARGIN}}))}
    name = "demos in_dist d25 c0"
    assert RIM_SIDE_MARGIN > 0 and "rim_side_margin" not in zero[name].material
    assert margin[name].key == plain[name].key and margin[name].argv == plain[name].argv
    assert zero[name].key != plain[name].key
    for stages, value in ((zero, "0.0"), (margin, repr(RIM_SIDE_MARGIN))):
        argv = stages[name].argv
        assert argv[argv.index("--rim-side-margin") + 1] == value
    train = "train para in_dist d25 s0"
    assert zero[train].key != plain[train].key
    # the oracle row is the demonstrator: run with the same margin, keyed by it when not 0
    oracle = "eval oracle in_dist/test"
    assert "oracle_rim_side_margin" not in zero[oracle].material
    assert margin[oracle].key == plain[oracle].key != zero[oracle].key
    assert plain[oracle].material["oracle_rim_side_margin"] == RIM_SIDE_MARGIN
    for stages, value in ((zero, "0.0"), (margin, repr(RIM_SIDE_MARGIN))):
        argv = stages[oracle].argv
        assert argv[argv.index("--agent-arg") + 1] == f"rim_side_margin={value}"
    assert "--agent-arg" not in plain["eval para in_dist/test d25 s0"].argv
    with pytest.raises(ExperimentError, match="rim_side_margin must be in"):
        parse_experiment({**BASE, "collect": {"rim_side_margin": 0.5}})


def test_plan_of_fewer_episodes_is_a_prefix():
    """What makes a demos subset equal to a direct collection."""
    from para_bench.suites import get_suite

    for name in ("in_dist", "pos_ood", "viewpoint_ood"):
        suite = get_suite(name)
        long = [s.episode_id for s in suite.plan("train", episodes=25, seed=3)]
        short = [s.episode_id for s in suite.plan("train", episodes=10, seed=3)]
        assert short == long[:10]


def test_output_paths_carry_the_key_and_never_collide():
    stages = expand(parse_experiment(BASE))
    outputs = [s.output for s in stages]
    assert len(set(outputs)) == len(outputs)
    assert all(s.key in s.output and s.key in s.log for s in stages)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


GOOD = SMOKE.read_text()
BAD = [
    (GOOD + "\nbogus = 1\n", "unknown key 'bogus'"),
    (GOOD.replace('agents = ["para"]', 'agents = ["parra"]'), "unknown agent 'parra'"),
    (GOOD.replace('baselines = ["noop"]', 'baselines = ["nope"]'), "unknown agent 'nope'"),
    (GOOD.replace('baselines = ["noop"]', 'baselines = ["act"]'), "needs a checkpoint"),
    (GOOD.replace('settings = ["in_dist", "pos_ood"]', 'settings = ["in_dist", "posood"]'),
     "unknown suite 'posood'"),
    (GOOD.replace('settings = ["in_dist", "pos_ood"]', 'settings = ["viewpoint_sweep"]'),
     "suite viewpoint_sweep has no 'train' split"),
    (GOOD.replace("episodes = 2", "episodes = -3"), "episodes must be >= 1, got -3"),
    (GOOD.replace("demos = [2]", "demos = [0]"), "demos must be >= 1, got 0"),
    (GOOD.replace("train_seeds = [0]", "train_seeds = [-1]"), "train_seeds must be >= 0"),
    (GOOD.replace("episodes = 2", 'episodes = "two"'), "episodes must be int"),
    (GOOD.replace("steps = 20", "steps = 2.5"), "steps must be int"),
    (GOOD.replace("dim = 32", "dimm = 32"), "unknown option 'dimm' for para"),
    (GOOD.replace("dim = 32", 'dim = "big"'), "dim must be int"),
    (GOOD.replace("coverage = false", "coverage = 0"), "coverage must be bool"),
    (GOOD.replace("max_steps = 40", "max_steps = 0"), "max_steps must be > 0"),
    (GOOD + "\n[eval.viewpoint_ood]\nepisodes = 3\n", "'viewpoint_ood' is not one of"),
    (GOOD + "\n[train.act]\nsteps = 3\n", "'act' is not one of this experiment's agents"),
    (GOOD.replace('tasks = ["libero_spatial/0"]', 'tasks = ["libero_spatial/99"]'),
     "unknown task libero_spatial/99"),
    (GOOD.replace('agents = ["para"]', 'agents = "para"'), "agents must be a list"),
    ("name = [", "not valid TOML"),
    (GOOD.replace("\n[collect]", '\n[variants]\npara_x = "para"\n[collect]'),
     "'para_x' is not listed in agents"),
    (GOOD.replace('agents = ["para"]', 'agents = ["para", "para_x"]').replace(
        "\n[collect]", '\n[variants]\npara_x = "oracle"\n[collect]'),
     "'oracle' is not a trainable agent"),
    (GOOD.replace('agents = ["para"]', 'agents = ["para", "act"]').replace(
        "\n[collect]", '\n[variants]\nact = "para"\n[collect]'), "an agent's own name"),
]


@pytest.mark.parametrize(("text", "needle"), BAD, ids=[n for _, n in BAD])
def test_malformed_file_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, text, needle):
    assert load_experiment(SMOKE)  # the shipped smoke file is the well-formed reference
    out = tmp_path / "out"
    code = main(["experiment", "run", str(_write(tmp_path, text)), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("para-bench: error: "), err
    assert needle in err[0], err[0]
    assert not out.exists()  # nothing ran


def test_bad_flags_and_missing_file(tmp_path, capsys):
    for args, needle in [
        (["experiment", "run", str(tmp_path / "none.toml")], "No such file"),
        (["experiment", "run", str(SMOKE), "--train-gpus", "1"], "need --executor ray"),
        (["experiment", "report", str(SMOKE), "--out", str(tmp_path / "x")], "no such "
                                                                               "experiment"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_parse_errors_are_experiment_errors():
    with pytest.raises(ExperimentError, match="nothing to evaluate"):
        parse_experiment({**BASE, "agents": [], "baselines": []})
    with pytest.raises(ExperimentError, match="lists 'para' twice"):
        parse_experiment({**BASE, "agents": ["para", "para"]})


def test_subset_keeps_the_first_episodes_in_order(tmp_path):
    """A demos subset holds exactly the demos a direct collection of n would keep."""
    import json

    import h5py
    import numpy as np

    from para_bench.experiment.subset import subset_demos
    from para_bench.suites import get_suite

    plan = get_suite("pos_ood").plan("train", episodes=6)
    src, dst = tmp_path / "all.hdf5", tmp_path / "sub.hdf5"
    failed = [plan[1].episode_id, plan[5].episode_id]  # the oracle failed these
    with h5py.File(src, "w") as f:
        data = f.create_group("data")
        data.attrs.update({"suite": "pos_ood", "failed_episode_ids": json.dumps(failed)})
        for i, spec in enumerate(s for s in plan if s.episode_id not in failed):
            g = data.create_group(f"demo_{i}")
            g.attrs.update({"episode_id": spec.episode_id, "num_samples": 10 + i})
            g.create_dataset("actions", data=np.full((10 + i, 7), i, dtype=np.float64))
    n = subset_demos(src, dst, [s.episode_id for s in plan[:4]])
    with h5py.File(dst) as f:
        data = f["data"]
        ids = [data[f"demo_{i}"].attrs["episode_id"] for i in range(len(data))]
        assert n == 3 and ids == [plan[i].episode_id for i in (0, 2, 3)]
        assert data["demo_1"]["actions"][0, 0] == 1  # copied, in order, renumbered
        assert json.loads(data.attrs["failed_episode_ids"]) == [plan[1].episode_id]
        assert data.attrs["total"] == 10 + 11 + 12 and data.attrs["suite"] == "pos_ood"


def test_train_keys_cover_the_resolved_recipe():
    """Keys hash the config and steps a training will use, defaults included: writing a
    default explicitly changes nothing, and a changed default would change the key."""
    from para_bench.agents.para.configuration import ParaConfig

    explicit = copy.deepcopy(BASE)
    explicit["train"] = {"para": {"dim": 32, "head_layers": ParaConfig.head_layers},
                         "act": {}, "steps": 10}
    assert not _changed(BASE, explicit)
    stages = {s.name: s for s in expand(parse_experiment({**BASE, "train": {}}))}
    para = stages["train para pos_ood d10 s0"]
    assert para.material["options"]["steps"] == ParaConfig.train_steps
    assert para.material["config"]["head_layers"] == ParaConfig.head_layers
    assert para.argv[para.argv.index("--steps") + 1] == str(ParaConfig.train_steps)


def test_an_option_added_since_and_pinned_off_keeps_the_key_it_had_before(monkeypatch):
    """A checkpoint trained before an option existed is that option off: a file that pins it
    off keeps its old train key (its stages stay done); pinning it on changes the key."""
    from para_bench.experiment import stages as stages_mod

    def key(train: dict) -> str:
        spec = parse_experiment({**BASE, "train": train})
        return {s.name: s for s in expand(spec)}["train para pos_ood d10 s0"].key

    off, on = key({"para": {"eef_height": False}}), key({"para": {"eef_height": True}})
    # the config as it resolved before the option was added: no eef_height field at all
    real = stages_mod.resolved_config

    def before_the_option(agent, overrides, image_size):
        config = real(agent, overrides, image_size)
        return {k: v for k, v in config.items() if not (agent == "para" and k == "eef_height")}

    monkeypatch.setattr(stages_mod, "resolved_config", before_the_option)
    assert key({"para": {}}) == off != on
    monkeypatch.undo()
    assert key({"para": {}}) == off  # today's default (off) keeps the key too


def test_ready_stages_launch_so_that_whole_cells_finish_first():
    from para_bench.experiment.scheduler import launch_priority

    spec = parse_experiment({**BASE, "baselines": ["oracle", "noop"]})
    stages = sorted(expand(spec), key=lambda s: launch_priority(s, spec))
    kinds = [(s.meta["agent"] if s.meta.get("baseline") else s.kind.replace("subset", "collect"))
             for s in stages]
    # demos, evaluations of trained checkpoints, the oracle (solvability), more training,
    # other baselines last
    order = ["collect", "evaluate", "oracle", "train", "noop"]
    assert kinds == sorted(kinds, key=order.index) and set(kinds) == set(order)
    assert kinds.index("evaluate") < kinds.index("train")
    trains = [s.meta["agent"] for s in stages if s.kind == "train"]
    assert trains == sorted(trains, key=list(spec.agents).index)  # one agent's row at a time
    evals = [s for s in stages if s.kind == "evaluate" and not s.meta["baseline"]]
    assert evals[0].meta["role"] == "heldout"  # in distribution before out of it


def test_a_variant_trains_its_model_with_its_own_options_as_its_own_row():
    spec = parse_experiment({**BASE, "agents": ["para", "para_abs"],
                             "variants": {"para_abs": "para"},
                             "train": {"steps": 10, "para_abs": {"context_pos": "absolute"}}})
    stages = {s.name: s for s in expand(spec)}
    train = stages["train para_abs in_dist d10 s0"]
    assert train.argv[train.argv.index("--agent") + 1] == "para"
    assert 'context_pos="absolute"' in train.argv
    run = stages["eval para_abs in_dist/test d10 s0"]
    assert run.argv[run.argv.index("--agent") + 1] == "para" and run.meta["agent"] == "para_abs"
    assert train.key != stages["train para in_dist d10 s0"].key
    # a variant without options is the model itself: the same key (what produces it)
    same = parse_experiment({**BASE, "agents": ["para", "para_same"],
                             "variants": {"para_same": "para"}, "train": {"steps": 10}})
    keys = {s.name: s.key for s in expand(same)}
    assert keys["train para_same in_dist d10 s0"] == keys["train para in_dist d10 s0"]


def test_variant_options_are_checked_against_their_models_fields():
    with pytest.raises(ExperimentError, match="unknown option 'dimm' for para_abs"):
        parse_experiment({**BASE, "agents": ["para_abs"], "variants": {"para_abs": "para"},
                          "train": {"para_abs": {"dimm": 3}}})
