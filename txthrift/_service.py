"""
What a generated service module declares, read once and shared by the
client and the server; and what a handler argument is (L{resolve}): a
handler object of some service, a processor, or several of either by name.

Both flavours of generated code (C{thrift --gen py} and C{--gen
py:twisted}) define, per method C{m}, a struct C{m_args} whose constructor
takes the arguments in declaration order and, unless C{m} is oneway, a
struct C{m_result} whose field 0 is C{success} and whose other fields are
the declared exceptions.  Nothing else of the generated code is needed.

This module knows nothing of bytes, connections, threads or hosting.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from types import ModuleType
from typing import Any, Literal

from zope.interface import providedBy
from zope.interface.interface import InterfaceClass

__all__ = ["Method", "Served", "ServiceSpec", "UnknownService", "describe", "isProcessor",
           "resolve", "serviceOf", "shortName"]


def _noValues(args: object) -> tuple[()]:
    return ()


@dataclass(frozen=True, eq=False)
class Method:
    """
    One method of a service.

    @ivar result: the result struct, C{None} for a oneway method.
    @ivar argNames: argument names in declaration order (the order of the
        generated signatures, not of the field ids).
    @ivar exceptions: (result field name, exception class) for each declared
        exception, in declaration order.
    """

    name: str
    args: type
    result: type | None
    argNames: tuple[str, ...]
    returnsValue: bool
    exceptions: tuple[tuple[str, type], ...]

    @cached_property
    def argGetter(self) -> tuple[Callable[[object], Any], bool]:
        """
        How to get the values of an args struct in declaration order: a
        getter, and whether what it gets is a tuple to spread (for one
        argument it is the value itself, which saves a call per request).
        """
        names = self.argNames
        if len(names) == 1:
            return attrgetter(names[0]), False
        if names:
            return attrgetter(*names), True
        return _noValues, True

    @property
    def oneway(self) -> bool:
        return self.result is None


@dataclass(frozen=True)
class ServiceSpec:
    """
    A service's methods, inherited ones (C{extends}) included.
    """

    name: str
    module: ModuleType
    methods: dict[str, Method]


def _isServiceModule(module: ModuleType | None) -> bool:
    return module is not None and all(
        hasattr(module, name) for name in ("Iface", "Client", "Processor"))


def _declared(iface: Any) -> set[str]:
    if isinstance(iface, InterfaceClass):
        return set(iface.names())
    return {name for name in vars(iface) if not name.startswith("_")}


def _method(module: ModuleType, name: str) -> Method:
    args = getattr(module, name + "_args")
    init = vars(args).get("__init__")
    argNames = tuple(inspect.signature(init).parameters)[1:] if init is not None else ()
    result = getattr(module, name + "_result", None)
    returnsValue = False
    exceptions = []
    if result is not None:
        for field in result.thrift_spec:
            if field is None:
                continue
            if field[0] == 0:
                returnsValue = True
            else:
                exceptions.append((field[2], field[3][0]))
    return Method(name, args, result, argNames, returnsValue, tuple(exceptions))


_described: dict[ModuleType, ServiceSpec] = {}


def describe(module: ModuleType) -> ServiceSpec:
    """
    Read a generated service module.

    @raise TypeError: when C{module} is not a generated service module.
    """
    spec = _described.get(module)
    if spec is not None:
        return spec
    if not _isServiceModule(module):
        raise TypeError(
            f"{module!r} is not a generated Thrift service module"
            " (one with Iface, Client and Processor, made by thrift --gen py)")
    methods: dict[str, Method] = {}
    pending: list[Any] = [module.Iface]
    seen: set[Any] = set()
    while pending:
        iface: Any = pending.pop(0)
        if iface in seen:
            continue
        seen.add(iface)
        owner = sys.modules.get(iface.__module__)
        if _ifaceOf(owner) is not iface:
            continue
        assert owner is not None
        for name in sorted(_declared(iface)):
            if name not in methods and hasattr(owner, name + "_args"):
                methods[name] = _method(owner, name)
        pending.extend(getattr(iface, "__bases__", ()))
    spec = _described[module] = ServiceSpec(module.__name__.rpartition(".")[2], module, methods)
    return spec


def serviceOf(handler: object) -> ModuleType | None:
    """
    The generated service module a handler implements, if it says: by
    subclassing the module's C{Iface} (C{--gen py}) or declaring it with
    C{@implementer} (C{--gen py:twisted}).  The most derived one wins.
    """
    declared = [*type(handler).__mro__, *providedBy(handler).flattened()]
    for iface in declared:
        if iface.__name__ == "Iface":
            module = sys.modules.get(iface.__module__)
            if _ifaceOf(module) is iface:
                return module
    return None


def _ifaceOf(module: ModuleType | None) -> Any:
    return module.Iface if module is not None and _isServiceModule(module) else None


def isProcessor(handler: object) -> bool:
    """
    Whether C{handler} is a processor: anything with C{process(iprot, oprot)}.
    """
    return callable(getattr(handler, "process", None))


#: What a handler argument is: see L{Served}.
Kind = Literal["handler", "processor", "multiplexed"]

_SERVICE_ARGUMENT = ("pass service= (the generated module), subclass its Iface,"
                     " or declare @implementer(Iface)")


class UnknownService(TypeError):
    """
    No generated service module can be found for a handler object.
    """

    def __init__(self, handler: object, shown: str | None = None,
                 remedy: str = _SERVICE_ARGUMENT) -> None:
        """
        @param shown: how to name the handler (its C{repr} by default).
        @param remedy: what the user can do about it, in their terms.
        """
        self.handler = handler
        super().__init__(
            f"cannot tell which Thrift service {shown or repr(handler)} implements (it neither"
            f" subclasses nor declares a generated Iface, nor has process()); {remedy}")


@dataclass(frozen=True, eq=False)
class Served:
    """
    What a handler argument (of C{serve}, C{thriftService}, C{--handler}) is,
    told once by L{resolve}.

    @ivar kind: C{"handler"}: C{target} is a handler object of the service
        C{module}; C{"processor"}: C{target} answers whole requests with
        C{process(iprot, oprot)}; C{"multiplexed"}: C{services} are served
        by name on one port.
    @ivar services: the name and the L{Served} of each service, in order,
        when multiplexed.
    """

    kind: Kind
    target: object = None
    module: ModuleType | None = None
    services: tuple[tuple[str, Served], ...] = ()

    @property
    def name(self) -> str:
        """
        What is served, for a log line.
        """
        if self.kind == "multiplexed":
            return "multiplexed " + ", ".join(f"{name}={inner.name}"
                                              for name, inner in self.services)
        if self.kind == "processor":
            kind = type(self.target)
            return f"processor {kind.__module__}.{kind.__qualname__}"
        assert self.module is not None
        return describe(self.module).name


def resolve(handler: object, service: ModuleType | None = None) -> Served:
    """
    Tell what a handler argument is.

    @param handler: a handler object, a processor, a mapping of service
        names to either (or to a C{(handler, service)} pair), or a L{Served}
        already told (returned as it is).
    @param service: the generated service module of a handler object; found
        from the handler's C{Iface} when omitted.  Given, it makes even an
        object with C{process} a handler object.
    @raise UnknownService: for a handler object whose service cannot be found.
    @raise TypeError: for a class instead of an instance, C{service} beside a
        mapping (or a L{Served}), or a C{service} that is not a generated
        service module.
    """
    if isinstance(handler, type):
        # A class has the methods too (a processor class even has process()),
        # and would be called unbound: say what to do before anything fails.
        raise TypeError(f"{handler.__qualname__} is a class: pass an instance of it"
                        f" ({handler.__name__}()), not the class")
    if isinstance(handler, (Served, Mapping)) and service is not None:
        raise TypeError("service= goes with one handler; a mapping names each service")
    if isinstance(handler, Served):
        return handler
    if isinstance(handler, Mapping):
        return Served("multiplexed", services=tuple(
            (name, resolve(*value) if isinstance(value, tuple) else resolve(value))
            for name, value in handler.items()))
    if service is None:
        if isProcessor(handler):
            return Served("processor", handler)
        service = serviceOf(handler)
        if service is None:
            raise UnknownService(handler)
    describe(service)
    return Served("handler", handler, service)


#: The most characters of a name the peer chose (a method or service) that
#: go into a log line or an error reply.
_NAME_SHOWN = 128


def shortName(name: str) -> str:
    """
    C{name}, cut short if it is long: names come from the peer, and a peer
    must not be able to fill our log, or have itself echoed at length.
    """
    if len(name) <= _NAME_SHOWN:
        return name
    return f"{name[:_NAME_SHOWN]}...({len(name)} characters)"
