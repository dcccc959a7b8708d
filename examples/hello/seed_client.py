#!/usr/bin/env python3
"""
The seed's blocking client, ported to Python 3 and otherwise unchanged:
TSocket + TBufferedTransport + TBinaryProtocol to localhost.

    python examples/hello/seed_client.py [PORT]

PORT defaults to 9090.  Unlike the seed, it exits with status 1 after
printing a Thrift error.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "gen")]

from HelloService import HelloService
from thrift import Thrift
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

port = int(sys.argv[1]) if len(sys.argv) > 1 else 9090

try:
    # Make socket
    transport = TSocket.TSocket("localhost", port)

    # Buffering is critical. Raw sockets are very slow
    transport = TTransport.TBufferedTransport(transport)

    # Wrap in a protocol
    protocol = TBinaryProtocol.TBinaryProtocol(transport)

    # Create a client to use the protocol encoder
    client = HelloService.Client(protocol)

    # Connect!
    transport.open()

    client.sayHello()
    print("ping()")

    print(client.getData("client access"))
    # Close!
    transport.close()

except Thrift.TException as tx:
    print(tx.message)
    sys.exit(1)
