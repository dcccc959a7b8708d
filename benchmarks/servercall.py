#!/usr/bin/env python3
"""
A server connection's CPU per small call, in one process: no sockets, no reactor.

    python benchmarks/servercall.py [--calls N] [--rounds N] [--per-read N] [--profile]
    PYTHONPATH=OTHER_TREE python benchmarks/servercall.py     # another revision's txthrift

A txthrift server connection (ServerFactory for examples/hello's handler,
transport and protocol "auto", as twistd thrift serves it) over a
twisted.internet.testing.StringTransport is fed framed binary getData calls of
13 bytes, --per-read of them (64) per dataReceived, and every reply is checked
once.  The thread's CPU time per call is the best of --rounds rounds of
--calls calls each: what the server's own code costs a call, without the system
calls and reactor turns around it, for before/after comparisons of changes to
that path on a busy machine.  --profile adds a cProfile of one more round.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO = os.path.join(os.path.dirname(HERE), "examples", "hello")
sys.path[:0] = [HELLO, os.path.join(HELLO, "gen")]

import txthrift
from hello_handler import HelloServiceHandler
from HelloService import HelloService
from thrift.Thrift import TMessageType
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

#: The harness's 13-byte payload (see benchmarks/README.md).
PAYLOAD = "client access"
REPLY = (PAYLOAD + " from server 1024").encode()


def calls(codec: txthrift.Codec, first: int, count: int) -> bytes:
    """
    C{count} framed getData calls, seqids from C{first}, as one read.
    """
    messages = (codec.encode("getData", TMessageType.CALL, seqid,
                             HelloService.getData_args(input=PAYLOAD))
                for seqid in range(first, first + count))
    return b"".join(len(message).to_bytes(4, "big") + message for message in messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-read", type=int, default=64, help="calls per dataReceived")
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    perRead = args.per_read
    codec = txthrift.Codec("binary")
    reads = [calls(codec, index * perRead, perRead) for index in range(16)]
    factory = txthrift.ServerFactory(HelloServiceHandler(), clock=Clock())
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(reads[0])
    replies = transport.value()
    if replies.count(REPLY) != perRead:
        raise SystemExit(f"expected {perRead} replies, got {replies[:200]!r}...")
    transport.clear()
    feed, clear = proto.dataReceived, transport.clear
    count = max(1, args.calls // perRead)

    def oneRound() -> None:
        for index in range(count):
            feed(reads[index & 15])
            clear()

    times = []
    for _ in range(args.rounds):
        start = time.thread_time()
        oneRound()
        times.append((time.thread_time() - start) / (count * perRead) * 1e6)
    print(json.dumps({
        "txthrift": txthrift.__file__, "speedups": bool(txthrift.acceleration),
        "calls_per_read": perRead, "calls_per_round": count * perRead,
        "us_per_call": [round_(t) for t in times], "best_us_per_call": round_(min(times)),
        "loadavg": os.getloadavg()[0],
    }))
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(oneRound)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(20)


def round_(value: float) -> float:
    return float(f"{value:.3f}")


if __name__ == "__main__":
    main()
