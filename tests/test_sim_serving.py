"""Policies anywhere, in the real simulator: a trained model agent served by ``para-bench
serve`` and evaluated with ``--agent remote`` gives the records it gives in-process; the
openpi-libero adapter sends what openpi's LIBERO example sends (checked against openpi's
own ``image_tools`` and robosuite's own ``quat2axisangle``) and executes the answer as
LIBERO deltas."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.serving_helpers import ServeProcess, openpi_style_server
from tests.test_sim_cli import _cli, _records

pytestmark = [pytest.mark.sim,
              pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")]
TINY = ("--set", "dim=32", "--set", "n_window=4", "--set", "stride=2")
TIMING = ("latency_ms",)  # per-call wall time: the only metric allowed to differ


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An ``ar`` policy (it keeps a frame history: episode state) trained for a few steps
    on one oracle demo of libero_spatial/0 at 64 px."""
    folder = tmp_path_factory.mktemp("served")
    demos, ckpt = folder / "demos.hdf5", folder / "ar.pt"
    _cli("collect", "--suite", "in_dist", "--split", "train", "--episodes", "1",
         "--image-size", "64", "--out", str(demos), "--quiet")
    _cli("train", "--agent", "ar", "--data", str(demos), "--out", str(ckpt), "--steps", "3",
         "--batch-size", "4", "--threads", "1", "--quiet", *TINY)
    return ckpt


def test_served_model_agent_gives_the_in_process_records(checkpoint, tmp_path):
    plan = ("--suite", "in_dist", "--episodes", "2", "--max-steps", "40", "--no-coverage",
            "--quiet")
    local, remote = tmp_path / "local", tmp_path / "remote"
    _cli("run", "--agent", "ar", "--checkpoint", str(checkpoint), *plan, "--out", str(local))
    api_key = "sesame-4f2a"
    server = ServeProcess("--agent", "ar", "--checkpoint", str(checkpoint),
                          "--api-key", api_key).wait_ready()
    try:
        _cli("run", "--agent", "remote", "--policy-url", server.url, "--api-key", api_key, *plan,
             "--out", str(remote))
        table = _cli("table", str(local), str(remote)).stdout
    finally:
        log = server.stop()
    a = {r["episode_id"]: r for r in _records(local)}
    b = {r["episode_id"]: r for r in _records(remote)}
    assert set(a) == set(b) and len(a) == 2
    for eid, ra in a.items():
        rb = b[eid]
        assert ra["status"] == rb["status"] == "ok", (ra["error"], rb["error"])
        for key in ("success", "steps", "eef_trajectory", "task", "init_state", "spec"):
            assert ra[key] == rb[key], key
        strip = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
        assert strip(ra["metrics"]) == strip(rb["metrics"])
        assert ra["metrics"]["n_calls"] >= 2  # several decisions: the history mattered
        assert ra["policy"] is None
        assert rb["policy"]["format"] == "para-bench" and rb["policy"]["url"] == server.url
        assert rb["policy"]["server"] == {"server": "para-bench", "agent": "ar",
                                          "checkpoint_sha": ra["checkpoint_sha"]}
    assert f"remote:ar[{ra['checkpoint_sha'][:8]}]" in table  # tables name the served policy
    # one connection for both episodes (besides the start-up checks that the server is
    # there), a new episode on the server for each planned one (reset: true)
    starts = re.findall(r"conn (\d+): episode start", log)
    assert len(starts) == 2 and len(set(starts)) == 1
    assert "requests in" in log  # the server's closing account
    for name in ("manifest.json", "episodes.jsonl"):  # the key stays out of the run folder
        assert api_key not in (remote / name).read_text()


def _answer(obs, n):
    """A fake openpi LIBERO policy: 10 deltas, the k-th moving 1 mm per step along x * k."""
    actions = np.zeros((10, 7))
    actions[:, 0] = 0.02 * np.arange(1, 11)
    actions[:, 6] = -1.0
    return {"actions": actions}


@pytest.mark.parametrize("spatial0", ["fast"], indirect=True)  # one physics loop is enough
def test_openpi_libero_adapter_matches_openpi_conventions(spatial0):
    from openpi_client import image_tools
    from robosuite.utils.transform_utils import quat2axisangle

    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.serving import libero_format

    env = LiberoEnv(image_size=256, wrist=True, render_quality="libero", control="delta")
    try:
        obs, info = env.reset(seed=0, options={"init_state": 0})
        raw = env._last_obs  # robosuite's own observation dict
        msg = libero_format.encode_observation(obs, info["instruction"])
        for key, camera in (("observation/image", "agentview_image"),
                            ("observation/wrist_image", "robot0_eye_in_hand_image")):
            rotated = np.ascontiguousarray(raw[camera][::-1, ::-1])
            expected = image_tools.convert_to_uint8(image_tools.resize_with_pad(rotated, 224, 224))
            assert msg[key].dtype == np.uint8 and msg[key].shape == (224, 224, 3)
            np.testing.assert_array_equal(msg[key], expected)
        assert not np.array_equal(msg["observation/image"], msg["observation/wrist_image"])
        axis_angle = quat2axisangle(raw["robot0_eef_quat"].copy())
        state = np.concatenate([raw["robot0_eef_pos"], axis_angle, raw["robot0_gripper_qpos"]])
        np.testing.assert_allclose(msg["observation/state"], state, atol=1e-12)
        assert msg["prompt"] == info["instruction"] and msg["observation/state"].shape == (8,)
        # the answer runs as LIBERO deltas through the control path: the first 5 of them
        chunk = libero_format.decode_actions(_answer(msg, 0), replan_steps=5)
        _, _, _, _, step_info = env.step_chunk(chunk)
        np.testing.assert_allclose(step_info["commands"], _answer(msg, 0)["actions"][:5])
    finally:
        env.close()
    assert "wrist_rgb" not in spatial0.reset(seed=0)[0]  # rendered only when asked for


def test_remote_openpi_libero_run_replans_every_n_steps(tmp_path):
    from para_bench.runner import RunConfig, run_plan
    from para_bench.suites import get_suite

    plan = get_suite("in_dist").plan("test", episodes=1)
    with openpi_style_server(_answer, {"policy": "stand-in"}) as (url, received):
        cfg = RunConfig(agent="remote", coverage=False, max_steps=12,
                        agent_kwargs={"policy_url": url, "policy_format": "openpi-libero",
                                      "replan_steps": 4})
        rec = run_plan(plan, cfg, tmp_path / "run", progress=False).records()[0]
    assert rec.status == "ok", rec.error
    assert rec.steps == 12 and rec.metrics["n_calls"] == 3 and len(received) == 3
    assert rec.policy["format"] == "openpi-libero" and rec.policy["replan_steps"] == 4
    assert set(received[0]) == {"observation/image", "observation/wrist_image",
                                "observation/state", "prompt"}
    moved = np.diff(np.asarray(rec.eef_trajectory)[:, 0])
    assert (moved > 0).all()  # every step moved along +x, as the deltas said
