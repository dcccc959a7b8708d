"""
The C{twistd thrift} plugin: its options, and the service they make.

    twistd -n thrift --handler tutorial_handler.CalculatorHandler --port 9090

Everything the service does is in L{txthrift._appservice} (one process) and
L{txthrift._workers} (C{--workers N}); this module turns command lines into
them, each mistake into one clear line.
"""

from __future__ import annotations

import atexit
import importlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from twisted.application.service import Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.python import usage

from ._appservice import (
    DEFAULT_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    ThriftService,
    oneLine,
    parseEndpoint,
    servedName,
    thriftService,
)
from ._framing import PROTOCOLS, TRANSPORTS
from ._limits import Limits, defaultReactor
from ._server import makeDispatcher
from ._service import describe, serviceOf

if TYPE_CHECKING:
    from ._workers import WorkersService

__all__ = ["Options", "makeService"]

def _resolve(option: str, path: str) -> object:
    """
    The object a dotted name names, importing what it takes.

    @raise usage.UsageError: naming C{option}, for a name that names nothing
        or a module that fails to import.
    """
    parts = path.split(".")
    if not path or not all(part.isidentifier() for part in parts):
        raise usage.UsageError(f"--{option}: {path!r} is not a dotted Python name"
                               " (package.module.Name)")

    def load(name: str) -> ModuleType | None:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name + ".").startswith(error.name + "."):
                return None
            raise usage.UsageError(f"--{option}: importing {name} failed: {oneLine(error)}")
        except Exception as error:
            raise usage.UsageError(f"--{option}: importing {name} failed: {oneLine(error)}")

    found: object = load(parts[0])
    if found is None:
        raise usage.UsageError(f"--{option}: no module named {parts[0]!r}"
                               " (is its folder on PYTHONPATH?)")
    for index, part in enumerate(parts[1:], 2):
        if isinstance(found, ModuleType) and hasattr(found, "__path__") \
                and not hasattr(found, part):
            module = load(".".join(parts[:index]))
            if module is not None:
                found = module
                continue
        try:
            found = getattr(found, part)
        except AttributeError:
            owner = ".".join(parts[:index - 1])
            raise usage.UsageError(f"--{option}: {owner} has no attribute {part!r}") from None
        except Exception as error:
            raise usage.UsageError(f"--{option}: {path}: {oneLine(error)}") from None
    return found


def _named(option: str, value: str) -> tuple[str | None, str]:
    """
    Split C{Name=dotted.path} (or a bare path) as C{--handler} and
    C{--service} take it.
    """
    name, equals, path = value.partition("=")
    if not equals:
        return None, value.strip()
    name = name.strip()
    if not name or ":" in name or any(char.isspace() for char in name):
        raise usage.UsageError(f"--{option}: {name!r} in {value!r} is not a service name")
    return name, path.strip()


def _number(option: str, value: str, kind: type, minimum: float, inclusive: bool = True,
            what: str = "") -> Any:
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < minimum \
            or (not inclusive and number == minimum):
        bound = f"{'at least' if inclusive else 'more than'} {minimum:g}"
        noun = "whole number" if kind is int else "number"
        raise usage.UsageError(f"--{option}: expected a {noun}{what}, {bound}, not {value!r}")
    return number


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _helpText(method: _Method) -> _Method:
    """
    Make an C{opt_} method's docstring, which C{--help} shows, one paragraph.
    """
    method.__doc__ = " ".join((method.__doc__ or "").split())
    return method


class Options(usage.Options):
    """
    The options of C{twistd thrift}.

    After parsing, C{self["handler"]} is the handler (or the mapping of
    names to C{(handler, service module)} pairs), C{self["service"]} its
    service module (or None), C{self["ports"]} the endpoint descriptions and
    C{self["limits"]} the L{Limits} keywords.

    C{--workers N} serves with N processes:

        twistd -n thrift --handler app.Handler --port tcp:9090 --workers 4

    twistd binds every port itself (each must be C{tcp:} or C{tcp6:}), logs
    one C{Serving ... on ...} line with the ports really bound, and starts N
    worker processes that adopt the listening sockets and serve them each
    as a single process would: the kernel spreads the connections among
    them.  A worker that dies is restarted (up to N times in 10 seconds,
    then twistd stops).  On SIGTERM or SIGINT, twistd sends each worker
    SIGTERM, which lets its calls in flight finish for up to
    C{--shutdown-timeout} seconds, kills those still running a few seconds
    later, and exits; a worker whose twistd goes away stops by itself.
    """

    synopsis = "--handler module.Handler [--port ENDPOINT] [options]"

    longdesc = (
        "Serve a Thrift handler: an object with the methods of a service made by "
        "'thrift --gen py' (returning values, Deferreds or coroutines), or any Thrift "
        "processor. --handler names it as module.Name (on PYTHONPATH); a class or "
        "function found there is called with no arguments. Repeat --handler as "
        "Name=module.Handler to serve several services multiplexed on every port. "
        "On SIGTERM or SIGINT the server stops listening and lets calls in flight "
        "finish for up to --shutdown-timeout seconds. With --workers N (N > 1, TCP ports"
        " only), twistd binds the ports itself and N worker processes serve them, the"
        " kernel spreading connections among them; a worker that dies is restarted, and"
        " stopping tells each worker to finish its calls in flight."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        ["transport", None, "auto",
         "Thrift transport: framed, buffered, or auto to detect it per connection."],
        ["protocol", None, "auto",
         "Thrift protocol: binary, compact, json, or auto to detect it per connection."],
        ["max-frame-size", None, str(Limits().max_frame_size),
         "Largest message accepted, in bytes."],
        ["max-pending", None, str(Limits().max_pending),
         "Requests processed at once per connection; past it, reading pauses."],
        ["idle-timeout", None, None,
         "Seconds a connection may stay idle before it is closed (default: never)."],
        ["call-timeout", None, None,
         ("Seconds a handler may take to answer before the call is cancelled and the "
          "client gets an error (default: no limit).")],
        ["half-closed-timeout", None, None,
         ("Seconds to wait for each next reply to a client that has stopped sending (or gone)"
          " before its calls are cancelled; off to wait for ever (default: "
          f"{Limits().half_closed_timeout:g}).")],
        ["partial-timeout", None, None,
         ("Seconds a request may take to arrive, from its first byte to its last, before "
          f"its connection is closed; off for no limit (default: {Limits().partial_timeout:g}).")],
        ["partial-budget", None, None,
         ("Bytes all connections together may hold of requests not yet complete; past it, "
          "reading more of them waits (one goes on); off for no limit (default: "
          f"{Limits().partial_budget}, 64 MiB).")],
        ["threads", None, "0",
         ("Run the handler's plain methods in a pool of this many threads, for handlers "
          "that block; async def and inlineCallbacks methods stay in the reactor thread "
          "(0: call every method in the reactor thread).")],
        ["shutdown-timeout", None, f"{DEFAULT_SHUTDOWN_TIMEOUT:g}",
         "Seconds to let calls in flight finish when stopping."],
        ["workers", None, "1",
         ("Serve with this many worker processes sharing the listening sockets (TCP ports"
          " only), restarted when they die (1: serve in the twistd process itself).")],
    ]

    compData = usage.Completions(
        optActions={
            "transport": usage.CompleteList(list(TRANSPORTS)),
            "protocol": usage.CompleteList(list(PROTOCOLS)),
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self["handlers"] = []
        self["services"] = []
        self["ports"] = []

    @_helpText
    def opt_handler(self, value: str) -> None:
        """
        The handler to serve, as module.Handler; repeat as Name=module.Handler to serve
        several services multiplexed.
        """
        self["handlers"].append(value)

    @_helpText
    def opt_service(self, value: str) -> None:
        """
        The generated service module (as package.Module, or Name=package.Module for a
        named handler), when it cannot be told from the handler's Iface.
        """
        self["services"].append(value)

    @_helpText
    def opt_port(self, value: str) -> None:
        """
        Where to listen: a port number or a server endpoint description such as
        tcp:9090:interface=127.0.0.1, ssl:9443:privateKey=key.pem:certKey=cert.pem or
        unix:/run/thrift.sock; repeat to listen on several [default: tcp:9090].
        """
        self["ports"].append(value)

    def postOptions(self) -> None:
        self._checkChoices()
        self._checkNumbers()
        self._checkPorts()
        self._loadHandlers()

    def _checkChoices(self) -> None:
        for option, choices in (("transport", TRANSPORTS), ("protocol", PROTOCOLS)):
            if self[option] not in choices:
                raise usage.UsageError(f"--{option}: unknown {option} {self[option]!r};"
                                       f" choose one of {', '.join(choices)}")

    def _checkNumbers(self) -> None:
        limits: dict[str, Any] = {
            "max_frame_size": _number("max-frame-size", self["max-frame-size"], int, 1,
                                      what=" of bytes"),
            "max_pending": _number("max-pending", self["max-pending"], int, 1),
        }
        for option in ("idle-timeout", "call-timeout"):
            if self[option] is not None:
                limits[option.replace("-", "_")] = _number(
                    option, self[option], float, 0, inclusive=False, what=" of seconds")
        for option, kind, what in (("half-closed-timeout", float, "a number of seconds"),
                                   ("partial-timeout", float, "a number of seconds"),
                                   ("partial-budget", int, "a whole number of bytes")):
            value = self[option]
            if value is None:
                continue
            if value.strip().lower() == "off":
                limits[option.replace("-", "_")] = None
                continue
            try:
                limits[option.replace("-", "_")] = _number(option, value, kind, 0,
                                                           inclusive=False)
            except usage.UsageError:
                raise usage.UsageError(f"--{option}: expected {what} more than 0, or off,"
                                       f" not {value!r}") from None
        for name, value in limits.items():
            try:
                Limits(**{name: value})
            except ValueError as error:
                raise usage.UsageError(f"--{name.replace('_', '-')}: {error}") from None
        self["limits"] = limits
        self["threads"] = _number("threads", self["threads"], int, 0)
        self["shutdown-timeout"] = _number("shutdown-timeout", self["shutdown-timeout"], float,
                                           0, what=" of seconds")
        self["workers"] = _number("workers", self["workers"], int, 1)

    def _checkPorts(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        reactor = defaultReactor()
        for port in self["ports"]:
            try:
                _, endpoint = parseEndpoint(reactor, port)
            except ValueError as error:
                raise usage.UsageError(f"--port: {port!r}: {error}") from None
            if self["workers"] > 1 and type(endpoint) not in (TCP4ServerEndpoint,
                                                              TCP6ServerEndpoint):
                raise usage.UsageError(f"--port: {port!r}: --workers takes TCP ports only"
                                       " (tcp:PORT or tcp6:PORT)")

    def _loadHandlers(self) -> None:
        handlers = [_named("handler", value) for value in self["handlers"]]
        if not handlers:
            raise usage.UsageError("--handler is required: the handler to serve, as"
                                   " module.Handler")
        names = [name for name, _ in handlers]
        multiplexed = len(handlers) > 1 or names[0] is not None
        if multiplexed and None in names:
            raise usage.UsageError("--handler: with several handlers, name each one:"
                                   " --handler Name=module.Handler")
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise usage.UsageError(f"--handler: service name {duplicate!r} used twice")
        services: dict[str | None, ModuleType] = {}
        for value in self["services"]:
            name, path = _named("service", value)
            if multiplexed and name is None:
                raise usage.UsageError("--service: with named handlers, name the service too:"
                                       " --service Name=package.Module")
            if name not in names:
                raise usage.UsageError(f"--service: no --handler is named {name!r}" if name
                                       else "--service: name it as the handler: Name=module")
            if name in services:
                raise usage.UsageError(f"--service: given twice for {name or 'the handler'}")
            services[name] = self._loadService(path)
        served: dict[str, tuple[object, ModuleType | None]] = {}
        for name, path in handlers:
            handler, module = self._loadHandler(name, path, services.get(name))
            if name is None:
                self["handler"], self["service"] = handler, module
                return
            served[name] = (handler, module)
        self["handler"], self["service"] = served, None

    @staticmethod
    def _loadService(path: str) -> ModuleType:
        module = _resolve("service", path)
        try:
            if not isinstance(module, ModuleType):
                raise TypeError("not a module")
            describe(module)
        except TypeError:
            raise usage.UsageError(
                f"--service: {path} is not a generated Thrift service module (one with Iface,"
                " Client and Processor, made by thrift --gen py)") from None
        return module

    @staticmethod
    def _loadHandler(name: str | None, path: str,
                     service: ModuleType | None) -> tuple[object, ModuleType | None]:
        found = _resolve("handler", path)
        handler = found
        if isinstance(found, type) or (callable(found) and not isinstance(found, ModuleType)
                                       and not callable(getattr(found, "process", None))):
            try:
                handler = found()
            except Exception as error:
                raise usage.UsageError(f"--handler: calling {path}() failed: {oneLine(error)}")
        if service is None and not callable(getattr(handler, "process", None)):
            service = serviceOf(handler)
            if service is None:
                example = f"{name}=package.Module" if name else "package.Module"
                raise usage.UsageError(
                    f"--handler: cannot tell which Thrift service {path} implements (it neither"
                    " subclasses nor declares a generated Iface, nor has process());"
                    f" name the generated module with --service {example}")
        try:
            makeDispatcher(handler, service)
        except (TypeError, ValueError) as error:
            raise usage.UsageError(f"--handler: {path}: {oneLine(error)}") from None
        return handler, service


def makeService(options: Options) -> Service:
    """
    The C{twistd thrift} service, from parsed L{Options}: a L{ThriftService},
    or with C{--workers} above 1 the service supervising the worker
    processes.
    """
    service: ThriftService | WorkersService
    if options["workers"] > 1:
        service = _workersService(options)
    else:
        service = thriftService(
            options["handler"], port=options["ports"], service=options["service"],
            transport=options["transport"], protocol=options["protocol"],
            threads=options["threads"], shutdown_timeout=options["shutdown-timeout"],
            **options["limits"])
    # Registered first, so run last: after twistd's own clean-up.
    atexit.register(_exitStatus, service)
    return service


def _exitStatus(service: ThriftService | WorkersService) -> None:
    """
    twistd exits 0 whenever its reactor stops without a signal; a service
    that gave up (a port lost after start-up, workers dying too often) makes
    the process exit 1 instead, so that whatever supervises it knows.
    """
    if service.gaveUp:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _workersService(options: Options) -> WorkersService:
    from ._workers import WorkersService, listenerOf

    reactor = defaultReactor()
    listeners = [listenerOf(*parseEndpoint(reactor, port)) for port in options["ports"]]
    limits = asdict(Limits.from_keywords(**options["limits"]))
    details = (f"transport={options['transport']} protocol={options['protocol']}"
               f" max_frame_size={limits['max_frame_size']} max_pending={limits['max_pending']}"
               f" idle_timeout={limits['idle_timeout']} call_timeout={limits['call_timeout']}"
               f" threads={options['threads']} shutdown_timeout={options['shutdown-timeout']}")
    config = {"handlers": options["handlers"], "services": options["services"],
              "transport": options["transport"], "protocol": options["protocol"],
              "limits": options["limits"], "threads": options["threads"],
              "shutdown_timeout": options["shutdown-timeout"]}
    return WorkersService(reactor, listeners, options["workers"], config,
                          shutdownTimeout=options["shutdown-timeout"],
                          served=servedName(options["handler"], options["service"]),
                          details=details)
