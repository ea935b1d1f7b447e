"""Agent/suite registries and the episode plans suites expand to."""

from __future__ import annotations

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


def test_plans_are_deterministic_and_agent_independent():
    suite = get_suite("pos_ood")
    a = suite.plan("test", seed=0)
    b = get_suite("pos_ood").plan("test", seed=0)
    assert [s.episode_id for s in a] == [s.episode_id for s in b]
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
    with pytest.raises(ValueError, match="unknown split 'val'.*train, test"):
        suite.plan("val")


def test_task_selection_and_suite_json_round_trip(tmp_path):
    suite = get_suite("in_dist")
    plan = suite.plan("test", tasks=["libero_spatial/5", "libero_object/2"], episodes=3)
    assert [s.task for s in plan] == ["libero_spatial/5"] * 3 + ["libero_object/2"] * 3
    with pytest.raises(ValueError, match="task ids are 0..9"):
        suite.plan("test", tasks=["libero_spatial/10"])
    path = tmp_path / "suite.json"
    path.write_text(suite.to_json())
    assert get_suite(str(path)).plan("test", episodes=2) == suite.plan("test", episodes=2)
