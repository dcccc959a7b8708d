#!/usr/bin/env python3
"""
The seed's blocking server, ported to Python 3 and otherwise unchanged:
Apache Thrift's TSimpleServer, one connection at a time, buffered binary.

    python examples/hello/seed_server.py [PORT]

PORT defaults to 9090.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "gen")]

from HelloService import HelloService
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport


class HelloServiceHandler:
    def __init__(self):
        self.log = {}

    def func1(self):
        print("func1()")

    def sayHello(self):
        print("sayHello")

    def getData(self, input):
        return input + " from server 1024"


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9090

handler = HelloServiceHandler()
processor = HelloService.Processor(handler)
transport = TSocket.TServerSocket(port=port)
tfactory = TTransport.TBufferedTransportFactory()
pfactory = TBinaryProtocol.TBinaryProtocolFactory()

server = TServer.TSimpleServer(processor, transport, tfactory, pfactory)

print("Starting the server...")
server.serve()
print("done.")
