"""The `switchboard` command: `serve` runs the router; `demo` routes a simulated center, live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from router import probe
from router.envconfig import EnvConfigError, apply_env_defaults
from router.server import ServerConfig, start_server
from router.service import SNAPSHOT_EVERY_COMMANDS_DEFAULT
from router.store.lease import LEASE_TTL_S_DEFAULT
from router.store.protocols import EventRetention


def _serve_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    serve = subparsers.add_parser(
        "serve",
        help="run the router (gRPC + Prometheus metrics)",
        description="Every flag may also be set by an environment variable, SWITCHBOARD_ and "
        "its name (--redis-url: SWITCHBOARD_REDIS_URL); a flag wins over its variable.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=50051, help="gRPC port (0: any free port)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="Prometheus /metrics port (0: any free port, -1: off)",
    )
    serve.add_argument(
        "--test-clock",
        action="store_true",
        help="start with a clock that only ClockService.AdvanceTime moves (tests only)",
    )
    serve.add_argument(
        "--redis-url",
        help="the store: redis://, rediss:// (TLS), unix://, or "
        "redis+sentinel://host:port[,host:port]/service (default: a private Redis server with "
        "its data in --data-dir)",
    )
    serve.add_argument(
        "--data-dir", type=Path, default=Path("data"),
        help="folder of the private Redis server's append-only file (default: ./data)",
    )  # fmt: skip
    serve.add_argument(
        "--workspace", default="default", help="namespace of the keys in Redis: sb:{workspace}:..."
    )
    serve.add_argument(
        "--in-memory", action="store_true",
        help="keep the state in memory only, lost when the process ends (tests, benchmarks)",
    )  # fmt: skip
    serve.add_argument(
        "--snapshot-every", type=int, default=SNAPSHOT_EVERY_COMMANDS_DEFAULT, metavar="COMMANDS",
        help="journaled commands between two snapshots (bounds the replay at start)",
    )  # fmt: skip
    serve.add_argument(
        "--lease-ttl", type=float, default=LEASE_TTL_S_DEFAULT, metavar="SECONDS",
        help="leadership lease: a standby takes over within this long after the leader dies",
    )  # fmt: skip
    serve.add_argument(
        "--advertise-address", default="",
        help="the address standbys give clients for this router (default: host:port)",
    )  # fmt: skip
    serve.add_argument(
        "--min-replicas-acked", type=int, default=0, metavar="N",
        help="replicas of the store that must acknowledge each batch (Redis WAIT) before it is "
        "answered (default 0: the primary's own persistence)",
    )  # fmt: skip
    serve.add_argument(
        "--event-retention", type=float, default=EventRetention().age_ms / 1000, metavar="S",
        help="seconds the event feed is kept in the store (default 604800: 7 days)",
    )  # fmt: skip
    serve.add_argument(
        "--event-retention-batches", type=int, default=EventRetention().entries_max, metavar="N",
        help="most journaled batches whose events are kept (default 1000000)",
    )  # fmt: skip
    serve.add_argument("--log-level", default="INFO", type=_log_level)
    return serve


def _log_level(name: str) -> str:
    if not isinstance(logging.getLevelName(name.upper()), int):
        raise argparse.ArgumentTypeError(
            f"unknown logging level {name!r} (DEBUG, INFO, WARNING, ERROR)"
        )
    return name.upper()


def _health_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = subparsers.add_parser(
        "health",
        help="ask a router's gRPC health service: exit 0 when it serves (the container probe)",
        description=probe.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.build_parser(health)


def _top_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from router.top import add_top_arguments

    top = subparsers.add_parser("top", help="a live wallboard of a router's queues and agents")
    add_top_arguments(top)


def _demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from router.demo import add_demo_arguments

    demo = subparsers.add_parser("demo", help="route a simulated contact center, live")
    add_demo_arguments(demo)


async def _serve(args: argparse.Namespace) -> None:
    config = ServerConfig(
        host=args.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        test_clock=args.test_clock,
        durable=not args.in_memory,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
        workspace=args.workspace,
        snapshot_every_commands=args.snapshot_every,
        lease_ttl_s=args.lease_ttl,
        advertise_address=args.advertise_address,
        min_replicas_acked=args.min_replicas_acked,
        event_retention=EventRetention(
            round(args.event_retention * 1000), args.event_retention_batches
        ),
    )
    server = await start_server(config)
    # One line on stdout that scripts and tests wait for.
    print(f"switchboard serving on {server.address} metrics={server.metrics_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Like Redis' BGSAVE: a snapshot now (before maintenance, or to measure one under load).
    loop.add_signal_handler(signal.SIGUSR1, server.service.request_snapshot)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve = _serve_parser(subparsers)
    _health_parser(subparsers)
    _demo_parser(subparsers)
    _top_parser(subparsers)
    args = parser.parse_args(argv)
    if args.command == "serve":  # again, with the SWITCHBOARD_* variables as defaults
        try:
            apply_env_defaults(serve, os.environ)
        except EnvConfigError as error:
            print(f"switchboard serve: {error}", file=sys.stderr)
            return 2
        args = parser.parse_args(argv)
    if args.command == "health":
        return probe.run(args)
    if args.command == "top":
        from router.top import run_top

        with contextlib.suppress(KeyboardInterrupt):
            return run_top(args)
        return 130
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            asyncio.run(_serve(args))
        except (OSError, ValueError) as error:  # a port in use, a bad store URL...
            print(f"switchboard: {error}", file=sys.stderr)
            return 1
        return 0
    from router.demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        return run_demo(args)
    return 130


if __name__ == "__main__":
    sys.exit(main())
