"""
What a generated service module declares, read once and shared by the
client and the server.

Both flavours of generated code (C{thrift --gen py} and C{--gen
py:twisted}) define, per method C{m}, a struct C{m_args} whose constructor
takes the arguments in declaration order and, unless C{m} is oneway, a
struct C{m_result} whose field 0 is C{success} and whose other fields are
the declared exceptions.  Nothing else of the generated code is needed.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from types import ModuleType
from typing import Any

from zope.interface import providedBy
from zope.interface.interface import InterfaceClass

__all__ = ["Method", "ServiceSpec", "describe", "serviceOf", "shortName"]


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
