#!/usr/bin/env python3
"""
Intake of one 16 MiB message fed in 4 KiB pieces: unframed (buffered) vs framed.

    python benchmarks/intake.py [--size BYTES] [--piece BYTES] [--repeat N]

A txthrift.ThriftMessageProtocol (protocol="binary", transport "buffered" or
"framed") is connected to a twisted.internet.testing.StringTransport, and the
time spent in its dataReceived calls is measured until the whole message has
been handed to messageReceived.  Two messages, both CALLs of getData:

  string   the argument struct holds one string of SIZE bytes: the unframed
           scanner can jump over it in one step
  list     the argument struct holds a list<string> of 12-byte strings
           totalling SIZE bytes (~1M elements): the scanner must walk every
           element

Prints one JSON object; the median of --repeat runs is reported.  The time
is the CPU time of this thread (time.thread_time), so that other processes
on a busy machine do not count, and the two transports are fed in turns
(framed, unframed, framed, ...) after one untimed feed of each, so that
neither gets a fresh process's first page faults or a busy spell alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import time

from twisted.internet.testing import StringTransport
from txthrift import Limits, ThriftMessageProtocol


def header(name: bytes = b"getData", seqid: int = 1) -> bytes:
    return struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", seqid)


def stringMessage(size: int) -> bytes:
    body = b"x" * size
    return header() + b"\x0b\x00\x01" + struct.pack(">i", len(body)) + body + b"\x00"


def listMessage(size: int, element: int = 12) -> bytes:
    count = size // (4 + element)
    item = struct.pack(">i", element) + b"e" * element
    return (header() + b"\x0f\x00\x01" + b"\x0b" + struct.pack(">i", count) + item * count
            + b"\x00")


class Sink(ThriftMessageProtocol):
    received = 0
    size = 0

    def messageReceived(self, message: bytes) -> None:
        self.received += 1
        self.size = len(message)


def feed(message: bytes, transport: str, piece: int, limits: Limits) -> float:
    wire = struct.pack(">I", len(message)) + message if transport == "framed" else message
    pieces = [wire[i:i + piece] for i in range(0, len(wire), piece)]
    proto = Sink(transport=transport, protocol="binary", limits=limits)
    proto.makeConnection(StringTransport())
    start = time.thread_time()
    for data in pieces:
        proto.dataReceived(data)
    elapsed = time.thread_time() - start
    if proto.received != 1 or proto.size != len(message):
        raise RuntimeError(f"{transport}: got {proto.received} messages of {proto.size} bytes, "
                           f"expected 1 of {len(message)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--piece", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    limits = Limits(max_frame_size=4 * args.size + 1024)
    out: dict = {"size": args.size, "piece": args.piece, "repeat": args.repeat,
                 "clock": "thread CPU", "messages": {}}
    transports = ("framed", "buffered")
    for kind, build in (("string", stringMessage), ("list", listMessage)):
        message = build(args.size)
        runs: dict[str, list[float]] = {transport: [] for transport in transports}
        for transport in transports:
            feed(message, transport, args.piece, limits)
        for _ in range(args.repeat):
            for transport in transports:
                runs[transport].append(feed(message, transport, args.piece, limits))
        times = {transport: statistics.median(runs[transport]) for transport in transports}
        out["messages"][kind] = {
            "bytes": len(message),
            "framed_ms": times["framed"] * 1e3,
            "buffered_ms": times["buffered"] * 1e3,
            "framed_mb_per_s": len(message) / times["framed"] / 1e6,
            "buffered_mb_per_s": len(message) / times["buffered"] / 1e6,
            "buffered_over_framed": times["buffered"] / times["framed"],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
