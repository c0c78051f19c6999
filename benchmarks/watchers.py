"""Event-feed subscribers and wallboards attached to a router, as integrations and supervisors
would be, for `benchmarks.load --subscribers N --wallboards M`.

Run as its own process (`python -m benchmarks.watchers ADDRESS --subscribers 50 --wallboards
20`) so that reading the streams does not share the load generator's loop. Each subscriber
follows `EventService.Subscribe` from now on and each wallboard `StatsService.WatchStats` every
second; replies are counted as raw bytes, never decoded, so that the cost measured is the
router's, not this client's. It runs until SIGTERM or SIGINT, then prints one JSON line: the
messages and bytes each kind received, and the streams that ended early (with their codes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import stats_service_pb2 as spb

SUBSCRIBE = "/switchboard.v1.EventService/Subscribe"
WATCH_STATS = "/switchboard.v1.StatsService/WatchStats"
WALLBOARD_INTERVAL_MS = 1000
ATTACH_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Received:
    messages: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    """'<kind> <status code>' of the streams the router ended."""


async def _follow(
    channel: grpc.aio.Channel, kind: str, method: str, request: bytes, received: Received
) -> None:
    call = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
    try:
        async for reply in call(request):
            received.messages[kind] += 1
            received.bytes[kind] += len(reply)
    except grpc.aio.AioRpcError as error:
        received.ended[f"{kind} {error.code().name}"] += 1


async def watch(address: str, subscribers: int, wallboards: int, stop: asyncio.Event) -> Received:
    """Attaches the streams, each on its own channel (as separate clients are), until `stop`."""
    received = Received()
    subscribe = epb.SubscribeRequest().SerializeToString()
    query = spb.StatsQuery(window_s=900, thresholds_s=[20, 60])
    watch_stats = spb.WatchStatsRequest(
        query=query, interval_ms=WALLBOARD_INTERVAL_MS
    ).SerializeToString()
    streams = [("subscriber", SUBSCRIBE, subscribe)] * subscribers
    streams += [("wallboard", WATCH_STATS, watch_stats)] * wallboards
    channels = [grpc.aio.insecure_channel(address) for _ in streams]
    tasks = [
        asyncio.create_task(_follow(channel, kind, method, request, received))
        for channel, (kind, method, request) in zip(channels, streams, strict=True)
    ]
    print("attached", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return received


@contextlib.contextmanager
def attached_watchers(address: str, subscribers: int, wallboards: int) -> Iterator[None]:
    """Runs this module as a process against `address` while the block runs (once its streams
    are open); afterwards says what they received, and refuses a run in which the router cut a
    stream off (the figures would not be of that many watchers)."""
    command = [sys.executable, "-m", "benchmarks.watchers", address,
               "--subscribers", str(subscribers), "--wallboards", str(wallboards)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], ATTACH_TIMEOUT_S)
        if not ready or process.stdout.readline().strip() != "attached":
            raise RuntimeError(f"{' '.join(command)} did not attach")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        report, _ = process.communicate(timeout=ATTACH_TIMEOUT_S)
    received = json.loads(report.strip().splitlines()[-1])
    print(f"watchers received: {received}", file=sys.stderr)
    if received["ended"]:
        raise RuntimeError(f"the router ended watcher streams: {received['ended']}")


async def _main(args: argparse.Namespace) -> Received:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await watch(args.address, args.subscribers, args.wallboards, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watchers", description=__doc__)
    parser.add_argument("address")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--wallboards", type=int, default=20)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        received = asyncio.run(_main(args))
        print(
            json.dumps(
                {
                    "messages": dict(received.messages),
                    "bytes": dict(received.bytes),
                    "ended": dict(received.ended),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
