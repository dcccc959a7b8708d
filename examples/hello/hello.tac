# The hello example as a twistd application file:
#
#     twistd -ny examples/hello/hello.tac
#
# serves the seed's HelloServiceHandler on $PORT (default tcp:9090:interface=127.0.0.1), as
# `twistd -n thrift --handler hello_handler.HelloServiceHandler` does.  It finds the handler
# and its generated code beside itself, wherever it is run from.
import importlib
import os
import sys

from twisted.application import service

import txthrift

here = os.path.dirname(os.path.abspath(__file__))
for folder in (os.path.join(here, "gen"), here):
    if folder not in sys.path:
        sys.path.insert(0, folder)
handler = importlib.import_module("hello_handler").HelloServiceHandler()

application = service.Application("hello")
txthrift.thriftService(
    handler, port=os.environ.get("PORT", "tcp:9090:interface=127.0.0.1")
).setServiceParent(application)
