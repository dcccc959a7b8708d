#!/usr/bin/env python3
"""
The seed's HelloService, served by txthrift on the Twisted reactor.

    python examples/hello/server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint description; the default,
C{tcp:9090:interface=127.0.0.1}, is where the seed's client looks.  Each
connection's transport (framed or buffered) and protocol (binary, compact or
JSON) are detected, so the seed's blocking client works unchanged.  The bound
address is logged to stdout; stop with Ctrl-C.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "gen")]

from hello_handler import HelloServiceHandler
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

import txthrift

DEFAULT_ENDPOINT = "tcp:9090:interface=127.0.0.1"

log = Logger(namespace="hello.server")


async def main(reactor: IReactorTCP, endpoint: str = DEFAULT_ENDPOINT) -> None:
    port = await txthrift.serve(reactor, endpoint, HelloServiceHandler())
    address = port.getHost()
    log.info("HelloService listening on {host}:{port}", host=address.host, port=address.port)
    await Deferred()  # Serve until the reactor stops (Ctrl-C or SIGTERM).


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    react(main, sys.argv[1:2])
