"""`switchboard top`: a live wallboard in the terminal, fed by `StatsService.WatchStats`.

Queues with their waiting tasks, longest wait, service level and estimated wait; agents by
activity; redrawn in place at every report. Works against any router address (a standby
answers UNAVAILABLE naming the leader: top follows it), over TLS (`--tls-ca`) with a bearer
token (`--token-file`, or `SWITCHBOARD_TOKEN`); a supervisor names its queues (`--queue`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc
from rich.console import Group
from rich.live import Live
from rich.table import Table

from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router._proto.switchboard.v1 import stats_service_pb2_grpc as sgrpc
from router.api.status import LEADER_METADATA_KEY

__all__ = ["add_top_arguments", "render", "run_top"]


def add_top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="127.0.0.1:50051", help="a router's gRPC address")
    parser.add_argument("--window", type=int, default=3600, metavar="S",
                        help="the statistics window in seconds (default 3600)")  # fmt: skip
    parser.add_argument("--threshold", type=int, default=20, metavar="S",
                        help="the service level's threshold in seconds (default 20)")  # fmt: skip
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--once", action="store_true", help="print one report and exit")
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="QUEUE_ID",
        help="only this queue (repeat for several; a supervisor names its own)",
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help="call over TLS, trusting this CA certificate"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="a bearer token to send (default: $SWITCHBOARD_TOKEN, if set)",
    )


def render(stats: spb.Stats, threshold_s: int) -> Group:
    """The wallboard for one report."""
    queues = Table(title=f"Queues (last {(stats.now_ms - stats.window_start_ms) // 60_000} min)")
    for column in ("queue", "waiting", "longest wait", "reserved", "assigned", "wrapping",
                   f"SL {threshold_s}s", "answered", "abandoned", "est. wait"):  # fmt: skip
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue in stats.queues:
        live, window = queue.realtime, queue.window
        level = next((s for s in window.service_levels if s.threshold_s == threshold_s), None)
        counted = level is not None and (level.answered_within + level.answered_after
                                         + level.abandoned_after) > 0  # fmt: skip
        queues.add_row(
            live.queue_id, str(live.waiting), f"{live.longest_wait_s:.0f}s", str(live.reserved),
            str(live.assigned), str(live.wrapping),
            f"{100 * level.service_level:.0f}%" if level is not None and counted else "-",
            str(window.answered), str(window.abandoned),
            f"{queue.estimated_wait_s:.0f}s" if queue.estimated_wait_known else "?",
        )  # fmt: skip
    agents = Table(title="Agents by activity")
    agents.add_column("activity")
    agents.add_column("agents", justify="right")
    for activity, count in sorted(stats.workers_by_activity.items()):
        agents.add_row(activity, str(count))
    return Group(queues, agents)


def _channel(address: str, tls_ca: Path | None) -> grpc.Channel:
    if tls_ca is None:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca.read_bytes())
    return grpc.secure_channel(address, credentials)


def _metadata(token_file: Path | None) -> tuple[tuple[str, str], ...]:
    token = token_file.read_text().strip() if token_file else os.environ.get("SWITCHBOARD_TOKEN")
    return (("authorization", f"Bearer {token}"),) if token else ()


def run_top(args: argparse.Namespace) -> int:
    address = args.address
    query = spb.StatsQuery(
        window_s=args.window, thresholds_s=[args.threshold], queue_ids=args.queue
    )
    request = spb.WatchStatsRequest(query=query, interval_ms=args.interval_ms)
    metadata = _metadata(args.token_file)
    while True:
        with _channel(address, args.tls_ca) as channel:
            reports = sgrpc.StatsServiceStub(channel).WatchStats(request, metadata=metadata)
            try:
                if args.once:
                    print_once(next(reports).stats, args.threshold)
                    return 0
                with Live(auto_refresh=False) as live:
                    for report in reports:
                        live.update(render(report.stats, args.threshold), refresh=True)
                return 0
            except grpc.RpcError as error:
                leader = dict(error.trailing_metadata() or ()).get(LEADER_METADATA_KEY)
                if error.code() != grpc.StatusCode.UNAVAILABLE or not leader:
                    print(f"switchboard top: {error.code().name}: {error.details()}")
                    return 1
                address = str(leader)  # a standby named the leader


def print_once(stats: spb.Stats, threshold_s: int) -> None:
    from rich.console import Console

    Console().print(render(stats, threshold_s))
