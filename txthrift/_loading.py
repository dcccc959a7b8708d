"""
Dotted names to handlers and service modules: what C{twistd thrift
--handler} and C{--service} name, loaded and checked the same way in the
twistd process and in each C{--workers} process.

Every mistake on the command line is a C{usage.UsageError} of one line
naming the option and the fix; a handler's own code failing as it is
imported or made is a L{HandlerFailed}, naming the file and line where it
failed.  This module knows nothing of ports, services that listen, or
processes.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Sequence
from types import ModuleType

from twisted.python import usage

from ._hosting import oneLine
from ._service import UnknownService, describe, isProcessor, resolve

__all__ = ["HandlerFailed", "loadHandlers", "loadService"]


class HandlerFailed(Exception):
    """
    Importing a handler's module, or making the handler, raised: the
    command line was right, the code it names failed.  Its message is one
    line, ending with where the code failed, so that no usage text nor
    traceback is needed to find it.
    """


def _where(error: BaseException) -> str:
    """
    Where C{error} was raised, as C{" (at file:line)"}: its innermost frame
    outside the import machinery and this module, or nothing when it was
    raised here (the call itself was wrong).
    """
    if isinstance(error, SyntaxError) and error.filename:
        return f" (at {error.filename}:{error.lineno})"
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith("<frozen ")]
    if not frames or frames[-1].filename == __file__:
        return ""
    return f" (at {frames[-1].filename}:{frames[-1].lineno})"


def _importing(option: str, name: str) -> ModuleType | None:
    """
    The module C{name}, or C{None} when there is no such module.

    @raise HandlerFailed: naming C{option}, when importing it fails.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name + ".").startswith(error.name + "."):
            return None
        raise HandlerFailed(f"--{option}: importing {name} failed: {oneLine(error)}"
                            + _where(error)) from error
    except Exception as error:
        raise HandlerFailed(f"--{option}: importing {name} failed: {oneLine(error)}"
                            + _where(error)) from error


def _find(option: str, path: str) -> object:
    """
    The object a dotted name names, importing what it takes.

    @raise usage.UsageError: naming C{option}, for a name that names nothing.
    @raise HandlerFailed: for a module that fails to import.
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


def loadService(path: str) -> ModuleType:
    """
    The generated service module at C{path} (a dotted name).

    @raise usage.UsageError: naming C{--service}, for what is no such module.
    """
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


def _checkKeywords(path: str, factory: object, keywords: dict[str, str]) -> None:
    """
    Refuse C{--handler-option}s that C{factory}'s signature does not take.
    """
    try:
        signature = inspect.signature(factory)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # Cannot tell (a builtin): calling it will.
    try:
        signature.bind(**keywords)
    except TypeError as error:
        names = ", ".join(signature.parameters) or "none"
        raise usage.UsageError(f"--handler-option: {path}: {error}; its parameters: {names}"
                               ) from None


def _make(path: str, found: object, keywords: dict[str, str]) -> object:
    """
    The handler C{found} (what C{path} names) is, or makes when called with
    C{keywords}: a class or factory function is called, anything else is
    the handler itself.
    """
    if isinstance(found, ModuleType):
        raise usage.UsageError(f"--handler: {path} is a module; name the handler class or"
                               f" function in it: --handler {path}.Handler")
    factory = isinstance(found, type) or (callable(found) and not isProcessor(found))
    if not factory:
        if keywords:
            raise usage.UsageError(f"--handler-option: {path} is not a class or function to"
                                   " call, so it takes no options")
        return found
    _checkKeywords(path, found, keywords)
    arguments = ", ".join(f"{key}={value!r}" for key, value in keywords.items())
    try:
        return found(**keywords)  # type: ignore[operator]
    except Exception as error:
        raise HandlerFailed(f"--handler: calling {path}({arguments}) failed: {oneLine(error)}"
                            + _where(error)) from error


def _loadHandler(name: str | None, path: str, service: ModuleType | None,
                 keywords: dict[str, str]) -> tuple[object, ModuleType | None]:
    """
    The handler C{path} names (called with C{keywords}, when it is a class
    or a factory function) and its service module.
    """
    handler = _make(path, _find("handler", path), keywords)
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
        services[name] = loadService(path)
    return services


def _handlerOptions(values: Sequence[str],
                    names: Sequence[str | None]) -> dict[str | None, dict[str, str]]:
    """
    The C{--handler-option} values (C{key=value}, or C{Name:key=value} for
    a named handler) as keywords by the name of their handler.
    """
    options: dict[str | None, dict[str, str]] = {name: {} for name in names}
    for value in values:
        target, equals, given = value.partition("=")
        name, colon, key = target.rpartition(":")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise usage.UsageError(f"--handler-option: expected key=value (the key a Python"
                                   f" name), not {value!r}")
        owner: str | None = name.strip() if colon else None
        if owner not in options:
            raise usage.UsageError(
                f"--handler-option: no --handler is named {owner!r}" if owner is not None
                else f"--handler-option: with named handlers, say whose: Name:{key}={given}")
        if key in options[owner]:
            raise usage.UsageError(f"--handler-option: {key} given twice"
                                   + (f" for {owner}" if owner else ""))
        options[owner][key] = given
    return options


def loadHandlers(handlers: Sequence[str], services: Sequence[str] = (),
                 options: Sequence[str] = ()) -> tuple[object, ModuleType | None]:
    """
    Load what C{--handler}, C{--service} and C{--handler-option} name.

    @param handlers: the C{--handler} values: one C{module.Handler}, or
        C{Name=module.Handler} ones to multiplex.
    @param services: the C{--service} values, C{package.Module} or
        C{Name=package.Module}.
    @param options: the C{--handler-option} values, C{key=value} (or
        C{Name:key=value} for a named handler): keyword arguments, each a
        string, for the class or function a handler names.
    @return: the handler and its service module (or C{None}), or for named
        handlers a mapping of names to (handler, service module) and C{None}:
        what L{txthrift.thriftService} takes.
    @raise usage.UsageError: for any mistake on the command line, in one line.
    @raise HandlerFailed: when the handler's code fails to import or to make
        the handler, in one line.
    """
    named = _handlerNames(handlers)
    names = [name for name, _ in named]
    modules = _services(services, names)
    keywords = _handlerOptions(options, names)
    served: dict[str, tuple[object, ModuleType | None]] = {}
    for name, path in named:
        handler, module = _loadHandler(name, path, modules.get(name), keywords[name])
        if name is None:
            return handler, module
        served[name] = (handler, module)
    return served, None
