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
  floor         no server: CPU per call, in this process, of what any
                Deferred-returning Python client must do for one call (a
                Deferred made, given its callbacks and fired; the arguments
                encoded and the result decoded by Apache's C coder), and of
                txthrift's whole client path over an in-memory transport (100
                in flight, replies fed 100 at a time, each starting the next
                call); 1e6 / the floor bounds any such client's calls/s
  parts         no server: floor's txthrift path taken apart, CPU per call of
                each part measured alone (the arguments struct, the C encoder,
                the message header around it, the Deferred, the framing of
                the call; cutting the replies, decoding one, firing its
                Deferred), and what is left of the whole path: the glue

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
from collections.abc import Callable
from io import BytesIO

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


def cpuPerCall(run: Callable[[int], None], count: int, rounds: int = 5) -> float:
    """
    The least CPU microseconds per item of C{rounds} runs of C{count} items.
    """
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        run(count)
        best = min(best, time.process_time() - start)
    return best / count * 1e6


def bench_floor(count: int) -> dict:
    import struct

    from HelloService import HelloService
    from thrift.protocol import fastbinary
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from txthrift._client import ClientFactory

    def deferreds(n: int) -> None:
        def callback(result: object) -> None:
            pass

        for i in range(n):
            d: Deferred[int] = Deferred(lambda d: None)
            d.addCallbacks(callback, callback)
            d.callback(i)

    argsSpec = [HelloService.getData_args, HelloService.getData_args.thrift_spec]
    resultSpec = [HelloService.getData_result, HelloService.getData_result.thrift_spec]
    body = fastbinary.encode_binary(HelloService.getData_result(success=EXPECTED), resultSpec)

    class Input:
        # All the C decoder reads of a transport.
        cstringio_buf = BytesIO()

        def cstringio_refill(self, partial: bytes, size: int) -> BytesIO:
            raise EOFError

    source = Input()
    reader = TBinaryProtocol(source)

    def coding(n: int) -> None:
        for _ in range(n):
            fastbinary.encode_binary(HelloService.getData_args(input=INPUT), argsSpec)
            source.cstringio_buf = BytesIO(body)
            fastbinary.decode_binary(HelloService.getData_result(), reader, resultSpec)

    name = b"getData"

    def reply(seqid: int) -> bytes:
        message = struct.pack("!HBBi", 0x8001, 0, 2, len(name)) + name
        message += struct.pack("!i", seqid) + body
        return struct.pack("!I", len(message)) + message

    class Sink(StringTransport):
        def write(self, data: bytes) -> None:
            pass

        def writeSequence(self, data: object) -> None:
            pass

    protocol = ClientFactory(HelloService, clock=Clock()).buildProtocol(None)
    protocol.makeConnection(Sink())
    client = protocol.client
    errors = []

    def done(result: str) -> None:
        if result != EXPECTED:
            errors.append(result)
        client.getData(INPUT).addCallbacks(done, errors.append)

    for _ in range(100):
        client.getData(INPUT).addCallbacks(done, errors.append)
    batches = [b"".join(reply(s) for s in range(first, first + 100))
               for first in range(1, 1 + 100 * (count // 100 + 1) * 5, 100)]
    fed = iter(batches)

    def whole(n: int) -> None:
        for _ in range(n // 100):
            protocol.dataReceived(next(fed))

    deferred = cpuPerCall(deferreds, count)
    codec = cpuPerCall(coding, count)
    txthriftUs = cpuPerCall(whole, count)
    floor = deferred + codec
    return {"deferred_us": deferred, "coding_us": codec, "floor_us": floor,
            "floor_calls_per_s": 1e6 / floor, "txthrift_us": txthriftUs,
            "txthrift_calls_per_s": 1e6 / txthriftUs, "errors": len(errors)}


def bench_parts(count: int) -> dict:
    """
    The parts of txthrift's client path, each timed alone, and the whole.
    """
    import struct

    from HelloService import HelloService
    from thrift.protocol import fastbinary
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from txthrift._client import ClientFactory, cutReplies

    whole = bench_floor(count)
    protocol = ClientFactory(HelloService, clock=Clock()).buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol._reading = True  # Calls are made in a read: sends are gathered.
    method = protocol.client.service.methods["getData"]
    codec = protocol._codec
    argsStruct = method.args(INPUT)
    typeArgs = [method.args, method.args.thrift_spec]
    encoder = protocol._encoderOf(method, "getData")[1]
    message = encoder(1, argsStruct)
    result = fastbinary.encode_binary(HelloService.getData_result(success=EXPECTED),
                                      [HelloService.getData_result,
                                       HelloService.getData_result.thrift_spec])
    reply = struct.pack("!HBBi7si", 0x8001, 0, 2, 7, b"getData", 1) + result
    replies = struct.pack("!I", len(reply)) + reply
    replies *= 100
    ignore: Callable[[object], None] = lambda _: None

    def repeat(statement: Callable[[], object]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                statement()
        return run

    def sent() -> None:
        protocol.sendMessage(message)
        protocol._out.clear()

    def fired() -> None:
        d: Deferred[object] = Deferred(lambda d: None)
        d.addCallbacks(ignore, ignore)
        d.callback(None)

    def decoded() -> None:
        codec.readBodyAt(reply, 19, method.result())

    def cut(n: int) -> None:
        for _ in range(n // 100):
            cutReplies(replies, 1 << 24, 1 << 24, [])

    parts = {
        "args_struct_us": cpuPerCall(repeat(lambda: method.args(INPUT)), count),
        "c_encode_us": cpuPerCall(repeat(lambda: fastbinary.encode_binary(argsStruct, typeArgs)),
                                  count),
        "encoder_us": cpuPerCall(repeat(lambda: encoder(1, argsStruct)), count),
        "deferred_us": cpuPerCall(repeat(lambda: Deferred(lambda d: None)), count),
        "send_us": cpuPerCall(repeat(sent), count),
        "cut_us": cpuPerCall(cut, count),
        "decode_us": cpuPerCall(repeat(decoded), count),
        "fire_us": cpuPerCall(repeat(fired), count),
    }
    # The encoder's own part is what it adds to the C encoder; the Deferred's
    # making is in its firing too.
    parts["header_us"] = parts.pop("encoder_us") - parts["c_encode_us"]
    made = parts.pop("deferred_us")
    measured = sum(parts.values())
    return {"txthrift_us": whole["txthrift_us"], **parts, "deferred_made_us": made,
            "glue_us": whole["txthrift_us"] - measured}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("txthrift", "apache-sync", "floor", "parts"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--count", type=int, default=100_000, help="floor: calls per round")
    args = parser.parse_args()
    if args.kind not in ("floor", "parts") and args.port is None:
        parser.error("--port is required")
    if args.kind == "floor":
        result = bench_floor(args.count)
    elif args.kind == "parts":
        result = bench_parts(args.count)
    elif args.kind == "apache-sync":
        result = bench_apache(args.port, args.warmup, args.duration)
    else:
        result = bench_txthrift(args.port, args.warmup, args.duration, args.in_flight)
    result["kind"] = args.kind
    print(json.dumps(result))


if __name__ == "__main__":
    main()
