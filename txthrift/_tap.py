"""
The C{twistd thrift} plugin: its options, and the service they make.

    twistd -n thrift --handler tutorial_handler.CalculatorHandler --port 9090

Everything the service does is in L{txthrift._appservice} (one process) and
L{txthrift._workers} (C{--workers N}); handlers and services are loaded by
L{txthrift._loading}.  This module turns command lines into them, each
mistake into one clear line, and knows nothing of how serving is done.
"""

from __future__ import annotations

import atexit
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from twisted.application.service import Service
from twisted.copyright import version as twistedVersion
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.python import usage

from ._appservice import (
    DEFAULT_HTTP_PATH,
    DEFAULT_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    ThriftService,
    thriftService,
)
from ._framing import PROTOCOLS, TRANSPORTS, checkFraming
from ._heap import DEFAULT_KEEP, keepFreedMemory
from ._hosting import parseEndpoint
from ._limits import Limits, defaultReactor
from ._loading import HandlerFailed, loadHandlers
from ._sasl import checkServerMechanism
from ._service import resolve
from ._tls import requiringClientCertificates
from ._tracing import openTelemetry
from ._version import __version__
from ._workers import WorkersService
from .metrics import prometheusClient

__all__ = ["Options", "makeService", "versions"]


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


class Options(AuthOptionMixin, usage.Options):
    """
    The options of C{twistd thrift}.

    After parsing, C{self["handler"]} is the handler (or the mapping of
    names to C{(handler, service module)} pairs), made with the
    C{--handler-option} keywords, C{self["service"]} its service module (or
    None), C{self["ports"]} the endpoint descriptions (C{--port} and
    C{--listen}), C{self["http-ports"]} and C{self["ws-ports"]} those of
    C{--http-port} and C{--ws-port}, and C{self["limits"]} the L{Limits}
    keywords.  A mistake on the command line raises C{usage.UsageError}; a
    handler whose own code fails to import or to make it ends the process
    (C{SystemExit}) with one line saying where, since twistd prints its
    usage text for the former.

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
        "--handler-option key=value (repeatable) passes key='value' to that class or"
        " function; values are strings. "
        "--http-port serves Thrift over HTTP (one call per POST to --http-path), "
        "--ws-port over WebSocket, alongside --port or instead of it. "
        "On SIGTERM or SIGINT the server stops listening and lets calls in flight "
        "finish for up to --shutdown-timeout seconds. With --workers N (N > 1, TCP ports"
        " only), twistd binds the ports itself and N worker processes serve them, the"
        " kernel spreading connections among them; a worker that dies is restarted, and"
        " stopping tells each worker to finish its calls in flight."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        ["transport", None, "auto",
         ("Thrift transport: framed, buffered, zlib (Apache's TZlibTransport), or auto to"
          " detect it per connection.")],
        ["protocol", None, "auto",
         "Thrift protocol: binary, compact, json, or auto to detect it per connection."],
        ["http-path", None, DEFAULT_HTTP_PATH,
         "Where --http-port serves Thrift over HTTP: a path such as /thrift."],
        ["max-frame-size", None, str(Limits().max_frame_size),
         "Largest message accepted, in bytes."],
        ["max-string-length", None, None,
         "Largest string or binary value accepted, in bytes (default: --max-frame-size)."],
        ["max-container-length", None, None,
         "Most elements accepted in one list, set or map (default: --max-frame-size)."],
        ["max-depth", None, str(Limits().max_depth),
         "Deepest nesting of structs and containers accepted (the message's own struct is 1)."],
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
        ["keep-freed-mib", None, str(DEFAULT_KEEP // 2**20),
         ("MiB of freed memory the C allocator (glibc's malloc) keeps for reuse instead of"
          " handing it back at once; big messages then reuse memory instead of faulting"
          " fresh pages in for every call (0: the allocator's own defaults).")],
        ["tls-client-ca", None, None,
         ("A PEM file of CA certificates: every ssl: port (of each kind) then requires a"
          " client certificate signed by one of them, refusing other clients during the"
          " TLS handshake; handlers see it as txthrift.currentCall().tlsCertificate.")],
        ["sasl", None, None,
         ("Require SASL with this mechanism (PLAIN) on every --port, checking credentials"
          " with --auth; handlers see the user as txthrift.currentCall().identity. Not for"
          " --http-port or --ws-port.")],
        ["workers", None, "1",
         ("Serve with this many worker processes sharing the listening sockets (TCP ports"
          " only), restarted when they die (1: serve in the twistd process itself).")],
        ["metrics-port", None, None,
         ("Serve /metrics (Prometheus), /healthz and /readyz (503 from the moment a stop"
          " begins draining) on this server endpoint; needs txthrift[metrics].")],
        ["access-log", None, None,
         ("Write one JSON line per call to this file (appended to; - for standard output):"
          " time, peer, identity, service, method, seqid, outcome, duration_us,"
          " request_bytes, reply_bytes. Each worker of --workers appends its own lines.")],
    ]

    optFlags: ClassVar[list[list[Any]]] = [
        ["trace", None,
         ("An OpenTelemetry span per call, continuing a traceparent the caller sent, to"
          " OpenTelemetry's configured tracer provider (needs txthrift[tracing]).")],
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
        self["handler-options"] = []
        self["ports"] = []
        self["http-ports"] = []
        self["ws-ports"] = []
        #: The --auth descriptions, for the workers to make their checkers from.
        self["auth"] = []
        #: The option each of C{self["ports"]} came with, for messages.
        self._portOptions: list[str] = []

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
    def opt_handler_option(self, value: str) -> None:
        """
        key=value: a keyword argument, its value a string, for the class or function
        --handler names (Name:key=value for a named handler); repeat for each.
        """
        self["handler-options"].append(value)

    @_helpText
    def opt_port(self, value: str) -> None:
        """
        Where to listen: a port number or a server endpoint description such as
        tcp:9090:interface=127.0.0.1, ssl:9443:privateKey=key.pem:certKey=cert.pem or
        unix:/run/thrift.sock; repeat to listen on several [default: tcp:9090].
        """
        self["ports"].append(value)
        self._portOptions.append("port")

    @_helpText
    def opt_listen(self, value: str) -> None:
        """
        The same as --port, spelt as twistd web spells it.
        """
        self["ports"].append(value)
        self._portOptions.append("listen")

    @_helpText
    def opt_http_port(self, value: str) -> None:
        """
        Where to serve Thrift over HTTP, each POST to --http-path one call: a port number
        or a server endpoint description (ssl: for HTTPS); repeat to listen on several.
        """
        self["http-ports"].append(value)

    @_helpText
    def opt_ws_port(self, value: str) -> None:
        """
        Where to serve Thrift over WebSocket, one Thrift message per WebSocket message: a
        port number or a server endpoint description (ssl: for wss); repeat to listen on
        several. Needs txthrift[websocket].
        """
        self["ws-ports"].append(value)

    #: What --auth checkers must check: SASL PLAIN's user names and passwords.
    supportedInterfaces = (IUsernamePassword,)

    @_helpText
    def opt_auth(self, description: str) -> None:
        """
        With --sasl, where user names and passwords are checked, as Twisted's checkers
        say it: memory:USER:PASSWORD[:USER:PASSWORD...], file:PATH (lines of
        user:password), unix; repeat to accept users of each. --help-auth lists them.
        """
        kind, _, path = description.partition(":")
        if kind == "file" and not os.path.isfile(path):
            # Twisted's own file: checker only warns, and then refuses everyone.
            raise usage.UsageError(f"--auth: {description!r}: no such file")
        super().opt_auth(description)
        self["auth"].append(description)

    def opt_version(self) -> None:
        """
        Show the versions of txthrift, Twisted and Python, and exit.
        """
        print(versions())
        sys.exit(0)

    def postOptions(self) -> None:
        self._checkChoices()
        self._checkNumbers()
        self._checkPorts()
        self._checkSasl()
        self._checkObserving()
        try:
            self["handler"], self["service"] = loadHandlers(
                self["handlers"], self["services"], self["handler-options"])
        except HandlerFailed as error:
            # Not a mistake on the command line: no usage text (twistd prints
            # it for a UsageError), only what failed and where.
            raise SystemExit(f"twistd thrift: {error}") from None

    def _checkChoices(self) -> None:
        for option, choices in (("transport", TRANSPORTS), ("protocol", PROTOCOLS)):
            if self[option] not in choices:
                raise usage.UsageError(f"--{option}: unknown {option} {self[option]!r};"
                                       f" choose one of {', '.join(choices)}")
        try:
            checkFraming(self["transport"], self["protocol"])
        except ValueError as error:
            raise usage.UsageError(f"--transport: {error}") from None

    def _checkNumbers(self) -> None:
        limits: dict[str, Any] = {
            "max_frame_size": _number("max-frame-size", self["max-frame-size"], int, 1,
                                      what=" of bytes"),
            "max_depth": _number("max-depth", self["max-depth"], int, 1),
            "max_pending": _number("max-pending", self["max-pending"], int, 1),
        }
        for option, what in (("max-string-length", " of bytes"),
                             ("max-container-length", " of elements")):
            if self[option] is not None:
                limits[option.replace("-", "_")] = _number(option, self[option], int, 0,
                                                           what=what)
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
        self["keep-freed-mib"] = _number("keep-freed-mib", self["keep-freed-mib"], int, 0,
                                         what=" of MiB")

    def _checkPorts(self) -> None:
        if not (self["ports"] or self["http-ports"] or self["ws-ports"]):
            self["ports"] = [DEFAULT_PORT]
            self._portOptions = ["port"]
        if not self["http-path"].startswith("/"):
            raise usage.UsageError(f"--http-path: a path starts with /, not"
                                   f" {self['http-path']!r}")
        if self["ws-ports"]:
            try:
                from . import _websocket  # noqa: F401  autobahn: txthrift[websocket]
            except ImportError as error:
                raise usage.UsageError(f"--ws-port: {' '.join(str(error).split())}") from None
        if self["tls-client-ca"] is not None:
            self._requireClientCertificates(self["tls-client-ca"])
        reactor = defaultReactor()
        options = self._portOptions + ["http-port"] * len(self["http-ports"]) + [
            "ws-port"] * len(self["ws-ports"])
        ports = self["ports"] + self["http-ports"] + self["ws-ports"]
        for option, port in zip(options, ports):
            try:
                _, endpoint = parseEndpoint(reactor, port)
            except ValueError as error:
                raise usage.UsageError(f"--{option}: {port!r}: {error}") from None
            if self["workers"] > 1 and type(endpoint) not in (TCP4ServerEndpoint,
                                                              TCP6ServerEndpoint):
                raise usage.UsageError(f"--{option}: {port!r}: --workers takes TCP ports only"
                                       " (tcp:PORT or tcp6:PORT)")


    def _checkObserving(self) -> None:
        path = self["access-log"]
        if path is not None and path != "-":
            try:
                with open(path, "ab"):
                    pass
            except OSError as error:
                raise usage.UsageError(f"--access-log: cannot append to {path!r}:"
                                       f" {error.strerror or error}") from None
        if self["trace"]:
            try:
                openTelemetry()
            except ImportError as error:
                raise usage.UsageError(f"--trace: {error}") from None
        if self["metrics-port"] is not None:
            self._checkMetricsPort(self["metrics-port"])

    def _checkMetricsPort(self, port: str) -> None:
        try:
            prometheusClient()
        except ImportError as error:
            raise usage.UsageError(f"--metrics-port: {error}") from None
        try:
            self["metrics-endpoint"] = parseEndpoint(defaultReactor(), port)
        except ValueError as error:
            raise usage.UsageError(f"--metrics-port: {port!r}: {error}") from None

    def _checkSasl(self) -> None:
        if self["sasl"] is None:
            if self["auth"]:
                raise usage.UsageError("--auth: needs --sasl PLAIN: the credentials it names"
                                       " are checked in the SASL handshake")
            return
        try:
            self["sasl"] = checkServerMechanism(self["sasl"])
        except ValueError as error:
            raise usage.UsageError(f"--sasl: {error}") from None
        if not self["auth"]:
            raise usage.UsageError("--sasl: needs --auth, where user names and passwords are"
                                   " checked (memory:USER:PASSWORD, file:PATH or unix; see"
                                   " --help-auth)")
        if self["http-ports"] or self["ws-ports"] or not self["ports"]:
            raise usage.UsageError("--sasl: applies to --port ports only; --http-port and"
                                   " --ws-port would serve without authentication")

    def _requireClientCertificates(self, clientCA: str) -> None:
        """
        Make every C{ssl:} port of each kind require client certificates.
        """
        found = [requiringClientCertificates(self[kind], clientCA)
                 for kind in ("ports", "http-ports", "ws-ports")]
        if not any(found):
            raise usage.UsageError("--tls-client-ca: no ssl: port to require client"
                                   " certificates on")


def versions() -> str:
    """
    What C{twistd thrift --version} shows: txthrift's version, and what it
    runs on.
    """
    return (f"txthrift {__version__} (Twisted {twistedVersion},"
            f" {platform.python_implementation()} {platform.python_version()})")


def makeService(options: Options) -> Service:
    """
    The C{twistd thrift} service, from parsed L{Options}: a L{ThriftService},
    or with C{--workers} above 1 the service supervising the worker
    processes.
    """
    service: ThriftService | WorkersService
    if options["keep-freed-mib"]:
        keepFreedMemory(options["keep-freed-mib"] * 2**20)
    if options["workers"] > 1:
        service = _workersService(options)
    else:
        service = thriftService(
            options["handler"], port=options["ports"], http_port=options["http-ports"],
            http_path=options["http-path"], ws_port=options["ws-ports"],
            service=options["service"],
            transport=options["transport"], protocol=options["protocol"],
            threads=options["threads"], shutdown_timeout=options["shutdown-timeout"],
            sasl=options["credCheckers"] if options["sasl"] else None,
            access_log=options["access-log"], trace=bool(options["trace"]),
            metrics_port=options["metrics-port"],
            **options["limits"])
    # Registered first, so run last: after twistd's own clean-up.
    atexit.register(_exitStatus, service)
    return service


def _exitStatus(service: ThriftService | WorkersService) -> None:
    """
    At exit, end the process with status 1 if C{service} gave up (a port
    lost after start-up, workers dying too often), so that whatever
    supervises it knows; twistd exits 0 whenever its reactor stops without
    a signal.

    twistd has no way to hear of a failure once its reactor runs: its
    runner only reads the reactor's exit signal after C{run()} returns, an
    exception (C{SystemExit} included) raised in the reactor is logged and
    dropped, and C{sys.exit} in an C{atexit} hook leaves the status as it
    was (bpo-27035).  C{os._exit} from the last C{atexit} hook is the one
    way left; it runs after twistd's own clean-up (pidfile, log), and only
    flushing stdout and stderr is skipped, so it does that first.
    """
    if service.gaveUp:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _workersService(options: Options) -> WorkersService:
    reactor = defaultReactor()
    config = {"handlers": options["handlers"], "services": options["services"],
              "handler_options": options["handler-options"],
              "transport": options["transport"], "protocol": options["protocol"],
              "limits": options["limits"], "threads": options["threads"],
              "shutdown_timeout": options["shutdown-timeout"],
              "keep_freed": options["keep-freed-mib"] * 2**20,
              "http_path": options["http-path"], "sasl": options["sasl"],
              "auth": options["auth"], "access_log": options["access-log"],
              "trace": bool(options["trace"])}
    if options["metrics-port"] is not None:
        # Each worker dumps its counters here; the parent serves their sum.
        config["metrics_dir"] = tempfile.mkdtemp(prefix="txthrift-metrics-")
    kinds = (["thrift"] * len(options["ports"]) + ["http"] * len(options["http-ports"])
             + ["websocket"] * len(options["ws-ports"]))
    ports = options["ports"] + options["http-ports"] + options["ws-ports"]
    service = WorkersService(reactor, [parseEndpoint(reactor, port) for port in ports],
                             options["workers"], config, kinds=kinds,
                             served=resolve(options["handler"], options["service"]).name)
    if options["metrics-port"] is not None:
        service.serveMetrics(options["metrics-endpoint"], config["metrics_dir"])
    return service
