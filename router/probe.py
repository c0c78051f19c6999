"""A health probe for containers: asks a router's `grpc.health.v1` service, exits 0 or 1.

    python -m router.probe            # 0 when the router is SERVING (it leads): readiness
    python -m router.probe --live     # 0 when it answers at all, SERVING or NOT_SERVING (a
                                      # standby is alive): liveness, the image's HEALTHCHECK

It stands in for `grpc_health_probe` (a Go binary that cannot be fetched here), and imports
only grpc and the health stubs, not the router, so that it starts in a fraction of a second.
The address is `--address`, else `SWITCHBOARD_PROBE_ADDRESS`, else 127.0.0.1 and the port the
router was told by `SWITCHBOARD_PORT` (50051 by default): the same environment as the router's.
A router serving TLS is asked over TLS with `--tls-ca` (else `SWITCHBOARD_PROBE_TLS_CA`), the CA
of its certificate, and `--tls-server-name` (else `SWITCHBOARD_PROBE_TLS_SERVER_NAME`), a name
the certificate holds when it does not hold the address's host. Health needs no token.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051
TIMEOUT_S_DEFAULT = 3.0
"""A probe that gets no answer within this long fails (Docker's and Kubernetes' own probe
timeouts are set a little above it)."""

ENV_VARIABLES = (
    "SWITCHBOARD_PROBE_ADDRESS",
    "SWITCHBOARD_PROBE_TLS_CA",
    "SWITCHBOARD_PROBE_TLS_SERVER_NAME",
)
"""The variables the probe reads besides the router's own (SWITCHBOARD_PORT)."""

EXIT_OK = 0
EXIT_FAILED = 1


def default_address(environ: Mapping[str, str]) -> str:
    if environ.get("SWITCHBOARD_PROBE_ADDRESS"):
        return environ["SWITCHBOARD_PROBE_ADDRESS"]
    return f"127.0.0.1:{environ.get('SWITCHBOARD_PORT') or DEFAULT_PORT}"


def check(
    address: str,
    *,
    service: str = "",
    timeout_s: float = TIMEOUT_S_DEFAULT,
    tls_ca: bytes | None = None,
    tls_server_name: str = "",
) -> str:
    """The status name the router's health service gives `service` ("" = the whole server),
    e.g. "SERVING" or "NOT_SERVING", over TLS when `tls_ca` is given. Raises grpc.RpcError when
    it does not answer."""
    with _channel(address, tls_ca, tls_server_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s, wait_for_ready=False
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _channel(address: str, tls_ca: bytes | None, tls_server_name: str) -> grpc.Channel:
    if tls_ca is None:
        return grpc.insecure_channel(address)
    options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca), options=options)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m router.probe", description=__doc__)
    parser.add_argument(
        "--address", default=None,
        help="HOST:PORT of the router (default: $SWITCHBOARD_PROBE_ADDRESS, else "
        "127.0.0.1:$SWITCHBOARD_PORT, else 127.0.0.1:50051)",
    )  # fmt: skip
    parser.add_argument(
        "--service", default="", help="the health service name to ask (default: the server's)"
    )
    parser.add_argument(
        "--live", action="store_true",
        help="succeed when the router answers at all (a standby answers NOT_SERVING)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S_DEFAULT, metavar="SECONDS")
    parser.add_argument(
        "--tls-ca", default=None, metavar="FILE",
        help="ask over TLS, trusting this CA (default: $SWITCHBOARD_PROBE_TLS_CA; none: plaintext)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-server-name", default=None, metavar="NAME",
        help="the name to check in the router's certificate (default: "
        "$SWITCHBOARD_PROBE_TLS_SERVER_NAME, else the address's host)",
    )  # fmt: skip
    return parser


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    address = args.address or default_address(environ)
    ca_file = args.tls_ca or environ.get("SWITCHBOARD_PROBE_TLS_CA")
    server_name = args.tls_server_name or environ.get("SWITCHBOARD_PROBE_TLS_SERVER_NAME", "")
    try:
        tls_ca = None
        if ca_file:
            with open(ca_file, "rb") as ca:
                tls_ca = ca.read()
        status = check(
            address, service=args.service, timeout_s=args.timeout, tls_ca=tls_ca,
            tls_server_name=server_name,
        )  # fmt: skip
    except OSError as error:
        print(f"{address}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except grpc.RpcError as error:
        code = error.code().name if hasattr(error, "code") else "UNKNOWN"
        print(f"{address}: no answer ({code})", file=sys.stderr)
        return EXIT_FAILED
    print(f"{address}: {status}")
    if status == "SERVING" or (args.live and status == "NOT_SERVING"):
        return EXIT_OK
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
