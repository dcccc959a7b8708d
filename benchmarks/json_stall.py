#!/usr/bin/env python3
"""
How long one big request holds the server's reactor, per byte.

    python benchmarks/json_stall.py [--protocols json,binary,compact]
        [--transports framed,buffered] [--shapes string,binary,...]
        [--sizes 64K,256K,1M,4M,8M] [--echo] [--repeat N] [--codec]

A txthrift server (handler objects, the conformance service) runs in this
process beside a 1 ms C{LoopingCall}; a child process sends one request of
each shape and size and reads the reply.  The stall is the longest gap
between two ticks while the request is in; its cost per byte is that gap
divided by the request's size.  The handler answers with an empty value, so
the stall is reading (and, unframed, scanning) the request; C{--echo}
answers with the request's own value, adding the reply's encoding.
C{--codec} times decoding and encoding alone, with no server.

Shapes, each as close to the size as it goes:
  string     one ASCII string          nonascii  one string of 2-4 byte chars
  binary     one binary (base64)       i8        a list of small bytes
  map        map<i32, i64>             structs   a list of 4-field structs
  empty      a list of empty structs   lists     a list of empty lists
  deep       a tree of 30-node chains (60 levels of nesting)
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.gen.conformance_py.txthrift_conformance import Conformance
from tests.gen.conformance_py.txthrift_conformance import ttypes as T
from thrift.Thrift import TMessageType
from twisted.internet import defer, task, threads
from txthrift import Codec, serve

KiB = 1024
MiB = 1024 * KiB

#: Sends the request in the file argv[2] to port argv[1], reads one reply.
SENDER = r"""
import socket, struct, sys
data = open(sys.argv[2], "rb").read()
framed = sys.argv[3] == "framed"
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(data)
if framed:
    head = b""
    while len(head) < 4:
        head += s.recv(4 - len(head))
    left = struct.unpack(">i", head)[0]
    while left:
        chunk = s.recv(min(left, 1 << 20))
        if not chunk:
            sys.exit("connection closed")
        left -= len(chunk)
else:
    s.settimeout(30)
    if not s.recv(1 << 20):
        sys.exit("connection closed")
s.close()
"""


def chain(length: int) -> Any:
    node = T.Node(value=1)
    for _ in range(length - 1):
        node = T.Node(value=1, children=[node])
    return node


def deepTree(size: int, protocol: str) -> Any:
    one = len(Codec(protocol).encode("echoNode", 1, 1, Conformance.echoNode_args(chain(30))))
    return T.Node(value=0, children=[chain(30) for _ in range(max(1, size // one))])


#: shape -> (method, value of about `size` bytes (JSON), the empty answer)
SHAPES: dict[str, tuple[str, Callable[[int, str], Any], Any]] = {
    "string": ("echoString", lambda n, p: "x" * n, ""),
    "nonascii": ("echoString", lambda n, p: "\u00e9\u20ac\U0001f600" * (n // 9), ""),
    "binary": ("echoBinary", lambda n, p: bytes(range(256)) * (n * 3 // 4 // 256), b""),
    "i8": ("echoContainers", lambda n, p: T.Containers(bytes_=[1] * (n // 2)), T.Containers()),
    "map": ("echoContainers", lambda n, p: T.Containers(i32Map={i: 1 for i in range(n // 12)}),
            T.Containers()),
    "structs": ("echoContainers", lambda n, p: T.Containers(
        structs=[T.Primitives(aBool=True, aByte=1, anI16=1, anI32=1)] * (n // 60)),
        T.Containers()),
    "empty": ("echoContainers", lambda n, p: T.Containers(structs=[T.Primitives()] * (n // 3)),
              T.Containers()),
    "lists": ("echoContainers", lambda n, p: T.Containers(cube=[[]] * (n // 10)),
              T.Containers()),
    "deep": ("echoNode", deepTree, T.Node()),
}


class Handler:
    """
    The conformance service's echo methods, answering with an empty value
    (or, with C{echo}, with the value itself).
    """

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        for method, _, empty in SHAPES.values():
            setattr(self, method, self._answer(empty))

    def _answer(self, empty: Any) -> Callable[[Any], Any]:
        return lambda v: v if self.echo else empty


def parseSize(text: str) -> int:
    units = {"K": KiB, "M": MiB}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


async def stall(reactor: Any, port: int, data: bytes, transport: str) -> float:
    """
    The longest gap, in seconds, between ticks of a 1 ms C{LoopingCall}
    while a child process sends C{data} and reads the reply.
    """
    ticks: list[float] = []
    loop = task.LoopingCall(lambda: ticks.append(time.perf_counter()))
    loop.clock = reactor
    with tempfile.NamedTemporaryFile(suffix=".bin") as request:
        request.write(data)
        request.flush()
        loop.start(0.001)
        try:
            done = await threads.deferToThread(
                subprocess.run, [sys.executable, "-c", SENDER, str(port), request.name,
                                 transport], capture_output=True, timeout=600)
        finally:
            loop.stop()
    if done.returncode:
        raise RuntimeError(f"sender failed: {done.stderr.decode()[-500:]}")
    ticks.append(time.perf_counter())
    return max(b - a for a, b in pairwise(ticks))


def codecOnly(options: argparse.Namespace) -> None:
    """
    Decoding and encoding alone, without a server: the codec's share of a
    stall.
    """
    print(f"{'protocol':8} {'shape':9} {'bytes':>9} {'decode ms':>9} {'us/byte':>8} "
          f"{'encode ms':>9} {'us/byte':>8}")
    for protocol in options.protocols.split(","):
        codec = Codec(protocol)
        for shape in options.shapes.split(","):
            method, make, _ = SHAPES[shape]
            for size in [parseSize(s) for s in options.sizes.split(",")]:
                args = getattr(Conformance, f"{method}_args")(make(size, protocol))
                decodes, encodes = [], []
                for _ in range(options.repeat):
                    gc.collect()
                    started = time.perf_counter()
                    message = codec.encode(method, TMessageType.CALL, 1, args)
                    encoded = time.perf_counter()
                    iprot, _, _, _ = codec.readHeader(message)
                    codec.readBody(iprot, getattr(Conformance, f"{method}_args")())
                    decodes.append(time.perf_counter() - encoded)
                    encodes.append(encoded - started)
                decode, encode = (sorted(t)[len(t) // 2] for t in (decodes, encodes))
                print(f"{protocol:8} {shape:9} {len(message):9d} {decode * 1e3:9.1f} "
                      f"{decode * 1e6 / len(message):8.4f} {encode * 1e3:9.1f} "
                      f"{encode * 1e6 / len(message):8.4f}", flush=True)


async def main(reactor: Any, options: argparse.Namespace) -> None:
    handler = Handler(options.echo)
    print(f"{'protocol':8} {'transport':9} {'shape':9} {'bytes':>9} {'stall ms':>9} "
          f"{'us/byte':>8}")
    worst: dict[str, tuple[float, str]] = {}
    for protocol in options.protocols.split(","):
        for transport in options.transports.split(","):
            listening = await serve(reactor, "tcp:0:interface=127.0.0.1", handler,
                                    service=Conformance, transport=transport,
                                    protocol=protocol, max_frame_size=64 * MiB)
            port = listening.getHost().port
            codec = Codec(protocol)
            try:
                for shape in options.shapes.split(","):
                    method, make, _ = SHAPES[shape]
                    for size in [parseSize(s) for s in options.sizes.split(",")]:
                        args = getattr(Conformance, f"{method}_args")(make(size, protocol))
                        message = codec.encode(method, TMessageType.CALL, 1, args)
                        # Only the server's objects are live while it reads.
                        del args
                        gc.collect()
                        data = (len(message).to_bytes(4, "big") + message
                                if transport == "framed" else message)
                        gaps = [await stall(reactor, port, data, transport)
                                for _ in range(options.repeat)]
                        gap = sorted(gaps)[len(gaps) // 2]
                        perByte = gap * 1e6 / len(message)
                        print(f"{protocol:8} {transport:9} {shape:9} {len(message):9d} "
                              f"{gap * 1e3:9.1f} {perByte:8.4f}", flush=True)
                        if size >= MiB and perByte > worst.get(protocol, (0.0, ""))[0]:
                            worst[protocol] = (perByte, f"{shape} {transport} {len(message)} B")
            finally:
                await listening.stopListening()
    for protocol, (perByte, what) in worst.items():
        print(f"worst {protocol} (requests of 1 MiB and up): {perByte:.4f} us/byte ({what})")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", default="json")
    parser.add_argument("--transports", default="framed")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--sizes", default="64K,256K,1M,4M,8M")
    parser.add_argument("--echo", action="store_true",
                        help="answer with the request's value (adds the reply's encoding)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; the median")
    parser.add_argument("--codec", action="store_true",
                        help="time decoding and encoding alone, without a server")
    options = parser.parse_args()
    if options.codec:
        codecOnly(options)
        return
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))


if __name__ == "__main__":
    run()
