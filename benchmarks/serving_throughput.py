"""A model agent in-process vs behind ``para-bench serve`` (+ ``--agent remote``), one run.

Part 1, episodes per hour: the same plan (``in_dist`` test, ``libero_spatial/0``, the
first ``--episodes`` init states, ``--max-steps``, ``--no-coverage``) through the real CLI,
(a) in-process with 1 and 2 workers, (b) against a ``para-bench serve`` process with 1 and 2
workers (a fresh server per setting; its own summary line gives the batch sizes and the
inference time per batch). Episodes per hour count the run command's wall time (interpreter
start, simulator builds, worker spawns, the server check), not the server's start-up.

Part 2, the wire's cost per call: ``act`` on the same 128 px observations, in-process and
through a ``para-bench serve`` process on loopback (``RemoteAgent``: encode, send, server
decode, batcher, forward, encode, receive, decode), interleaved call by call, median and
p95 over ``--calls`` calls of each, of their paired difference, and of the remote call minus
the server's own inference time (``server_timing.infer_ms``: what the wire and the event
loops add); and, for the wire alone, round trips of the same observations to a served
``noop`` agent.

The model: ``--checkpoint`` (any trained para-bench checkpoint), else ``--agent``'s default
architecture trained here for ``--train-steps`` steps on ``--demos`` oracle demos of the
``in_dist`` train split (the cost of a call does not depend on how well it is trained).

Usage: ``python benchmarks/serving_throughput.py [--agent para] [--checkpoint C]
[--demos 2] [--train-steps 300] [--episodes 8] [--max-steps 120] [--calls 200]``. Prints
tables and writes ``benchmarks/results/serving_throughput.json``. Run it on a quiet
machine; on a shared one, read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

SUITE, SPLIT, TASK = "in_dist", "test", "libero_spatial/0"


def make_checkpoint(args: argparse.Namespace, folder: Path) -> str:
    """A small ``args.agent`` policy trained here: ``--demos`` oracle demos of the
    ``in_dist`` train split (other scenes than the test plan's), ``--train-steps`` steps.
    Untrained weights would predict targets outside the workspace (an agent error that ends
    the episode at once), so even the cost benchmark needs a policy that moves sensibly."""
    demos, ckpt = folder / "demos.hdf5", folder / f"{args.agent}.pt"
    for cmd in (["collect", "--suite", SUITE, "--split", "train", "--tasks", TASK,
                 "--episodes", str(args.demos), "--out", str(demos), "--quiet"],
                ["train", "--agent", args.agent, "--data", str(demos), "--out", str(ckpt),
                 "--steps", str(args.train_steps), "--threads", "1", "--quiet"]):
        proc = subprocess.run([sys.executable, "-m", "para_bench.cli", *cmd],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()[-2000:]}")
    return str(ckpt)


class Server:
    """``para-bench serve --agent A [--checkpoint C]`` on a free loopback port."""

    def __init__(self, agent: str, ckpt: str | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        self.log = Path(tempfile.mkstemp(prefix="serve_", suffix=".log")[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "para_bench.cli", "serve", "--agent", agent,
             *(["--checkpoint", ckpt] if ckpt else []), "--port", str(port)],
            stderr=self.log.open("w"), start_new_session=True)
        deadline = time.monotonic() + 120
        while "serving" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"para-bench serve did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> str:
        """SIGTERM; returns the server's log (with its closing summary line)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        text = self.log.read_text()
        self.log.unlink()
        return text


def run_setting(agent_args: list[str], workers: int, args: argparse.Namespace,
                out: Path) -> dict:
    """One ``para-bench run`` of the plan; wall time and records."""
    cmd = [sys.executable, "-m", "para_bench.cli", "run", *agent_args, "--suite", SUITE,
           "--split", SPLIT, "--tasks", TASK, "--episodes", str(args.episodes),
           "--max-steps", str(args.max_steps), "--no-coverage", "--quiet",
           "--workers", str(workers), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(agent_args)} --workers {workers} failed: "
                           f"{proc.stderr.strip()[-2000:]}")
    records = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    return {"workers": workers, "episodes": len(records), "wall_s": wall,
            "episodes_per_hour": 3600 * len(records) / wall,
            "errors": sum(r["status"] == "error" for r in records),
            "outcomes": {r["episode_id"]: (r["success"], r["steps"], r["eef_trajectory"])
                         for r in records}}


def server_summary(log: str) -> dict:
    """Batch sizes and inference times from the server's closing ``served:`` line."""
    m = re.search(r"(\d+) requests in (\d+) batches \(batch size mean ([\d.]+), max (\d+)\); "
                  r"inference per batch median ([\d.]+) ms, p95 ([\d.]+) ms", log)
    if not m:
        return {}
    keys = ("requests", "batches", "batch_mean", "batch_max", "infer_median_ms", "infer_p95_ms")
    return {k: float(v) for k, v in zip(keys, m.groups(), strict=True)}


def throughput(args: argparse.Namespace, ckpt: str, tmp: Path) -> list[dict]:
    rows = []
    for workers in (1, 2):
        row = run_setting(["--agent", args.agent, "--checkpoint", ckpt], workers, args,
                          tmp / f"local{workers}")
        rows.append({"setting": "in-process", **row})
    for workers in (1, 2):
        server = Server(args.agent, ckpt)
        try:
            row = run_setting(["--agent", "remote", "--policy-url", server.url], workers, args,
                              tmp / f"remote{workers}")
        finally:
            log = server.stop()
        rows.append({"setting": "serve + remote", **row, "server": server_summary(log)})
    base = rows[0]
    for row in rows:
        row["vs_in_process_1"] = row["episodes_per_hour"] / base["episodes_per_hour"]
        row["records_equal_in_process_1"] = row["outcomes"] == base["outcomes"]
    return rows


def synthetic_obs(rng: np.random.Generator, size: int) -> dict:
    from para_bench.envs.camera import intrinsics_from_fovy, look_at

    return {"rgb": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
            "intrinsics": intrinsics_from_fovy(45.0, size, size),
            "extrinsics": look_at([1.0, 0.0, 1.6], [0.0, 0.0, 0.9]),
            "eef_pos": np.array([0.0, 0.0, 1.1]) + rng.normal(0, 0.02, 3),
            "eef_quat_xyzw": np.array([1.0, 0.0, 0.0, 0.0]),
            "gripper_qpos": np.array([0.04, -0.04]), "joint_pos": np.zeros(7)}


def _stats(seconds) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def wire_latency(args: argparse.Namespace, ckpt: str) -> dict:
    """Interleaved calls on the same observations: in-process ``act``, then the same through
    the server (client-side wall time, and the server's own inference time per batch)."""
    import torch

    from para_bench.agents.remote import RemoteAgent
    from para_bench.registry import make_agent
    from para_bench.serving import codec, para_format

    torch.set_num_threads(1)
    local = make_agent(args.agent, checkpoint=ckpt)
    size = local.requirements.image_size
    rng = np.random.default_rng(0)
    observations = [synthetic_obs(rng, size) for _ in range(args.calls)]
    task = {"task": TASK, "instruction": "pick up the black bowl"}
    info = {"instruction": task["instruction"], "task": TASK, "success": False, "steps": 0}
    rows = {"in_process": [], "remote": [], "server_infer": []}
    same = True
    server = Server(args.agent, ckpt)
    try:
        remote = RemoteAgent(server.url)
        client_infer = remote.client.infer
        replies: list[dict] = []
        remote.client.infer = lambda msg: replies.append(client_infer(msg)) or replies[-1]
        for agent in (local, remote):
            agent.reset(task, 0)
        for i, obs in enumerate([*observations[:5], *observations]):  # 5 warm-up calls
            t0 = time.perf_counter()
            a = local.act(obs, info)
            t1 = time.perf_counter()
            b = remote.act(obs, info)
            t2 = time.perf_counter()
            if i >= 5:
                rows["in_process"].append(t1 - t0)
                rows["remote"].append(t2 - t1)
                rows["server_infer"].append(replies[-1]["server_timing"]["infer_ms"] / 1000)
                same &= bool(np.array_equal(a.targets, b.targets))
        remote.close()
    finally:
        server.stop()
    remote_s, local_s = np.asarray(rows["remote"]), np.asarray(rows["in_process"])
    request = codec.packb(para_format.encode_observation(observations[0], info, None))
    reply = codec.packb(para_format.encode_chunk(local.act(observations[0], info)))
    return {"calls": args.calls, "image_size": size,
            **{k: _stats(v) for k, v in rows.items()},
            "remote_minus_in_process": _stats(remote_s - local_s),
            "remote_minus_server_infer": _stats(remote_s - np.asarray(rows["server_infer"])),
            "request_bytes": len(request), "reply_bytes": len(reply), "same_chunks": same}


def echo_latency(args: argparse.Namespace, size: int) -> dict:
    """The wire alone: round trips of the same observations to a ``noop`` agent."""
    from para_bench.serving import para_format
    from para_bench.serving.client import PolicyClient

    rng = np.random.default_rng(0)
    observations = [synthetic_obs(rng, size) for _ in range(args.calls)]
    server = Server("noop", None)
    try:
        client = PolicyClient(server.url)
        client.connect()
        times = []
        for i, obs in enumerate(observations):
            msg = para_format.encode_observation(obs, {"instruction": ""}, None)
            t0 = time.perf_counter()
            client.infer(msg)
            if i >= 5:
                times.append(time.perf_counter() - t0)
        client.close()
    finally:
        server.stop()
    return _stats(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", default="para")
    ap.add_argument("--checkpoint", default=None,
                    help="default: train one here (--demos, --train-steps)")
    ap.add_argument("--demos", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serving_throughput_") as tmp:
        ckpt = args.checkpoint or make_checkpoint(args, Path(tmp))
        latency = wire_latency(args, ckpt)
        latency["noop_round_trip"] = echo_latency(args, latency["image_size"])
        rows = [] if args.skip_throughput else throughput(args, ckpt, Path(tmp))

    print(f"\nwire latency per act call ({latency['calls']} calls, {args.agent}, "
          f"{latency['image_size']} px; request {latency['request_bytes']} B, reply "
          f"{latency['reply_bytes']} B; same chunks: {latency['same_chunks']})")
    for name in ("in_process", "remote", "server_infer", "remote_minus_in_process",
                 "remote_minus_server_infer", "noop_round_trip"):
        s = latency[name]
        print(f"  {name:<25} median {s['median_ms']:7.2f} ms   p95 {s['p95_ms']:7.2f} ms")
    if rows:
        print(f"\n{'setting':<15} {'workers':>7} {'wall s':>7} {'ep/hour':>8} {'vs (a)':>7} "
              f"{'errors':>6} {'equal':>6}  server batches")
        for r in rows:
            s = r.get("server") or {}
            batches = (f"mean {s['batch_mean']:.2f}, max {s['batch_max']:.0f}; infer median "
                       f"{s['infer_median_ms']:.1f} ms, p95 {s['infer_p95_ms']:.1f} ms"
                       if s else "")
            print(f"{r['setting']:<15} {r['workers']:>7} {r['wall_s']:7.1f} "
                  f"{r['episodes_per_hour']:8.0f} {r['vs_in_process_1']:6.2f}x {r['errors']:>6} "
                  f"{str(r['records_equal_in_process_1']):>6}  {batches}")
    for r in rows:
        r.pop("outcomes")
    out = Path(__file__).parent / "results" / "serving_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "agent": args.agent,
        "checkpoint": args.checkpoint or f"trained here: {args.demos} demos, "
                                          f"{args.train_steps} steps",
        "suite": SUITE, "task": TASK, "episodes": args.episodes, "max_steps": args.max_steps,
        "cpu_count": os.cpu_count(), "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(), "wire_latency": latency, "throughput": rows,
        "date": time.strftime("%Y-%m-%d"),
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
