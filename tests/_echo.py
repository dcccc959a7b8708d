"""
The plain answers of the test service C{Echo}, shared by every test handler;
each handler adds or changes what its tests are about (threads, Deferreds,
coroutines, faults).
"""

from __future__ import annotations

from tests.gen.py.txthrift_test import Echo

#: What the seed example's getData appends to its input.
SUFFIX = " from server 1024"


class EchoBasics(Echo.Iface):
    def ping(self, x: int) -> int:
        return x + 1

    def sayHello(self) -> None:
        return None

    def getData(self, input: str) -> str:
        return input + SUFFIX

    def echo(self, text: str, repeat: int) -> str:
        return text * repeat

    def add(self, a: int, b: int) -> int:
        return a + b
