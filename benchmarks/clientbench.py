#!/usr/bin/env python3
"""
Client-side calls/s against a framed strict-binary HelloService server.

    python benchmarks/clientbench.py KIND --port N [--warmup S] [--duration S]
                                            [--in-flight K]

KIND:
  txthrift      txthrift.connect(..., transport="framed"): one connection,
                K calls (default 100) kept in flight, pipelined
  apache-sync   Apache's blocking client: TSocket + TFramedTransport +
                TBinaryProtocol, one call at a time

Every result is checked against input + " from server 1024".  Prints one JSON
object: calls, calls_per_s, errors, cpu_s (this process, measured window).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "examples", "hello", "gen")]

INPUT = "client access"
EXPECTED = INPUT + " from server 1024"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_apache(port: int, warmup: float, duration: float) -> dict:
    from HelloService import HelloService
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TSocket, TTransport

    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(10_000)
    transport = TTransport.TFramedTransport(sock)
    client = HelloService.Client(TBinaryProtocol.TBinaryProtocol(transport))
    transport.open()
    errors = calls = 0
    start = time.monotonic()
    windowStart = start + warmup
    end = windowStart + duration
    cpuStart = None
    while True:
        now = time.monotonic()
        if cpuStart is None and now >= windowStart:
            cpuStart = cpu()
        if now >= end:
            break
        ok = client.getData(INPUT) == EXPECTED
        if now >= windowStart:
            calls += ok
            errors += not ok
    cpuUsed = cpu() - (cpuStart or 0.0)
    transport.close()
    return {"calls": calls, "calls_per_s": calls / duration, "errors": errors, "cpu_s": cpuUsed}


def bench_txthrift(port: int, warmup: float, duration: float, inFlight: int) -> dict:
    from twisted.internet import epollreactor

    epollreactor.install()
    import txthrift
    from HelloService import HelloService
    from twisted.internet import reactor

    state = {"calls": 0, "errors": 0, "cpuStart": None, "failure": None, "stopped": False}
    start = time.monotonic()
    windowStart = start + warmup
    end = windowStart + duration

    def stop(_: object = None) -> None:
        if not state["stopped"]:
            state["stopped"] = True
            reactor.stop()

    def connected(client: object) -> None:
        def issue() -> None:
            client.getData(INPUT).addCallbacks(done, failed)  # type: ignore[attr-defined]

        def done(result: str) -> None:
            if state["stopped"]:
                return
            now = time.monotonic()
            if now >= end:
                stop()
                return
            if now >= windowStart:
                if state["cpuStart"] is None:
                    state["cpuStart"] = cpu()
                if result == EXPECTED:
                    state["calls"] += 1
                else:
                    state["errors"] += 1
            issue()

        def failed(failure: object) -> None:
            if state["stopped"]:
                return  # calls cut off by the shutdown
            state["errors"] += 1
            state["failure"] = str(failure)
            stop()

        for _ in range(inFlight):
            issue()

    def notConnected(failure: object) -> None:
        state["failure"] = str(failure)
        stop()

    d = txthrift.connect(reactor, f"tcp:host=127.0.0.1:port={port}", HelloService,
                         transport="framed")
    d.addCallbacks(connected, notConnected)
    reactor.callLater(warmup + duration + 10, stop)  # bound the wait
    reactor.run()
    result = {"calls": state["calls"], "calls_per_s": state["calls"] / duration,
              "errors": state["errors"], "cpu_s": cpu() - (state["cpuStart"] or 0.0),
              "in_flight": inFlight}
    if state["failure"]:
        result["failure"] = state["failure"][:500]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("txthrift", "apache-sync"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    if args.kind == "apache-sync":
        result = bench_apache(args.port, args.warmup, args.duration)
    else:
        result = bench_txthrift(args.port, args.warmup, args.duration, args.in_flight)
    result["kind"] = args.kind
    print(json.dumps(result))


if __name__ == "__main__":
    main()
