"""
Dotted names to handlers and service modules: what C{twistd thrift
--handler} and C{--service} name, loaded and checked the same way in the
twistd process and in each C{--workers} process.

Every mistake is a C{usage.UsageError} of one line naming the option and
the fix.  This module knows nothing of ports, services that listen, or
processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from twisted.python import usage

from ._hosting import oneLine
from ._service import UnknownService, describe, isProcessor, resolve

__all__ = ["loadHandlers"]


def _importing(option: str, name: str) -> ModuleType | None:
    """
    The module C{name}, or C{None} when there is no such module.

    @raise usage.UsageError: naming C{option}, when importing it fails.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name + ".").startswith(error.name + "."):
            return None
        raise usage.UsageError(f"--{option}: importing {name} failed: {oneLine(error)}")
    except Exception as error:
        raise usage.UsageError(f"--{option}: importing {name} failed: {oneLine(error)}")


def _find(option: str, path: str) -> object:
    """
    The object a dotted name names, importing what it takes.

    @raise usage.UsageError: naming C{option}, for a name that names nothing
        or a module that fails to import.
    """
    parts = path.split(".")
    if not path or not all(part.isidentifier() for part in parts):
        raise usage.UsageError(f"--{option}: {path!r} is not a dotted Python name"
                               " (package.module.Name)")
    found: object = _importing(option, parts[0])
    if found is None:
        raise usage.UsageError(f"--{option}: no module named {parts[0]!r}"
                               " (is its folder on PYTHONPATH?)")
    for index, part in enumerate(parts[1:], 2):
        if isinstance(found, ModuleType) and hasattr(found, "__path__") \
                and not hasattr(found, part):
            module = _importing(option, ".".join(parts[:index]))
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


def _loadService(path: str) -> ModuleType:
    module = _find("service", path)
    try:
        if not isinstance(module, ModuleType):
            raise TypeError("not a module")
        describe(module)
    except TypeError:
        raise usage.UsageError(
            f"--service: {path} is not a generated Thrift service module (one with Iface,"
            " Client and Processor, made by thrift --gen py)") from None
    return module


def _loadHandler(name: str | None, path: str,
                 service: ModuleType | None) -> tuple[object, ModuleType | None]:
    """
    The handler C{path} names (called, when it is a class or a factory
    function) and its service module.
    """
    found = _find("handler", path)
    handler = found
    if isinstance(found, type) or (callable(found) and not isinstance(found, ModuleType)
                                   and not isProcessor(found)):
        try:
            handler = found()
        except Exception as error:
            raise usage.UsageError(f"--handler: calling {path}() failed: {oneLine(error)}")
    try:
        served = resolve(handler, service)
    except UnknownService:
        example = f"{name}=package.Module" if name else "package.Module"
        raise usage.UsageError("--handler: " + str(UnknownService(
            handler, path, f"name the generated module with --service {example}"))) from None
    except (TypeError, ValueError) as error:
        raise usage.UsageError(f"--handler: {path}: {oneLine(error)}") from None
    return handler, served.module


def _handlerNames(values: Sequence[str]) -> list[tuple[str | None, str]]:
    """
    The C{--handler} values as (name, path), checked for names that are
    missing or given twice.
    """
    handlers = [_named("handler", value) for value in values]
    if not handlers:
        raise usage.UsageError("--handler is required: the handler to serve, as"
                               " module.Handler")
    names = [name for name, _ in handlers]
    if (len(handlers) > 1 or names[0] is not None) and None in names:
        raise usage.UsageError("--handler: with several handlers, name each one:"
                               " --handler Name=module.Handler")
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise usage.UsageError(f"--handler: service name {duplicate!r} used twice")
    return handlers


def _services(values: Sequence[str], names: Sequence[str | None]) -> dict[str | None, ModuleType]:
    """
    The C{--service} values, loaded, by the name of their handler.
    """
    multiplexed = names != [None]
    services: dict[str | None, ModuleType] = {}
    for value in values:
        name, path = _named("service", value)
        if multiplexed and name is None:
            raise usage.UsageError("--service: with named handlers, name the service too:"
                                   " --service Name=package.Module")
        if name not in names:
            raise usage.UsageError(f"--service: no --handler is named {name!r}" if name
                                   else "--service: name it as the handler: Name=module")
        if name in services:
            raise usage.UsageError(f"--service: given twice for {name or 'the handler'}")
        services[name] = _loadService(path)
    return services


def loadHandlers(handlers: Sequence[str],
                 services: Sequence[str] = ()) -> tuple[object, ModuleType | None]:
    """
    Load what C{--handler} and C{--service} name.

    @param handlers: the C{--handler} values: one C{module.Handler}, or
        C{Name=module.Handler} ones to multiplex.
    @param services: the C{--service} values, C{package.Module} or
        C{Name=package.Module}.
    @return: the handler and its service module (or C{None}), or for named
        handlers a mapping of names to (handler, service module) and C{None}:
        what L{txthrift.thriftService} takes.
    @raise usage.UsageError: for any mistake, in one line.
    """
    named = _handlerNames(handlers)
    modules = _services(services, [name for name, _ in named])
    served: dict[str, tuple[object, ModuleType | None]] = {}
    for name, path in named:
        handler, module = _loadHandler(name, path, modules.get(name))
        if name is None:
            return handler, module
        served[name] = (handler, module)
    return served, None
