#!/usr/bin/env python3
"""
A pool over two local servers against one connect() client, side by side.

    python benchmarks/pool.py [--duration S] [--warmup S] [--in-flight K] [--rounds N]

Starts two `twistd thrift` servers of examples/hello on 127.0.0.1 (port 0,
read from their startup lines), then, in this process, alternately for N
rounds (default 3, each in another order): `txthrift.connect` to the first server (`connect`),
`txthrift.connectPool` over both (`pool`), and a pool over the first server
only (`pool-1`: what the pool's own bookkeeping costs, apart from spreading
calls over two connections); each kind keeps K calls (default 100) of
`getData` in flight for S seconds (after a warm-up) and records every call's
latency.  Prints one JSON object per run and the medians: calls/s, p50 and
p99 latency, and the pool's ratios to the single client.  Every result is
checked; the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HELLO = os.path.join(ROOT, "examples", "hello")
sys.path[:0] = [ROOT, os.path.join(HELLO, "gen")]

INPUT = "pool bench"
EXPECTED = INPUT + " from server 1024"
SERVING = re.compile(r"Serving .+? on tcp:127\.0\.0\.1:(\d+)")


def startServer() -> tuple[subprocess.Popen[str], int]:
    """
    A `twistd thrift` of the hello handler, and its port.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HELLO, os.path.join(HELLO, "gen")]),
               PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", ("import sys; from twisted.scripts.twistd import run;"
                                " sys.argv[0] = 'twistd'; run()"), "-n", "--pidfile=", "--logfile=-", "thrift",
         "--handler", "hello_handler.HelloServiceHandler", "--port",
         "tcp:0:interface=127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    for line in process.stdout:
        found = SERVING.search(line)
        if found:
            return process, int(found.group(1))
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit(f"the server did not start: {line}")


async def measure(client: Any, warmup: float, duration: float, inFlight: int) -> dict[str, Any]:
    """
    K callers, each calling again as soon as its call is answered.
    """
    from twisted.internet.defer import Deferred, gatherResults

    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    windowStart, end = start + warmup, start + warmup + duration

    async def caller() -> None:
        nonlocal errors
        while True:
            began = time.monotonic()
            if began >= end:
                return
            result = await client.getData(INPUT)
            now = time.monotonic()
            if began >= windowStart:
                if result == EXPECTED:
                    latencies.append(now - began)
                else:
                    errors += 1

    await gatherResults([Deferred.fromCoroutine(caller()) for _ in range(inFlight)])
    latencies.sort()
    return {"calls": len(latencies), "calls_per_s": len(latencies) / duration,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "errors": errors}


async def bench(ports: list[int], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    import txthrift
    from HelloService import HelloService
    from twisted.internet import reactor

    where = [f"tcp:127.0.0.1:{port}" for port in ports]
    kinds: dict[str, Callable[[], Any]] = {"connect": lambda: txthrift.connect(reactor, where[0], HelloService),
             "pool": lambda: txthrift.connectPool(reactor, where, HelloService),
             "pool-1": lambda: txthrift.connectPool(reactor, where[:1], HelloService)}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for round in range(args.rounds):
        # Each round starts with another kind, so that drift in the machine's
        # speed falls on each alike.
        for kind in order[round % 3:] + order[:round % 3]:
            client = await kinds[kind]()
            runs[kind].append(await measure(client, args.warmup, args.duration,
                                            args.in_flight))
            await client.close()
            print(json.dumps({"kind": kind, **runs[kind][-1]}), flush=True)
    return runs


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    medians = {kind: {key: statistics.median(run[key] for run in results)
                      for key in ("calls_per_s", "p50_ms", "p99_ms")}
               for kind, results in runs.items()}
    single = medians["connect"]
    return {"medians": medians,
            **{f"{kind}_over_connect": {key: round(medians[kind][key] / single[key], 2)
                                        for key in single} for kind in ("pool", "pool-1")},
            "errors": sum(run["errors"] for results in runs.values() for run in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    servers = [startServer() for _ in range(2)]
    try:
        outcome: dict[str, Any] = {}

        async def run(_: Any) -> None:
            outcome.update(summary(await bench([port for _, port in servers], args)))

        react(lambda r: Deferred.fromCoroutine(run(r)))
    except SystemExit as exit:
        if exit.code:
            raise
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(30)
    del reactor
    print(json.dumps(outcome, indent=1))


if __name__ == "__main__":
    main()
