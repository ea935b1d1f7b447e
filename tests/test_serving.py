"""Policy serving without the simulator: the wire codec against openpi-client, the server
(metadata, batching, per-connection state, errors, API key, health), the remote agent and
its faults through the runner (fake env: runner logic only; real rollouts are in
test_sim_serving.py)."""

from __future__ import annotations

import socket
import threading
import urllib.request

import msgpack
import numpy as np
import pytest

from para_bench.cli import main as cli_main
from para_bench.registry import make_agent
from para_bench.runner import RunConfig, run_plan
from para_bench.serving import codec
from para_bench.serving.client import PolicyClient, RemotePolicyError, check_server
from para_bench.suites import get_suite
from tests.fake_env import FakeEnv
from tests.serving_helpers import (
    EpisodeCounterAgent,
    ServeProcess,
    free_port,
    openpi_style_server,
    server_in_thread,
)

openpi_msgpack = pytest.importorskip("openpi_client.msgpack_numpy")
# openpi-client 0.1.2 opens connections the way websockets >= 17.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def _message():
    return {"img": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
            "x": np.linspace(0, 1, 6).reshape(2, 3), "f32": np.ones(3, np.float32),
            "strided": np.arange(10.0)[::3], "i16": np.array([[-3, 4]], np.int16),
            "flag": np.bool_(True), "f": np.float32(0.5), "n": np.int64(-7),
            "float64": np.float64(2.5),  # a Python float subclass: travels as a float
            "nested": {"k": np.eye(3)}, "text": "pick up the bowl", "list": [1, 2.5, None]}


def _assert_same(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray) or (isinstance(a, np.generic) and not isinstance(a, float)):
        assert isinstance(b, (np.ndarray, np.generic)) and a.dtype == b.dtype
        assert np.shape(a) == np.shape(b) and np.array_equal(a, b)
    else:
        assert a == b


def test_codec_is_byte_identical_to_openpi_and_decodes_both_ways():
    msg = _message()
    ours, theirs = codec.packb(msg), openpi_msgpack.packb(msg)
    assert ours == theirs
    _assert_same(msg, openpi_msgpack.unpackb(ours))  # openpi decodes what we encode
    _assert_same(msg, codec.unpackb(theirs))  # and we decode what openpi encodes
    assert codec.unpackb(ours)["img"].flags.writeable


@pytest.mark.parametrize("frame, needle", [
    (b"\xc1\xc1garbage", "not a msgpack message"),
    (msgpack.packb({b"__ndarray__": True, b"data": b"123", b"dtype": "<f8", b"shape": [1]}),
     "does not fit"),
    (msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}),
     "refused array dtype"),
    (msgpack.packb({"__ndarray__": True, "dtype": "<f8", "shape": [1]}), "malformed array"),
])
def test_codec_refuses_malformed_frames(frame, needle):
    with pytest.raises(codec.WireError, match=needle):
        codec.unpackb(frame)
    with pytest.raises(codec.WireError):
        codec.packb({"x": np.array([object()])})


def _obs(i: float = 0.0) -> dict:
    return {"eef_pos": np.array([i, 0.0, 1.0]), "rgb": np.zeros((4, 4, 3), np.uint8)}


def test_openpi_client_calls_para_bench_serve_and_gets_actions():
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    with server_in_thread(EpisodeCounterAgent) as server:
        client = WebsocketClientPolicy(host=server.url)
        meta = client.get_server_metadata()
        assert meta["server"] == "para-bench" and meta["policy_format"] == "para-bench"
        for k in (1, 2):
            answer = client.infer({**_obs(), "prompt": "pick", "seed": 4})
            assert answer["actions"].shape == (2, 7) and answer["action_kind"] == "deltas"
            assert answer["debug"]["calls"] == k and answer["debug"]["seed"] == 4
        with urllib.request.urlopen(server.url.replace("ws", "http") + "/healthz") as r:
            assert r.status == 200


def test_concurrent_connections_are_batched_and_keep_their_own_episodes():
    n_clients, calls = 4, 4
    answers: dict[int, list[dict]] = {}
    barrier = threading.Barrier(n_clients)

    def client_run(i: int, url: str) -> None:
        client = PolicyClient(url)
        client.connect()
        barrier.wait()
        out = []
        for k in range(calls):
            msg = {**_obs(float(i)), "seed": 100 + i, "instruction": f"task {i}"}
            if k == 0 or (i == 0 and k == 2):  # client 0 starts a second episode at k = 2
                msg["reset"] = True
            out.append(client.infer(msg))
        answers[i] = out
        client.close()

    with server_in_thread(EpisodeCounterAgent, max_wait_ms=3000) as server:
        threads = [threading.Thread(target=client_run, args=(i, server.url))
                   for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stats = server.engine.stats
    assert sorted(answers) == list(range(n_clients))
    for i, out in answers.items():
        expected_calls = [1, 2, 1, 2] if i == 0 else [1, 2, 3, 4]
        assert [a["debug"]["calls"] for a in out] == expected_calls
        assert all(a["debug"]["seed"] == 100 + i for a in out)
        assert all(a["debug"]["eef"][0] == i for a in out)
    assert max(stats.batch_sizes) > 1  # requests from several connections shared a batch
    assert max(a["server_timing"]["batch_size"] for out in answers.values() for a in out) > 1


def _tiny_checkpoint(path, name="ar"):
    from para_bench.models.checkpoint import save_checkpoint
    from para_bench.models.stats import DatasetStats
    from para_bench.models.zoo import load_model_class

    rng = np.random.default_rng(0)
    n = 100
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)) + rng.normal(0, 0.05, (n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    stats = DatasetStats.from_arrays(rng.normal([0, 0, 1.0], 0.1, (n, 3)), quats,
                                     np.sign(rng.normal(size=n)))
    cls = load_model_class(name)
    config = cls.config_class(image_size=32, grid=8, dim=32, n_window=4, token_grid=4)
    save_checkpoint(path, cls(config, stats), {})
    return str(path)


def _model_obs(rng):
    from para_bench.envs.camera import intrinsics_from_fovy, look_at

    return {"rgb": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "intrinsics": intrinsics_from_fovy(45.0, 32, 32),
            "extrinsics": look_at([1.0, 0.0, 1.6], [0.0, 0.0, 0.9]),
            "eef_pos": np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.05, 3),
            "gripper_qpos": np.array([0.04, -0.04])}


def test_batched_model_agent_answers_like_in_process_agents(tmp_path):
    """One forward pass over stacked connections; each connection keeps its own frame
    history (the ``ar`` policy looks at its last two frames)."""
    ckpt = _tiny_checkpoint(tmp_path / "ar.pt")
    n_clients, calls = 3, 3
    sequences = [[_model_obs(np.random.default_rng(10 * i + k)) for k in range(calls)]
                 for i in range(n_clients)]
    answers: dict[int, list] = {}
    barrier = threading.Barrier(n_clients)

    def client_run(i: int, url: str) -> None:
        client = PolicyClient(url)
        client.connect()
        out = []
        for k, obs in enumerate(sequences[i]):
            barrier.wait()
            msg = {**obs, "seed": i, "instruction": "x", "reset": k == 0}
            out.append(client.infer(msg))
        answers[i] = out
        client.close()

    with server_in_thread(lambda: make_agent("ar", checkpoint=ckpt), max_wait_ms=3000) as srv:
        threads = [threading.Thread(target=client_run, args=(i, srv.url))
                   for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        batch_sizes = list(srv.engine.stats.batch_sizes)
    assert max(batch_sizes) == n_clients
    for i in range(n_clients):
        agent = make_agent("ar", checkpoint=ckpt)
        agent.reset({"task": "", "instruction": "x"}, i)
        for obs, answer in zip(sequences[i], answers[i], strict=True):
            chunk = agent.act(obs, {})
            assert answer["action_kind"] == "targets"
            np.testing.assert_allclose(answer["actions"], chunk.targets, atol=1e-5)
            np.testing.assert_array_equal(answer["gripper"], chunk.gripper)
            np.testing.assert_allclose(answer["orientations"], chunk.orientations, atol=1e-5)


def _raw_connection(url, headers=None):
    from websockets.sync.client import connect

    ws = connect(url, additional_headers=headers)
    ws.__enter__()
    ws.recv()  # metadata
    return ws


@pytest.mark.parametrize("frame, needle", [
    (b"\x92\x01\x02", "must be a dict"),  # a msgpack list
    (b"\xc1nonsense", "not a msgpack message"),
    ("a text frame", "text frame"),
    (msgpack.packb({"eef_pos": {b"__ndarray__": True, b"data": b"1", b"dtype": "<f8",
                                b"shape": [4]}}), "does not fit"),
    (codec.packb({**_obs(), "boom": 1}), "agent.act raised RuntimeError"),
])
def test_bad_frames_and_agent_errors_are_one_line_then_1011(frame, needle, caplog):
    from websockets.exceptions import ConnectionClosed

    with server_in_thread(EpisodeCounterAgent) as server:
        ws = _raw_connection(server.url)
        ws.send(frame)
        text = ws.recv(timeout=30)
        assert isinstance(text, str) and needle in text
        assert "\n" not in text.strip() and "Traceback" not in text and 'File "' not in text
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd.code == 1011
        # the server stays up for everyone else
        client = PolicyClient(server.url)
        client.connect()
        assert client.infer(_obs())["debug"]["calls"] == 1
        client.close()
    if "agent.act" in needle:  # the details are in the server's log, not on the wire
        assert "Traceback" in caplog.text and "serving_helpers.py" in caplog.text


def test_api_key_is_required_when_set():
    from openpi_client.websocket_client_policy import WebsocketClientPolicy
    from websockets.exceptions import InvalidStatus

    with server_in_thread(EpisodeCounterAgent, api_key="sesame") as server:
        for key in (None, "wrong"):
            with pytest.raises(InvalidStatus) as refused:
                WebsocketClientPolicy(host=server.url, api_key=key)
            assert refused.value.response.status_code == 401
        with pytest.raises(RemotePolicyError, match="refused the API key"):
            check_server(server.url, api_key="wrong")
        assert WebsocketClientPolicy(host=server.url, api_key="sesame").infer(_obs())["actions"] \
            .shape == (2, 7)
        ws = _raw_connection(server.url, {"Api-Key": "sesame"})  # the bare header too
        ws.close()
        with urllib.request.urlopen(server.url.replace("ws", "http") + "/healthz") as r:
            assert r.status == 200


def _run_cli(capsys, *args):
    rc = cli_main(["run", "--suite", "in_dist", "--episodes", "1", "--quiet",
                   "--no-coverage", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_remote_cli_errors_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PARA_BENCH_API_KEY", "")  # restored after the test (--api-key sets it)
    port = free_port()

    def check(needle, *args):
        rc, err = _run_cli(capsys, *args, "--out", str(tmp_path / "run"))
        assert rc == 2 and needle in err and len(err.splitlines()) == 1, (args, err)
        assert not (tmp_path / "run").exists()  # nothing ran

    check("no policy server at", "--agent", "remote", "--policy-url", f"ws://127.0.0.1:{port}")
    check("must look like ws://", "--agent", "remote", "--policy-url", "http://host:1")
    check("needs --policy-url", "--agent", "remote")
    check("needs --agent remote", "--agent", "noop", "--policy-url", f"ws://127.0.0.1:{port}")
    with server_in_thread(EpisodeCounterAgent, api_key="sesame") as server:
        check("refused the API key", "--agent", "remote", "--policy-url", server.url,
              "--api-key", "bad")
    with openpi_style_server(lambda obs, n: {"actions": np.zeros((10, 7))}, {}) as (url, _):
        check("does not serve a para-bench", "--agent", "remote", "--policy-url", url)


def _plan(episodes=4):
    return get_suite("pos_ood").plan("test", episodes=episodes)


def _records(store):
    return {r.episode_id: r for r in store.records()}


def test_remote_records_equal_in_process_records(tmp_path):
    plan = _plan()
    local = run_plan(plan, RunConfig(agent="tests.fake_env:ForwardAgent", coverage=False,
                                     max_steps=40), tmp_path / "local", env_factory=FakeEnv,
                     progress=False)
    with server_in_thread(lambda: make_agent("tests.fake_env:ForwardAgent")) as server:
        cfg = RunConfig(agent="remote", agent_kwargs={"policy_url": server.url},
                        coverage=False, max_steps=40)
        remote = run_plan(plan, cfg, tmp_path / "remote", env_factory=FakeEnv, progress=False)
    a, b = _records(local), _records(remote)
    assert set(a) == set(b) and len(a) == len(plan)
    assert any(r.success for r in a.values()) and not all(r.success for r in a.values())
    for eid, ra in a.items():
        rb = b[eid]
        assert rb.status == "ok" and ra.policy is None
        assert rb.policy["format"] == "para-bench" and rb.policy["url"] == server.url
        assert (ra.success, ra.steps, ra.eef_trajectory) == (rb.success, rb.steps,
                                                            rb.eef_trajectory)


def test_slow_server_costs_only_its_episode(tmp_path):
    meta = {"server": "stand-in", "policy_format": "para-bench", "requirements": {}}
    slow_call = 1  # episodes need one call each (3 steps of 5 cm pass x = 0.1): the second

    def reply(obs, n):
        return {"actions": np.tile([1.0, 0, 0, 0, 0, 0, -1], (3, 1)), "action_kind": "deltas"}

    with openpi_style_server(reply, meta, delay=lambda n: 6.0 if n == slow_call else 0.0) \
            as (url, received):
        cfg = RunConfig(agent="remote", agent_kwargs={"policy_url": url, "timeout": 2.0},
                        coverage=False, max_steps=40)
        store = run_plan(_plan(3), cfg, tmp_path / "run", env_factory=FakeEnv, progress=False)
    recs = store.records()
    assert [r.status for r in recs] == ["ok", "error", "ok"]
    assert "did not answer within 2 s" in recs[1].error
    assert received[0]["reset"] and received[slow_call]["reset"]  # episodes announce themselves


class ServerKillingEnv(FakeEnv):
    """Kills the policy server (SIGKILL) during the second episode's first chunk, then
    starts a new one on the same port (the run must go on once it is back)."""

    server: ServeProcess | None = None
    episodes = 0

    def reset(self, *, seed=None, options=None):
        type(self).episodes += 1
        return super().reset(seed=seed, options=options)

    def step_chunk(self, chunk):
        cls = type(self)
        if cls.episodes == 2 and cls.server is not None:
            old, cls.server = cls.server, None
            old.kill()
            cls.restarted = ServeProcess(*old.args, port=old.port)  # not waited for
        return super().step_chunk(chunk)


def test_server_killed_mid_run_costs_the_episode_in_flight(tmp_path):
    args = ("--agent", "tests.fake_env:ForwardAgent")
    ServerKillingEnv.server = ServeProcess(*args).wait_ready()
    try:
        cfg = RunConfig(agent="remote", agent_kwargs={"policy_url": ServerKillingEnv.server.url},
                        coverage=False, max_steps=40)
        store = run_plan(_plan(4), cfg, tmp_path / "run", env_factory=ServerKillingEnv,
                         progress=False)
    finally:
        for proc in (ServerKillingEnv.server, getattr(ServerKillingEnv, "restarted", None)):
            if proc is not None:
                proc.stop()
    recs = store.records()
    assert [r.status for r in recs] == ["ok", "error", "ok", "ok"], [r.error for r in recs]
    assert "closed the connection" in recs[1].error


def test_serve_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, needle in [
            (("--agent", "nope"), "unknown agent 'nope'"),
            (("--agent", "para"), "needs --checkpoint"),
            (("--agent", "noop", "--checkpoint", str(tmp_path / "x.pt")), "no such file"),
            (("--agent", "noop", "--port", "70000"), "--port must be in"),
            (("--agent", "noop", "--port", str(port)), "cannot listen on"),
        ]:
            rc = cli_main(["serve", *args])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and needle in err and len(err.splitlines()) == 1, (args, err)


def test_api_key_is_redacted_from_the_recorded_command():
    from para_bench.serving.commands import redact_secrets

    assert redact_secrets(["run", "--api-key", "k1", "--api-key=k2", "--agent", "remote"]) == \
        ["run", "--api-key", "***", "--api-key=***", "--agent", "remote"]


def test_remote_runs_keep_the_served_policy_and_its_training_scenes():
    from para_bench.agents.remote import RemoteAgent
    from para_bench.runner import TrainSceneOverlap, prepare_run

    plan = _plan(2)

    class TrainedOnFirstScene(EpisodeCounterAgent):
        train_scene_ids = [plan[0].scene_id]

    with server_in_thread(TrainedOnFirstScene) as server:
        with pytest.raises(RemotePolicyError, match="now serves"):  # another policy than pinned
            RemoteAgent(server.url, served={"agent": "para", "checkpoint_sha": "0123abcd"})
        cfg = RunConfig(agent="remote", agent_kwargs={"policy_url": server.url})
        with pytest.raises(TrainSceneOverlap):  # the served agent's training scenes
            prepare_run(plan, cfg)
        prepared = prepare_run(plan, RunConfig(agent="remote", allow_train_scenes=True,
                                               agent_kwargs={"policy_url": server.url}))
        assert prepared.train_scene_ids == {plan[0].scene_id}
        prepared.close()
