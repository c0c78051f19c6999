"""The `switchboard` command: `serve` runs the router; `health` asks one; `token` mints a bearer
token; `demo` routes a simulated center, live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from router import mint, probe
from router.api.authn import AuthConfig
from router.api.workers import HELLO_TIMEOUT_S_DEFAULT
from router.envconfig import EnvConfigError, apply_env_defaults
from router.privacy.keyring import load_keyring
from router.server import ServerConfig, start_server
from router.service import SNAPSHOT_EVERY_COMMANDS_DEFAULT
from router.store.lease import LEASE_TTL_S_DEFAULT
from router.store.protocols import EventRetention
from router.tls import TlsConfig


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
        "--keyring-file", type=Path,
        help="the keyring (JSON) whose keys protect customers' personal data; "
        "SWITCHBOARD_KEYRING may hold the JSON itself (default: one kept in --data-dir for the "
        "private Redis; an external Redis needs one)",
    )  # fmt: skip
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
    serve.add_argument(
        "--hello-timeout", type=float, default=HELLO_TIMEOUT_S_DEFAULT, metavar="S",
        help="seconds a Connect stream may take to send its hello before it is ended "
        f"(default {HELLO_TIMEOUT_S_DEFAULT:g})",
    )  # fmt: skip
    serve.add_argument("--log-level", default="INFO", type=_log_level)
    _security_arguments(serve)
    return serve


def _security_arguments(serve: argparse.ArgumentParser) -> None:
    tls = serve.add_argument_group("TLS")
    tls.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="PEM certificate chain: serve gRPC over TLS (reloaded when it changes)",
    )
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="PEM CA certificates: require client certificates they signed (mTLS)",
    )
    tls.add_argument(
        "--metrics-tls",
        action="store_true",
        help="serve /metrics over HTTPS too, with the same certificate (and client CA)",
    )
    auth = serve.add_argument_group("authentication (bearer JWT in the authorization metadata)")
    auth.add_argument(
        "--auth-hs256-secret-file",
        type=Path,
        metavar="FILE",
        help="verify HS256 tokens with the secret in FILE (32 bytes or more)",
    )
    auth.add_argument(
        "--auth-jwks-file",
        type=Path,
        metavar="FILE",
        help="verify RS256/ES256 tokens with the public keys of this JWKS (by kid)",
    )
    auth.add_argument("--auth-issuer", default="", help="require this iss claim")
    auth.add_argument("--auth-audience", default="", help="require this aud claim")
    serve.add_argument(
        "--reflection",
        choices=("on", "off"),
        default="on",
        help="serve gRPC reflection (with authentication on: to any valid token)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond loopback with neither TLS nor authentication",
    )


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


def _token_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser(
        "token",
        help="mint a bearer token (development and tests)",
        description=mint.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mint.build_parser(token)


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
        tls=_tls_config(args),
        metrics_tls=args.metrics_tls,
        auth=AuthConfig(
            hs256_secret_file=args.auth_hs256_secret_file,
            jwks_file=args.auth_jwks_file,
            issuer=args.auth_issuer,
            audience=args.auth_audience,
        ),
        reflection=args.reflection == "on",
        insecure=args.insecure,
        event_retention=EventRetention(
            round(args.event_retention * 1000), args.event_retention_batches
        ),
        hello_timeout_s=args.hello_timeout,
        keyring=load_keyring(args.keyring_file),
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


def _tls_config(args: argparse.Namespace) -> TlsConfig | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("give both --tls-cert and --tls-key")
    return TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve = _serve_parser(subparsers)
    _health_parser(subparsers)
    _token_parser(subparsers)
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
    if args.command == "token":
        return mint.run(args)
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
