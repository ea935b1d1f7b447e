"""``para-bench serve``: any para-bench agent behind openpi's websocket policy protocol.

The protocol, as openpi's ``WebsocketPolicyServer`` speaks it:

* on connect the server sends a metadata dict (for para-bench: the agent, its checkpoint's
  sha256 prefix, its :class:`~para_bench.agents.base.AgentRequirements`, so a client
  renders what the agent needs, and the scenes it was trained on, so a client refuses to
  evaluate on them);
* the client sends observation dicts (:mod:`~para_bench.serving.para_format`), the server
  answers each with a dict holding ``actions``;
* an error is one text frame (one line, no traceback: details go to the server log), then
  close code 1011; the server stays up for every other connection;
* ``GET /healthz`` answers 200 once the agent is loaded (the port opens only then).

Security: binds 127.0.0.1 unless told otherwise; with an API key, a handshake without
``Authorization: Api-Key <key>`` (openpi's client header; a bare ``Api-Key: <key>`` header is
accepted too) is refused with HTTP 401. Messages are capped at ``max_message_bytes``.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import itertools
import logging
import signal
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from para_bench.serving import codec
from para_bench.serving.batching import Batcher, InferenceEngine, Request, Session
from para_bench.serving.para_format import decode_observation

log = logging.getLogger("para_bench.serve")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
PROTOCOL = "openpi-websocket (msgpack, __ndarray__ maps)"


def server_metadata(agent: Any, name: str, checkpoint_sha: str | None,
                    max_batch: int) -> dict[str, Any]:
    """The dict sent on connect."""
    from para_bench.agents.base import AgentRequirements

    req = getattr(agent, "requirements", AgentRequirements())
    ids = getattr(agent, "train_scene_ids", None)
    return {"server": "para-bench", "protocol": PROTOCOL, "policy_format": "para-bench",
            "agent": name, "checkpoint_sha": checkpoint_sha, "requirements": asdict(req),
            "train_scene_ids": list(ids) if ids is not None else None,
            "max_batch": max_batch}


class PolicyServer:
    """Serves one agent (an agent per connection) with batched inference.

    Args:
        engine: the agents and their batched inference.
        metadata: sent to every client on connect.
        host, port: where to listen (port 0: any free port).
        max_batch: most requests per forward pass.
        max_wait_ms: how long a batch waits for more requests.
        api_key: required from clients when set.
    """

    def __init__(self, engine: InferenceEngine, metadata: dict[str, Any],
                 host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16,
                 max_wait_ms: float = 5.0, api_key: str | None = None) -> None:
        self.engine, self.metadata = engine, metadata
        self.host, self.port = host, port
        self.api_key = api_key
        self._open = 0
        self._ids = itertools.count(1)
        self.batcher = Batcher(engine, max_batch, max_wait_ms / 1000.0, lambda: self._open)
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ HTTP side
    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key and not self._key_ok(request.headers):
            log.warning("refused %s: missing or wrong API key", connection.remote_address)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    def _key_ok(self, headers: Any) -> bool:
        given = headers.get("Authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "api-key":
            key = headers.get("Api-Key", "")
        return bool(key) and hmac.compare_digest(key.strip().encode(), self.api_key.encode())

    # ------------------------------------------------------------------ websocket side
    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        sid = next(self._ids)
        try:
            agent = await self.batcher.call(self.engine.new_agent)
        except Exception as e:  # noqa: BLE001
            log.exception("conn %d: could not build an agent", sid)
            await self._fail(ws, sid, f"server could not build an agent ({type(e).__name__})")
            return
        session = Session(sid, agent)
        self._open += 1
        log.info("conn %d: opened from %s", sid, ws.remote_address)
        try:
            await ws.send(codec.packb(self.metadata))
            async for frame in ws:
                try:
                    obs, info, episode, reset = _parse(frame)
                except ValueError as e:
                    await self._fail(ws, sid, f"malformed observation: {e}"[:300])
                    return
                req = await self.batcher.submit(Request(session, obs, info, episode, reset))
                if req.error is not None:
                    await self._fail(ws, sid, req.error)
                    return
                await ws.send(codec.packb(req.reply))
        except ConnectionClosed:
            pass
        finally:
            self._open -= 1
            log.info("conn %d: closed", sid)
            try:
                await self.batcher.call(agent.close)
            except Exception:  # noqa: BLE001 - a failing close must not hurt the server
                log.exception("conn %d: agent.close failed", sid)

    @staticmethod
    async def _fail(ws: Any, sid: int, line: str) -> None:
        """openpi's error convention: one text frame, then close code 1011."""
        from websockets.exceptions import ConnectionClosed
        from websockets.frames import CloseCode

        log.warning("conn %d: error sent to the client: %s", sid, line)
        try:
            await ws.send(line)
            await ws.close(CloseCode.INTERNAL_ERROR, "policy error")
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ lifecycle
    async def serve(self, ready: Callable[[str, int], None] | None = None) -> None:
        """Listens until :meth:`stop` (or SIGINT / SIGTERM); calls ``ready(host, port)``."""
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (ValueError, RuntimeError):  # not the main thread (tests)
                pass
        batching = asyncio.create_task(self.batcher.run())
        try:
            async with serve(self._handle, self.host, self.port, compression=None,
                             max_size=MAX_MESSAGE_BYTES,
                             process_request=self._process_request) as server:
                self.port = server.sockets[0].getsockname()[1]
                if ready is not None:
                    ready(self.host, self.port)
                await self._stop.wait()
            log.info("served: %s", self.engine.stats.summary())
        finally:
            batching.cancel()
            self.batcher.close()

    def stop(self) -> None:
        """Asks :meth:`serve` to return (thread-safe only from the server's loop)."""
        if self._stop is not None:
            self._stop.set()


def _parse(frame: Any) -> tuple[dict, dict, dict, bool]:
    """A received frame -> ``(obs, info, episode, reset)``; ValueError if malformed."""
    if isinstance(frame, str):
        raise ValueError("expected a binary msgpack frame, got a text frame")
    return decode_observation(codec.unpackb(frame))  # WireError is a ValueError
