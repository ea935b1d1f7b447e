"""Agent/suite registries and the episode plans suites expand to."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from para_bench.registry import AGENTS, Registry, RegistryError, make_agent
from para_bench.suites import get_suite


def test_import_para_bench_imports_nothing_heavy():
    code = ("import sys, para_bench, gymnasium as gym; "
            "assert 'para_bench/libero_90-89-v0' in gym.registry; "
            "heavy = [m for m in ('robosuite', 'mujoco', 'torch', 'libero', "
            "'para_bench.agents.oracle') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_builtin_agents_come_from_entry_points():
    names = AGENTS.names()
    assert {"oracle", "noop", "random"} <= set(names)
    assert AGENTS.get("oracle").source == "built-in"
    assert make_agent("noop").act({}, {}).shape == (10, 7)


def test_unknown_names_list_the_choices():
    with pytest.raises(RegistryError, match="choose one of: .*oracle"):
        AGENTS.get("orcale")
    with pytest.raises(ValueError, match="choose one of: .*pos_ood"):
        get_suite("pos_odd")


def test_duplicate_names_are_an_error_naming_both():
    reg = Registry("agent", "para_bench.no_such_group")

    @reg.register("twin")
    class A:  # noqa: B903
        pass

    with pytest.raises(RegistryError, match="registered twice.*A.*B"):
        @reg.register("twin")
        class B:
            pass


def test_module_path_factories_work():
    agent = make_agent("para_bench.agents.baselines:RandomAgent", chunk=3)
    agent.reset({"task": "x"}, seed=1)
    assert agent.act({}, {}).shape == (3, 7)


def test_plans_are_deterministic():
    suite = get_suite("pos_ood")
    a = suite.plan("test", seed=0)
    b = get_suite("pos_ood").plan("test", seed=0)
    assert [s.episode_id for s in a] == [s.episode_id for s in b]
    assert [s.scene_id for s in suite.plan("train")] == \
        [s.scene_id for s in get_suite("pos_ood").plan("train")]
    assert len({s.episode_id for s in a}) == 20
    assert all(s.objects["dy"] > 0 for s in a)
    assert all(s.extra["dist_to_train_m"] > 0 for s in a)
    assert all(s.objects["dy"] < 0 for s in suite.plan("train"))
    assert a[0].episode_id != suite.plan("test", seed=1)[0].episode_id


def test_viewpoint_test_views_are_off_axis_and_splits_are_explicit():
    suite = get_suite("viewpoint_ood")
    test = suite.plan("test")
    assert all(15 <= abs(s.camera["yaw_deg"]) <= 25 for s in test)
    assert all(abs(s.camera["yaw_deg"]) <= 5 for s in suite.plan("train"))
    with pytest.raises(ValueError, match="unknown split 'valid'.*train, val, test"):
        suite.plan("valid")


@pytest.mark.parametrize("name", ["in_dist", "pos_ood", "viewpoint_ood"])
def test_train_val_and_test_scenes_never_coincide(name):
    suite = get_suite(name)
    train = suite.plan("train", episodes=200)
    val = suite.plan("val", episodes=200)
    test = suite.plan("test", episodes=200)
    # evaluation uses LIBERO's official init states; train / val sampled placements
    assert all(s.init_state is not None and s.placement_seed is None for s in test)
    assert all(s.init_state is None and s.placement_seed is not None for s in train + val)
    ids = [{s.scene_id for s in plan} for plan in (train, val, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    # a different --seed gives other training scenes, the same test scenes
    assert not {s.scene_id for s in suite.plan("train", episodes=50, seed=1)} & ids[0]
    assert {s.scene_id for s in suite.plan("test", episodes=200, seed=1)} == ids[2]
    # val is the training distribution: the same perturbations
    assert {json.dumps(s.perturbation, sort_keys=True) for s in val} == \
        {json.dumps(s.perturbation, sort_keys=True) for s in train}


def test_task_selection_and_suite_json_round_trip(tmp_path):
    suite = get_suite("in_dist")
    plan = suite.plan("test", tasks=["libero_spatial/5", "libero_object/2"], episodes=3)
    assert [s.task for s in plan] == ["libero_spatial/5"] * 3 + ["libero_object/2"] * 3
    with pytest.raises(ValueError, match="task ids are 0..9"):
        suite.plan("test", tasks=["libero_spatial/10"])
    path = tmp_path / "suite.json"
    path.write_text(suite.to_json())
    assert get_suite(str(path)).plan("test", episodes=2) == suite.plan("test", episodes=2)
