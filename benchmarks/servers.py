#!/usr/bin/env python3
"""
The HelloService servers the benchmark compares, one per process.

    python benchmarks/servers.py KIND --port N [--threads N]

KIND is one of:

  txthrift            txthrift.serve(), transport/protocol auto-detected
                      (the fallback when `twistd thrift` is not available)
  txthrift-fixed      txthrift.serve(..., transport="framed", protocol="binary")
  txthrift-http       txthrift.serve(..., transport="http"): Thrift over HTTP
  txthrift-metrics    txthrift.serve(..., observer=Metrics()), and -accesslog, -trace
                      (the fallback when `twistd thrift --http-port` is not available)
  apache-twisted      Apache thrift.transport.TTwisted.ThriftServerFactory with
                      py:twisted generated code, pure TBinaryProtocolFactory
  apache-twisted-accel  the same with TBinaryProtocolAcceleratedFactory
  apache-threadpool   Apache TServer.TThreadPoolServer, buffered, pure binary
                      (the seed's setup; --threads workers, default 64)
  apache-nonblocking  Apache TNonblockingServer, framed, pure binary
                      (--threads workers, default 10 as in Apache)
  raw-twisted         Twisted Int32StringReceiver answering every frame with a
                      reply computed once per request size, the request's
                      seqid patched in: the framing-only limit.  It sets
                      TCP_NODELAY: without it a 1 MiB reply's last segment
                      waits for a delayed ACK (~40 ms) and C=1 D=1 runs 9x slower
  raw-web             twisted.web: a Site whose one resource answers each POST
                      body with the raw-twisted reply, unframed: the HTTP limit
  apache-http         Apache thrift.server.THttpServer (http.server, one request
                      per connection, HTTP/1.0), TBinaryProtocolAccelerated
  thriftpy2-threaded  thriftpy2's TThreadedServer, framed, Cython codec
  thriftpy2-aio       thriftpy2's asyncio server, framed

Every server listens on 127.0.0.1 and answers getData(input) with
input + " from server 1024".  The process runs until it is killed.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HELLO = os.path.join(ROOT, "examples", "hello")
IDL = os.path.join(HELLO, "HelloService.thrift")
sys.path[:0] = [HELLO, os.path.join(HELLO, "gen"), os.path.join(HERE, "gen")]

SUFFIX = " from server 1024"
HOST = "127.0.0.1"


def _reactor():
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    return reactor


def serve_txthrift(port: int, transport: str, protocol: str, watched: str = "") -> None:
    reactor = _reactor()
    import txthrift
    from hello_handler import HelloServiceHandler

    observer = None
    if watched == "metrics":
        from txthrift.metrics import Metrics

        observer = Metrics()
    elif watched == "accesslog":
        from txthrift._accesslog import openAccessLog

        observer = openAccessLog("access.log", reactor)
    elif watched == "trace":
        observer = txthrift.Tracing()
    d = txthrift.serve(reactor, f"tcp:{port}:interface={HOST}", HelloServiceHandler(),
                       transport=transport, protocol=protocol, observer=observer)
    d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))
    reactor.run()


def serve_apache_twisted(port: int, accelerated: bool) -> None:
    reactor = _reactor()
    from hello_twisted.HelloService import HelloService
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTwisted
    from zope.interface import implementer

    @implementer(HelloService.Iface)
    class Handler:
        def sayHello(self) -> None:
            pass

        def getData(self, input: str) -> str:
            return input + SUFFIX

    if accelerated:
        pfactory = TBinaryProtocol.TBinaryProtocolAcceleratedFactory()
    else:
        pfactory = TBinaryProtocol.TBinaryProtocolFactory()
    factory = TTwisted.ThriftServerFactory(HelloService.Processor(Handler()), pfactory)
    reactor.listenTCP(port, factory, interface=HOST)
    reactor.run()


def serve_apache_blocking(port: int, kind: str, threads: int | None) -> None:
    from hello_handler import HelloServiceHandler
    from HelloService import HelloService
    from thrift.protocol import TBinaryProtocol
    from thrift.server import TNonblockingServer, TServer
    from thrift.transport import TSocket, TTransport

    processor = HelloService.Processor(HelloServiceHandler())
    sock = TSocket.TServerSocket(host=HOST, port=port)
    pfactory = TBinaryProtocol.TBinaryProtocolFactory()
    if kind == "apache-threadpool":
        server = TServer.TThreadPoolServer(processor, sock, TTransport.TBufferedTransportFactory(),
                                           pfactory, daemon=True)
        # Apache's default pool of 10 would leave all but 10 of 32 connections
        # unserved: each worker keeps one connection until it closes.
        server.setNumThreads(threads or 64)
    else:
        server = TNonblockingServer.TNonblockingServer(processor, sock, pfactory,
                                                       threads=threads or 10)
    server.serve()


class RawTwisted:
    """
    Builds the framing-only server: no decoding, no dispatch.
    """

    @staticmethod
    def replyParts(request: bytes) -> tuple[bytes, bytes]:
        # request: version, name length, name, seqid, field header (3 bytes),
        # string length, input, STOP.
        nameLength = int.from_bytes(request[4:8], "big")
        name = request[8:8 + nameLength]
        at = 8 + nameLength + 4 + 3
        inputLength = int.from_bytes(request[at:at + 4], "big")
        value = request[at + 4:at + 4 + inputLength] + SUFFIX.encode()
        message_length = 4 + 4 + nameLength + 4 + 3 + 4 + len(value) + 1
        head = (message_length.to_bytes(4, "big") + b"\x80\x01\x00\x02"
                + nameLength.to_bytes(4, "big") + name)
        tail = b"\x0b\x00\x00" + len(value).to_bytes(4, "big") + value + b"\x00"
        return head, tail

    @classmethod
    def serve(cls, port: int) -> None:
        reactor = _reactor()
        from twisted.internet.protocol import Factory
        from twisted.protocols.basic import Int32StringReceiver

        replies: dict[int, tuple[bytes, bytes, int]] = {}
        replyParts = cls.replyParts

        class Raw(Int32StringReceiver):
            MAX_LENGTH = 64 * 1024 * 1024

            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)

            def stringReceived(self, request: bytes) -> None:
                # The loadgen sends one request per size, so a reply computed
                # once per request length is the reply to every such request.
                parts = replies.get(len(request))
                if parts is None:
                    head, tail = replyParts(request)
                    at = 8 + int.from_bytes(request[4:8], "big")  # seqid after the name
                    parts = replies[len(request)] = (head, tail, at)
                head, tail, at = parts
                self.transport.writeSequence((head, request[at:at + 4], tail))

        reactor.listenTCP(port, Factory.forProtocol(Raw), interface=HOST)
        reactor.run()


def serve_raw_web(port: int) -> None:
    reactor = _reactor()
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    replies: dict[int, tuple[bytes, bytes, int]] = {}

    class Raw(Resource):
        isLeaf = True

        def render_POST(self, request):  # type: ignore[no-untyped-def]
            body = request.content.read()
            parts = replies.get(len(body))
            if parts is None:
                head, tail = RawTwisted.replyParts(body)
                at = 8 + int.from_bytes(body[4:8], "big")  # seqid after the name
                parts = replies[len(body)] = (head[4:], tail, at)  # no frame length
            head, tail, at = parts
            request.setHeader(b"content-type", b"application/x-thrift")
            return b"".join((head, body[at:at + 4], tail))

    site = Site(Raw(), timeout=None)  # as txthrift's with no idle_timeout; no access log
    reactor.listenTCP(port, site, interface=HOST)
    reactor.run()


def serve_apache_http(port: int) -> None:
    from hello_handler import HelloServiceHandler
    from HelloService import HelloService
    from thrift.protocol import TBinaryProtocol
    from thrift.server import THttpServer

    server = THttpServer.THttpServer(HelloService.Processor(HelloServiceHandler()),
                                     (HOST, port),
                                     TBinaryProtocol.TBinaryProtocolAcceleratedFactory())
    server.serve()


def _thriftpy2_service():
    import thriftpy2

    return thriftpy2.load(IDL, module_name="HelloService_thrift").HelloService


def serve_thriftpy2_threaded(port: int) -> None:
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import make_server
    from thriftpy2.transport import TCyFramedTransportFactory

    class Handler:
        def sayHello(self) -> None:
            pass

        def getData(self, input: str) -> str:
            return input + SUFFIX

    server = make_server(_thriftpy2_service(), Handler(), host=HOST, port=port,
                         proto_factory=TCyBinaryProtocolFactory(),
                         trans_factory=TCyFramedTransportFactory(), client_timeout=None)
    server.serve()


def serve_thriftpy2_aio(port: int) -> None:
    import asyncio

    from thriftpy2.contrib.aio.protocol import TAsyncBinaryProtocolFactory
    from thriftpy2.contrib.aio.rpc import make_server
    from thriftpy2.contrib.aio.transport import TAsyncFramedTransportFactory

    class Handler:
        async def sayHello(self) -> None:
            pass

        async def getData(self, input: str) -> str:
            return input + SUFFIX

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # client_timeout=None: its timeout caps a connection's whole life.
    server = make_server(_thriftpy2_service(), Handler(), host=HOST, port=port,
                         proto_factory=TAsyncBinaryProtocolFactory(),
                         trans_factory=TAsyncFramedTransportFactory(), client_timeout=None,
                         loop=loop)
    server.serve()


KINDS = ("txthrift", "txthrift-fixed", "txthrift-http", "txthrift-metrics",
         "txthrift-accesslog", "txthrift-trace", "apache-twisted", "apache-twisted-accel",
         "apache-threadpool", "apache-nonblocking", "raw-twisted", "raw-web", "apache-http",
         "thriftpy2-threaded", "thriftpy2-aio")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    kind = args.kind
    if kind == "txthrift":
        serve_txthrift(args.port, "auto", "auto")
    elif kind == "txthrift-fixed":
        serve_txthrift(args.port, "framed", "binary")
    elif kind == "txthrift-http":
        serve_txthrift(args.port, "http", "auto")
    elif kind.startswith("txthrift-"):
        serve_txthrift(args.port, "auto", "auto", kind[len("txthrift-"):])
    elif kind in ("apache-twisted", "apache-twisted-accel"):
        serve_apache_twisted(args.port, accelerated=kind.endswith("accel"))
    elif kind in ("apache-threadpool", "apache-nonblocking"):
        serve_apache_blocking(args.port, kind, args.threads)
    elif kind == "raw-twisted":
        RawTwisted.serve(args.port)
    elif kind == "raw-web":
        serve_raw_web(args.port)
    elif kind == "apache-http":
        serve_apache_http(args.port)
    elif kind == "thriftpy2-threaded":
        serve_thriftpy2_threaded(args.port)
    elif kind == "thriftpy2-aio":
        serve_thriftpy2_aio(args.port)


if __name__ == "__main__":
    main()
