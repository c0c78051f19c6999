#!/usr/bin/env python3
"""CPU per task lifecycle of a durable router process and, apart, of its embedded Redis, at a
fixed rate: which of the two a change made dearer (the load benchmark's "server CPU" adds them).

Usage (from the repository root):
    python scripts/measure_cpu_split.py [--rate 300] [--seconds 8] [--rounds 2]

Starts `switchboard serve` on a temporary folder, loads it with the load benchmark's generator
and agents (`benchmarks.loadgen`), and prints one line per round. `--router-checkout DIR` runs
the router of another checkout (e.g. `git archive REV | tar -x -C DIR`) under this harness, to
compare two versions back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from benchmarks.loadgen import LoadRun
from benchmarks.servers import children, process_cpu_s, switchboard_router


async def measure(address: str, pid: int, rate_per_s: float, seconds: float, rounds: int) -> None:
    async with LoadRun(address, "switchboard") as run:
        await run.step(rate_per_s, warmup_s=1, measure_s=2)  # warm: the first calls cost more
        for _ in range(rounds):
            redis_pids = children(pid)
            router_s, redis_s = process_cpu_s(pid), sum(map(process_cpu_s, redis_pids))
            step = await run.step(rate_per_s, warmup_s=0.5, measure_s=seconds)
            router_s = process_cpu_s(pid) - router_s
            redis_s = sum(map(process_cpu_s, redis_pids)) - redis_s
            print(
                f"{step.tasks} lifecycles at {rate_per_s:g}/s: router "
                f"{1000 * router_s / step.tasks:.2f} ms, its Redis "
                f"{1000 * redis_s / step.tasks:.2f} ms of CPU per lifecycle; create->offer p50 "
                f"{step.create_to_offer_p50_ms:.2f} ms",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="lifecycles per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds a round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--router-checkout", type=Path, metavar="DIR",
                        help="run the router of this checkout (default: this one)")  # fmt: skip
    args = parser.parse_args()
    if args.router_checkout is not None:
        # The router process (`python -m router.cli`) imports from its working folder first.
        checkout = args.router_checkout.resolve()
        os.environ["PYTHONPATH"] = str(checkout)
        os.chdir(checkout)
    with (
        tempfile.TemporaryDirectory(prefix="switchboard-cpu-") as folder,
        switchboard_router(Path(folder), durable=True) as server,
    ):
        asyncio.run(measure(server.address, server.pid, args.rate, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
