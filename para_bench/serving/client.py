"""A synchronous client of openpi's websocket policy protocol.

On connect the server sends a metadata dict; then each :meth:`PolicyClient.infer` sends one
observation dict and receives one dict (with ``actions``). An error on the server arrives
as a text frame followed by close code 1011; the API key travels as openpi's client sends
it, ``Authorization: Api-Key <key>``.

Every failure is a :class:`RemotePolicyError` with a one-line reason: no server at the URL,
a refused key, a server that does not answer within ``timeout`` seconds, a connection that
closed, a server-side error. After a failure the connection is dropped; :meth:`connect`
opens a new one (the remote agent does at the next episode's start: never mid-episode,
as the server's episode state went with the old connection).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import urlparse

from para_bench.serving import codec

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class RemotePolicyError(RuntimeError):
    """The remote policy could not answer (one-line reason)."""


def check_url(url: str) -> str:
    """Returns ``url`` if it is a ``ws://`` or ``wss://`` URL with a host; else ValueError."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ValueError(f"--policy-url must look like ws://host:port, got {url!r}")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueError(f"--policy-url {url!r}: {e}") from None
    return url


class PolicyClient:
    """One connection to a policy server.

    Args:
        url: ``ws://host:port`` (``wss://`` for TLS).
        api_key: sent as ``Authorization: Api-Key <key>`` when given.
        timeout: seconds to wait for each answer (a slow server fails the call).
        connect_timeout: seconds to keep trying to connect (a restarting server).
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0,
                 connect_timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.api_key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.metadata: dict[str, Any] = {}
        self._ws: Any = None
        self._stack: contextlib.ExitStack | None = None

    @property
    def connected(self) -> bool:
        """Whether the connection is open (as far as this side knows)."""
        from websockets.protocol import State

        return self._ws is not None and self._ws.protocol.state is State.OPEN

    def connect(self, retry: bool = False) -> dict[str, Any]:
        """Opens the connection and reads the server's metadata (returned).

        Args:
            retry: keep trying for ``connect_timeout`` seconds while nothing listens.

        Raises:
            RemotePolicyError: no server, refused key, no metadata.
        """
        self.close()
        deadline = time.monotonic() + (self.connect_timeout if retry else 0.0)
        while True:
            try:
                return self._connect_once()
            except RemotePolicyError as e:
                if not (e.__cause__ is not None and isinstance(e.__cause__, OSError)) \
                        or time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)

    def _connect_once(self) -> dict[str, Any]:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            stack = contextlib.ExitStack()  # websockets >= 17.1: connections are contexts
            ws = stack.enter_context(connect(
                self.url, additional_headers=headers, compression=None,
                max_size=MAX_MESSAGE_BYTES, open_timeout=max(self.timeout, 1.0)))
        except InvalidStatus as e:
            status = e.response.status_code
            why = {401: "refused the API key", 403: "refused the API key"}.get(
                status, "refused the connection")
            raise RemotePolicyError(f"policy server {self.url} {why} (HTTP {status})") from None
        except (OSError, TimeoutError) as e:
            raise RemotePolicyError(f"no policy server at {self.url} ({_reason(e)})") from e
        except InvalidHandshake as e:
            raise RemotePolicyError(f"{self.url} is not a websocket policy server "
                                    f"({_reason(e)})") from None
        self._ws, self._stack = ws, stack
        try:
            meta = self._receive()
        except RemotePolicyError:
            self.close()
            raise
        if not isinstance(meta, dict):
            self.close()
            raise RemotePolicyError(f"policy server {self.url} sent no metadata dict")
        self.metadata = meta
        return meta

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Sends one observation dict and returns the server's answer.

        Raises:
            RemotePolicyError: not connected (call :meth:`connect`: a lost connection is
                not reopened here, the server's episode state went with it), timeout,
                server error, closed connection, an answer that is not a dict.
        """
        from websockets.exceptions import ConnectionClosed

        if self._ws is None:  # never silently mid-episode: the server's episode state is gone
            raise RemotePolicyError(f"not connected to the policy server {self.url}")
        try:
            self._ws.send(codec.packb(obs))
        except ConnectionClosed as e:
            self.close()
            raise RemotePolicyError(f"policy server {self.url} closed the connection "
                                    f"({_close_reason(e)})") from None
        answer = self._receive()
        if not isinstance(answer, dict):
            self.close()
            raise RemotePolicyError(f"policy server {self.url} answered a "
                                    f"{type(answer).__name__}, not a dict")
        return answer

    def _receive(self) -> Any:
        from websockets.exceptions import ConnectionClosed

        try:
            frame = self._ws.recv(timeout=self.timeout)
        except TimeoutError:
            self.close()
            raise RemotePolicyError(f"policy server {self.url} did not answer within "
                                    f"{self.timeout:g} s") from None
        except ConnectionClosed as e:
            self.close()
            raise RemotePolicyError(f"policy server {self.url} closed the connection "
                                    f"({_close_reason(e)})") from None
        if isinstance(frame, str):  # openpi: an error is a text frame, then close 1011
            self.close()
            line = frame.strip().splitlines()[-1] if frame.strip() else "no reason given"
            raise RemotePolicyError(f"policy server error: {line[:300]}")
        try:
            return codec.unpackb(frame)
        except codec.WireError as e:
            self.close()
            raise RemotePolicyError(f"policy server {self.url} sent a malformed frame "
                                    f"({e})") from None

    def close(self) -> None:
        """Closes the connection (idempotent)."""
        stack, self._ws, self._stack = self._stack, None, None
        if stack is not None:
            try:
                stack.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass


def check_server(url: str, api_key: str | None = None, timeout: float = 10.0) -> dict:
    """Connects once, reads the metadata, disconnects: is a policy server there?

    Raises:
        ValueError: a malformed URL.
        RemotePolicyError: no server, a refused key, no metadata.
    """
    client = PolicyClient(url, api_key=api_key, timeout=timeout)
    try:
        return client.connect()
    finally:
        client.close()


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _close_reason(e: Any) -> str:
    rcvd = getattr(e, "rcvd", None)
    if rcvd is None:
        return "no close frame: the server went away"
    return f"code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")
