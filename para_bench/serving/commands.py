"""Command-line parts of policy serving: ``para-bench serve`` and ``run --agent remote``.

Kept here so that :mod:`para_bench.cli` only wires them in. Bad input raises ``ValueError``
(one line, exit code 2 through the CLI).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from para_bench.errors import StartupError, describe


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``serve`` subcommand."""
    p = sub.add_parser("serve", help="serve an agent over openpi's websocket policy protocol")
    p.add_argument("--agent", required=True, help="registry name or package.module:factory")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="most requests (from all connections) per forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests after its first")
    p.add_argument("--api-key", default=None,
                   help="require this key from clients (openpi's 'Authorization: Api-Key K'; "
                        "default: the PARA_BENCH_API_KEY environment variable, if set)")
    p.add_argument("--device", default=None, help="model agents: cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="model agents: torch CPU threads")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    """Loads the agent, then serves it until SIGINT / SIGTERM."""
    import asyncio

    from para_bench.evaluation.worker import checkpoint_sha
    from para_bench.registry import AGENTS, make_agent
    from para_bench.serving.batching import InferenceEngine
    from para_bench.serving.server import PolicyServer, server_metadata

    factory = AGENTS.get(args.agent).load()  # unknown agent -> one line listing the choices
    if hasattr(factory, "check_checkpoint"):
        factory.check_checkpoint(args.checkpoint)
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise ValueError(f"checkpoint {args.checkpoint}: no such file")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1 or not args.max_wait_ms >= 0:
        raise ValueError("--max-batch must be >= 1 and --max-wait-ms >= 0")
    kwargs: dict[str, Any] = {}
    for key in ("checkpoint", "device", "threads"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if str(kwargs.get("device", "")).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA device visible to torch")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("para_bench.serve").setLevel(logging.INFO)
    try:
        engine = InferenceEngine(lambda: make_agent(args.agent, **kwargs))
    except Exception as e:  # noqa: BLE001 - any failure to build the agent ends here
        raise StartupError(f"agent {args.agent!r} could not be built: {describe(e)}") from e
    sha = checkpoint_sha(args.checkpoint)
    api_key = args.api_key or os.environ.get("PARA_BENCH_API_KEY") or None
    server = PolicyServer(engine, server_metadata(engine.prototype, args.agent, sha,
                                                  args.max_batch),
                          host=args.host, port=args.port, max_batch=args.max_batch,
                          max_wait_ms=args.max_wait_ms, api_key=api_key)

    def ready(host: str, port: int) -> None:
        key = "API key required" if api_key else "no API key"
        print(f"para-bench: serving {args.agent} on ws://{host}:{port} (max batch "
              f"{args.max_batch}, max wait {args.max_wait_ms:g} ms, {key}); Ctrl-C stops",
              file=sys.stderr, flush=True)

    try:
        asyncio.run(server.serve(ready))
    except OSError as e:  # the port is taken, the host is not ours
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0


def add_remote_arguments(run: argparse.ArgumentParser) -> None:
    """The ``run`` options of ``--agent remote``."""
    from para_bench.agents.remote import POLICY_FORMATS

    g = run.add_argument_group("remote policy (--agent remote)")
    g.add_argument("--policy-url", default=None, help="ws://host:port of the policy server")
    g.add_argument("--api-key", default=None,
                   help="the server's API key (or PARA_BENCH_API_KEY); never written to the "
                        "run folder")
    g.add_argument("--policy-format", choices=POLICY_FORMATS, default="para-bench",
                   help="para-bench: para-bench's observation keys (para-bench serve); "
                        "openpi-libero: openpi's LIBERO example convention")
    g.add_argument("--replan-steps", type=int, default=5,
                   help="openpi-libero: actions executed per query (default 5)")
    g.add_argument("--policy-timeout", type=float, default=60.0,
                   help="seconds to wait for each answer before the episode is an error")


def remote_agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Checks the remote options and the server (before any episode runs); the agent's
    keyword arguments. Empty for other agents.

    Raises:
        ValueError: bad options, or no (usable) server at the URL.
    """
    from para_bench.agents.remote import API_KEY_ENV, requirements_from_metadata, served_policy
    from para_bench.serving.client import RemotePolicyError, check_server, check_url

    if args.agent != "remote":
        if args.policy_url:
            raise ValueError("--policy-url needs --agent remote")
        return {}
    if not args.policy_url:
        raise ValueError("--agent remote needs --policy-url ws://host:port")
    if args.checkpoint:
        raise ValueError("--agent remote takes no --checkpoint: give it to the server "
                         "(para-bench serve --checkpoint ...)")
    check_url(args.policy_url)
    if args.replan_steps < 1 or not args.policy_timeout > 0:
        raise ValueError("--replan-steps must be >= 1 and --policy-timeout positive")
    if args.api_key:
        os.environ[API_KEY_ENV] = args.api_key  # reaches workers, not the manifest
    try:
        meta = check_server(args.policy_url, os.environ.get(API_KEY_ENV),
                            timeout=min(args.policy_timeout, 30.0))
        if args.policy_format == "para-bench":
            requirements_from_metadata(meta, args.policy_url)
    except RemotePolicyError as e:
        raise ValueError(str(e)) from None
    kwargs = {"policy_url": args.policy_url, "policy_format": args.policy_format,
              "replan_steps": args.replan_steps, "timeout": args.policy_timeout}
    if args.policy_format == "para-bench":  # part of the run's identity; checked on reconnect
        kwargs["served"] = served_policy(meta)
    return kwargs


def redact_secrets(argv: list[str]) -> list[str]:
    """``argv`` with the value of ``--api-key`` replaced by ``***`` (for manifests)."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(arg)
        hide = arg == "--api-key"
    return out
