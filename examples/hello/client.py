#!/usr/bin/env python3
"""
The seed's client, written the Twisted way: one Deferred per call.

    python examples/hello/client.py [HOST [PORT]]

Connects to HOST (default localhost) on PORT (default 9090), calls
sayHello() and prints getData("client access").  It speaks what the seed's
server speaks, buffered (unframed) binary, which txthrift's server also
accepts.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "gen")]

from HelloService import HelloService
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import react

import txthrift


async def main(reactor: object, host: str = "localhost", port: str = "9090") -> None:
    endpoint = HostnameEndpoint(reactor, host, int(port), timeout=10)
    client = await txthrift.connect(reactor, endpoint, HelloService,
                                    transport="buffered", protocol="binary", timeout=10)
    try:
        await client.sayHello()
        print(await client.getData("client access"))
    finally:
        await client.close()


if __name__ == "__main__":
    react(main, sys.argv[1:3])
