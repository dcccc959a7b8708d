"""
The seed example's HelloService handler, as the blog post wrote it, in
Python 3.  Nothing in it knows about Twisted: txthrift serves it as it is.
"""

from HelloService import HelloService


class HelloServiceHandler(HelloService.Iface):
    def sayHello(self) -> None:
        pass

    def getData(self, input: str) -> str:
        return input + " from server 1024"
