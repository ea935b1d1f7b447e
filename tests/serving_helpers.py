"""Agents and servers for the policy-serving tests (importable by ``para-bench serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from para_bench.agents.base import BaseAgent
from para_bench.types import ActionChunk

ROOT = Path(__file__).resolve().parents[1]
PARA_BENCH = str(Path(sys.executable).with_name("para-bench"))


class EpisodeCounterAgent(BaseAgent):
    """Stateful: the k-th ``act`` of an episode reports its seed and k in ``debug``.

    ``obs["boom"]`` makes ``act`` raise (with a path in the message, which must not reach
    the client as a traceback).
    """

    def reset(self, task: dict, seed: int) -> None:
        super().reset(task, seed)
        self.seed, self.calls, self.instruction = seed, 0, task["instruction"]

    def act(self, obs: dict, info: dict) -> ActionChunk:
        if "boom" in obs:
            raise RuntimeError("exploded")
        self.calls += 1
        chunk = ActionChunk.from_deltas(np.tile([0.1, 0, 0, 0, 0, 0, -1.0], (2, 1)))
        chunk.debug.update(seed=self.seed, calls=self.calls,
                           eef=np.asarray(obs["eef_pos"], dtype=np.float64))
        return chunk


@contextlib.contextmanager
def server_in_thread(make_agent: Callable[[], Any], **kwargs: Any) -> Iterator[Any]:
    """A :class:`PolicyServer` on a free loopback port in a background thread."""
    from para_bench.serving.batching import InferenceEngine
    from para_bench.serving.server import PolicyServer, server_metadata

    engine = InferenceEngine(make_agent)
    server = PolicyServer(engine, server_metadata(engine.prototype, "test", None,
                                                  kwargs.get("max_batch", 16)),
                          port=0, **kwargs)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve(lambda h, p: ready.set())),
        daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    server.url = f"ws://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(10)
        loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``para-bench serve`` as a subprocess (its own session); ``url`` once it listens."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.args, self.port = args, (port if port is not None else free_port())
        env = dict(os.environ, PYTHONPATH=str(ROOT), MUJOCO_GL="egl")
        self.proc = subprocess.Popen(
            [PARA_BENCH, "serve", *args, "--port", str(self.port)], cwd=ROOT, env=env,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.log: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = f"ws://127.0.0.1:{self.port}"

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            if re.search(r"serving .* on ws://", line):
                self._ready.set()

    def wait_ready(self, timeout: float = 120) -> ServeProcess:
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("para-bench serve did not start:\n" + "".join(self.log))
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies without closing anything."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> str:
        """SIGTERM, wait; returns the server's log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(10)
        return "".join(self.log)


@contextlib.contextmanager
def openpi_style_server(reply: Callable[[dict, int], dict], metadata: dict,
                        delay: Callable[[int], float] = lambda n: 0.0) -> Iterator[tuple]:
    """A minimal server of openpi's protocol written with ``openpi_client.msgpack_numpy``
    (code nobody here wrote): metadata on connect, ``reply(obs, n)`` to the n-th observation
    (after ``delay(n)`` seconds, without blocking other connections). Yields ``(url,
    received observations)``."""
    from openpi_client import msgpack_numpy
    from websockets.asyncio.server import serve

    received: list[dict] = []

    async def handler(ws: Any) -> None:
        await ws.send(msgpack_numpy.packb(metadata))
        async for frame in ws:
            obs = msgpack_numpy.unpackb(frame)
            n = len(received)
            received.append(obs)
            await asyncio.sleep(delay(n))
            await ws.send(msgpack_numpy.packb(reply(obs, n)))

    ready, stop = threading.Event(), None
    port: list[int] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield f"ws://127.0.0.1:{port[0]}", received
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
