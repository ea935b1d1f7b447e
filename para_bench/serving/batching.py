"""Serving many connections with one model: one agent per connection, batched forward passes.

Episode state (a model agent's frame history and episode-start EEF, an oracle's plan, an
RNG) lives in the agent, so every connection gets its own agent: agents that can
``spawn()`` (the model agents) share the loaded model with the first one; others are
built afresh per connection. Sharing one stateful agent between connections is how a
served policy silently scores 0% (lerobot #4327).

:class:`InferenceEngine` answers a batch of requests from several connections at once, in
one thread (the only thread that touches agents and the model): model agents that share a
model are stacked into one ``model.predict`` call (``prepare`` -> stack -> predict -> split
-> ``finish``); agents without that path are called one by one. A failing request fails
alone. :class:`Batcher` gathers the batch on the server's event loop: the first request,
then whatever arrives within ``max_wait_ms`` (up to ``max_batch``), without waiting when
every open connection already has a request in it.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from para_bench.errors import describe
from para_bench.serving.para_format import encode_chunk
from para_bench.types import as_action_chunk

log = logging.getLogger("para_bench.serve")


@dataclass
class Session:
    """One connection: its agent and whether an episode has started on it."""

    id: int
    agent: Any
    started: bool = False


@dataclass
class Request:
    """One observation from one connection, and (once answered) its reply or error."""

    session: Session
    obs: dict[str, np.ndarray]
    info: dict[str, Any]
    episode: dict[str, Any]
    reset: bool
    reply: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Stats:
    """What the server did: batch sizes and inference seconds per batch."""

    batch_sizes: list[int] = field(default_factory=list)
    infer_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """One line: requests, batches, batch sizes, inference time per batch."""
        if not self.batch_sizes:
            return "no requests served"
        ms = sorted(1000 * t for t in self.infer_s)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        return (f"{sum(self.batch_sizes)} requests in {len(self.batch_sizes)} batches "
                f"(batch size mean {statistics.fmean(self.batch_sizes):.2f}, max "
                f"{max(self.batch_sizes)}); inference per batch median "
                f"{statistics.median(ms):.1f} ms, p95 {p95:.1f} ms")


class InferenceEngine:
    """Agents for connections, and batched answers for their requests.

    Args:
        make_agent: builds a new agent (called once up front, for the metadata and as the
            model's owner, and per connection for agents that cannot ``spawn``).
    """

    def __init__(self, make_agent: Callable[[], Any]) -> None:
        self._make_agent = make_agent
        self.prototype = make_agent()
        self.stats = Stats()

    def new_agent(self) -> Any:
        """An agent for a new connection (own episode state, shared model if it can)."""
        if hasattr(self.prototype, "spawn"):
            return self.prototype.spawn()
        return self._make_agent()

    def run_batch(self, requests: list[Request]) -> list[Request]:
        """Answers every request (``reply`` or ``error``); returns them."""
        t0 = time.perf_counter()
        stacked: dict[int, list[Request]] = {}
        for req in requests:
            if not self._start_episode(req):
                continue
            agent = req.session.agent
            if _batchable(agent):
                stacked.setdefault(id(agent.model), []).append(req)
            else:
                self._guard(req, "agent.act", lambda r=req: r.session.agent.act(r.obs, r.info))
        for group in stacked.values():
            self._run_stacked(group)
        self.stats.batch_sizes.append(len(requests))
        self.stats.infer_s.append(time.perf_counter() - t0)
        timing = {"infer_ms": 1000 * self.stats.infer_s[-1], "batch_size": len(requests)}
        for req in requests:
            if req.reply is not None:
                req.reply["server_timing"] = dict(timing)
        return requests

    def _start_episode(self, req: Request) -> bool:
        session = req.session
        if session.started and not req.reset:
            return True
        ep = req.episode
        log.info("conn %d: episode start (task %r, seed %d)", session.id, ep["task"], ep["seed"])
        try:
            session.agent.reset({"task": ep["task"], "instruction": ep["instruction"]},
                                ep["seed"])
        except Exception as e:  # noqa: BLE001 - the agent's fault: this request fails
            self._fail(req, "agent.reset", e)
            return False
        session.started = True
        return True

    def _run_stacked(self, group: list[Request]) -> None:
        """``prepare`` each, one ``model.predict`` over the stack, ``finish`` each."""
        import torch

        ready: list[tuple[Request, dict]] = []
        for req in group:
            try:
                ready.append((req, req.session.agent.prepare(req.obs)))
            except Exception as e:  # noqa: BLE001
                self._fail(req, "agent.act", e)
        if not ready:
            return
        model = ready[0][0].session.agent.model
        try:
            with torch.no_grad():
                batch = {k: torch.cat([b[k] for _, b in ready]) for k in ready[0][1]}
                pred = model.predict(batch)
            preds = [{k: v[i:i + 1] for k, v in pred.items()} for i in range(len(ready))]
        except Exception:  # noqa: BLE001 - find the culprit: predict one by one
            preds = []
            for req, b in ready:
                try:
                    with torch.no_grad():
                        preds.append(model.predict(b))
                except Exception as e:  # noqa: BLE001
                    preds.append(None)
                    self._fail(req, "agent.act", e)
        for (req, _), p in zip(ready, preds, strict=True):
            if p is not None:
                self._guard(req, "agent.act",
                            lambda r=req, p=p: r.session.agent.finish(r.obs, p))

    def _guard(self, req: Request, what: str, call: Callable[[], Any]) -> None:
        try:
            req.reply = encode_chunk(as_action_chunk(call()))
        except Exception as e:  # noqa: BLE001
            self._fail(req, what, e)

    @staticmethod
    def _fail(req: Request, what: str, e: BaseException) -> None:
        req.error = f"{what} raised {describe(e)}"[:300]
        log.warning("conn %d: %s\n%s", req.session.id, req.error,
                    "".join(traceback.format_exception(e)).rstrip())


def _batchable(agent: Any) -> bool:
    return all(hasattr(agent, a) for a in ("prepare", "finish", "model"))


class Batcher:
    """Gathers requests from all connections into batches for one inference thread.

    Args:
        engine: answers batches.
        max_batch: most requests per batch.
        max_wait_s: how long a batch waits for more requests after its first.
        open_connections: how many connections are open now (a batch holding a request
            from each of them waits no longer).
    """

    def __init__(self, engine: InferenceEngine, max_batch: int, max_wait_s: float,
                 open_connections: Callable[[], int]) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.open_connections = open_connections
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._queue: asyncio.Queue | None = None

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs ``fn`` in the inference thread (e.g. building an agent)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def submit(self, req: Request) -> Request:
        """Queues a request and returns it answered."""
        fut = asyncio.get_running_loop().create_future()
        self._queue_for_loop().put_nowait((req, fut))
        return await fut

    def _queue_for_loop(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    async def run(self) -> None:
        """The batching loop (runs until cancelled)."""
        loop = asyncio.get_running_loop()
        queue = self._queue_for_loop()
        while True:
            items = [await queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(items) < self.max_batch:
                if not queue.empty():
                    items.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if len(items) >= self.open_connections() or remaining <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            try:
                await self.call(self.engine.run_batch, [req for req, _ in items])
            except Exception as e:  # noqa: BLE001 - a bug here must not hang every client
                log.exception("inference batch failed")
                for req, _ in items:
                    if req.reply is None:
                        req.error = f"server error: {describe(e)}"[:300]
            for req, fut in items:
                if not fut.done():
                    fut.set_result(req)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
