"""
The C{txthrift} command (also C{python -m txthrift}): C{txthrift call}
calls one method of a generated service and prints its result as JSON;
C{txthrift describe} lists a service's methods and their types.  With
C{--idl FILE.thrift}, the service is loaded from its IDL (L{loadIDL}).

Values cross between JSON and Thrift by the generated classes'
C{thrift_spec}: structs as objects by field name, binary as base64, sets
as lists, maps with string keys as objects and any other as a list of
C{[key, value]} pairs, non-finite doubles as C{"NaN"}, C{"Infinity"} and
C{"-Infinity"}.  Every failure that is not a declared exception is one
line on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, ClassVar

from thrift.Thrift import TType
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import react
from twisted.python import usage

from ._client import Client
from ._hosting import connect, oneLine
from ._idl import IDLError, loadIDL
from ._loading import HandlerFailed, loadService
from ._service import Method, ServiceSpec, describe
from ._version import __version__

__all__ = ["BadInput", "fromJSON", "main", "toJSON", "typeName"]

#: Exit statuses: a declared exception, and anything else that failed.
DECLARED, FAILED = 1, 2

_INTEGERS = {TType.BYTE: ("byte", 8), TType.I16: ("i16", 16), TType.I32: ("i32", 32),
             TType.I64: ("i64", 64)}
_NAMES = {TType.BOOL: "bool", TType.DOUBLE: "double", **{
    ttype: name for ttype, (name, _) in _INTEGERS.items()}}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: The most characters of a message from elsewhere (a server) put on the one line.
_SHOWN = 400


class BadInput(ValueError):
    """
    A JSON value that does not fit the Thrift type it is for; the message
    names where in the arguments it is.
    """


def typeName(ttype: int, typeargs: Any) -> str:
    """
    A Thrift type as the IDL writes it, from a C{thrift_spec} entry's type
    and type arguments (an enum is an C{i32} there: the spec does not say).
    """
    if ttype == TType.STRUCT:
        return str(typeargs[0].__name__)
    if ttype == TType.STRING:
        return "binary" if typeargs == "BINARY" else "string"
    if ttype in (TType.LIST, TType.SET):
        kind = "list" if ttype == TType.LIST else "set"
        return f"{kind}<{typeName(typeargs[0], typeargs[1])}>"
    if ttype == TType.MAP:
        return f"map<{typeName(typeargs[0], typeargs[1])}, {typeName(typeargs[2], typeargs[3])}>"
    return _NAMES.get(ttype, f"type {ttype}")


def _fields(cls: type) -> dict[str, tuple[Any, ...]]:
    spec: Any = getattr(cls, "thrift_spec", None) or ()
    return {entry[2]: entry for entry in spec if entry is not None}


def _enumValue(text: str, enums: Mapping[str, int | None], where: str) -> int:
    if text not in enums:
        raise BadInput(f"{where}: expected an integer or an enum value's name, not {text!r}")
    value = enums[text]
    if value is None:
        raise BadInput(f"{where}: {text!r} names values of several enums; give its number")
    return value


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def _integer(value: Any, ttype: int, where: str, enums: Mapping[str, int | None]) -> int:
    name, bits = _INTEGERS[ttype]
    if isinstance(value, str) and ttype == TType.I32:
        value = _enumValue(value, enums, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{where}: expected {_article(name)} {name}, not"
                       f" {json.dumps(value)[:80]}")
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise BadInput(f"{where}: {value} is out of range for {_article(name)} {name}")
    return value


def _scalar(value: Any, ttype: int, typeargs: Any, where: str,
            enums: Mapping[str, int | None]) -> Any:
    if ttype in _INTEGERS:
        return _integer(value, ttype, where, enums)
    if ttype == TType.BOOL and isinstance(value, bool):
        return value
    if ttype == TType.DOUBLE:
        if isinstance(value, str) and value in _NON_FINITE:
            return _NON_FINITE[value]
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if float(value) != value:
                raise BadInput(f"{where}: {value} has no exact double; write it as one"
                               f" ({float(value)!r})")
            return float(value)
    if ttype == TType.STRING and isinstance(value, str):
        if typeargs != "BINARY":
            return value
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise BadInput(f"{where}: binary is written in base64, and this is not base64"
                           ) from None
    raise BadInput(f"{where}: expected a {typeName(ttype, typeargs)}, not"
                   f" {json.dumps(value)[:80]}")


def _mapKey(key: str, ttype: int) -> Any:
    """
    A JSON object's key as the JSON value it stands for: text for a string
    or binary key, else what it parses as (C{"1"} is 1), else the text
    itself (an enum's name).
    """
    if ttype == TType.STRING:
        return key
    try:
        return json.loads(key)
    except ValueError:
        return key


def fromJSON(value: Any, ttype: int, typeargs: Any, where: str = "value",
             enums: Mapping[str, int | None] = MappingProxyType({})) -> Any:
    """
    A JSON value as the Thrift type C{ttype} (with C{typeargs}, as a
    C{thrift_spec} says it) is held by generated code.

    @param enums: the enum values' names a user may give for an C{i32}
        (C{None} for a name of several enums' values).
    @raise BadInput: naming C{where} in the value, for one that does not fit.
    """
    if ttype == TType.STRUCT:
        return _struct(value, typeargs[0], where, enums)
    if ttype in (TType.LIST, TType.SET):
        if not isinstance(value, list):
            raise BadInput(f"{where}: expected a {typeName(ttype, typeargs)} (a JSON list)")
        items = [fromJSON(item, typeargs[0], typeargs[1], f"{where}[{index}]", enums)
                 for index, item in enumerate(value)]
        return items if ttype == TType.LIST else _hashable(set, items, where)
    if ttype == TType.MAP:
        ktype, kargs, vtype, vargs = typeargs[:4]
        if isinstance(value, dict):
            pairs = [(_mapKey(key, ktype), item) for key, item in value.items()]
        elif isinstance(value, list) and all(
                isinstance(pair, list) and len(pair) == 2 for pair in value):
            pairs = [(key, item) for key, item in value]
        else:
            raise BadInput(f"{where}: expected a {typeName(ttype, typeargs)} (a JSON object,"
                           " or a list of [key, value] pairs)")
        return _hashable(dict, [
            (fromJSON(key, ktype, kargs, f"{where} key {json.dumps(key)[:40]}", enums),
             fromJSON(item, vtype, vargs, f"{where}[{json.dumps(key)[:40]}]", enums))
            for key, item in pairs], where)
    return _scalar(value, ttype, typeargs, where, enums)


def _hashable(kind: type, items: list[Any], where: str) -> Any:
    """
    A set of C{items}, or a dict of them as pairs, for values Python can
    hash: Apache's generated structs cannot be (they define C{__eq__}
    alone), nor lists, so no set of them nor map keyed by them exists in
    its generated code to send.
    """
    try:
        return kind(items)
    except TypeError:
        raise BadInput(f"{where}: a set of, or map keyed by, structs or containers cannot be"
                       " sent: Apache's generated Python cannot hash them") from None


def _struct(value: Any, cls: type, where: str, enums: Mapping[str, int | None]) -> Any:
    fields = _fields(cls)
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a {cls.__name__} (a JSON object)")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise BadInput(f"{where}: {cls.__name__} has no field {unknown[0]!r} (its fields:"
                       f" {', '.join(fields) or 'none'})")
    return cls(**{name: None if item is None else fromJSON(
        item, fields[name][1], fields[name][3], f"{where}.{name}", enums)
        for name, item in value.items()})


def toJSON(value: Any, ttype: int, typeargs: Any) -> Any:
    """
    A Thrift value, as generated code holds it, as a JSON value (see the
    module's docstring for how each type is written).
    """
    if value is None:
        return None
    if ttype == TType.STRUCT:
        return {name: toJSON(getattr(value, name, None), entry[1], entry[3])
                for name, entry in _fields(type(value)).items()
                if getattr(value, name, None) is not None}
    if ttype in (TType.LIST, TType.SET):
        items = list(value)
        if ttype == TType.SET:
            try:
                items.sort()
            except TypeError:
                pass  # Unorderable: as the set holds them.
        return [toJSON(item, typeargs[0], typeargs[1]) for item in items]
    if ttype == TType.MAP:
        ktype, kargs, vtype, vargs = typeargs[:4]
        if ktype == TType.STRING and kargs != "BINARY":
            return {key: toJSON(item, vtype, vargs) for key, item in value.items()}
        return [[toJSON(key, ktype, kargs), toJSON(item, vtype, vargs)]
                for key, item in value.items()]
    if isinstance(value, enum.Enum):
        return value.name  # Code generated with thrift --gen py:enum says which.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _enumNames() -> dict[str, int | None]:
    """
    The names of the values of every enum the loaded generated code
    declares, plain and as C{Enum.NAME}; C{None} for a plain name that
    several enums use.
    """
    names: dict[str, int | None] = {}
    for module in list(sys.modules.values()):
        if not (getattr(module, "__name__", "") or "").endswith("ttypes"):
            continue
        for cls in vars(module).values():
            values = getattr(cls, "_NAMES_TO_VALUES", None)
            if isinstance(cls, type) and issubclass(cls, enum.IntEnum):
                values = {member.name: int(member) for member in cls}
            if not isinstance(cls, type) or not isinstance(values, dict):
                continue
            for name, number in values.items():
                names[f"{cls.__name__}.{name}"] = number
                names[name] = number if names.get(name, number) == number else None
    return names


def _method(spec: ServiceSpec, name: str, service: str) -> Method:
    method = spec.methods.get(name)
    if method is None:
        shown = service.rpartition(" ")[2]
        raise BadInput(f"{shown} has no method {name!r} (txthrift describe {service}"
                       " lists them)")
    return method


def _arguments(method: Method, text: str) -> list[Any]:
    """
    The call's arguments, in declaration order, from a JSON object of them
    by name.
    """
    if text == "-":
        text = sys.stdin.read()
    try:
        given = json.loads(text)
    except ValueError as error:
        raise BadInput(f"the arguments are not JSON: {error}") from None
    if not isinstance(given, dict):
        raise BadInput(f"the arguments are a JSON object by argument name, such as"
                       f" {json.dumps(dict.fromkeys(method.argNames, '...'))}")
    fields = _fields(method.args)
    unknown = sorted(set(given) - set(method.argNames))
    if unknown:
        raise BadInput(f"{method.name} has no argument {unknown[0]!r} (its arguments:"
                       f" {', '.join(method.argNames) or 'none'})")
    missing = [name for name in method.argNames if name not in given]
    if missing:
        raise BadInput(f"missing argument {missing[0]!r} of {method.name} (pass null to"
                       " leave it unset)")
    enums = _enumNames()
    return [None if given[name] is None else fromJSON(
        given[name], fields[name][1], fields[name][3], name, enums)
        for name in method.argNames]


def _signature(method: Method) -> dict[str, Any]:
    """
    A method's types, for C{txthrift describe}.
    """
    fields = _fields(method.args)
    returns = "void"
    if method.result is not None and method.returnsValue:
        entry = _fields(method.result)["success"]
        returns = typeName(entry[1], entry[3])
    return {"name": method.name, "oneway": method.oneway, "returns": returns,
            "arguments": [{"name": name, "type": typeName(fields[name][1], fields[name][3])}
                          for name in method.argNames],
            "throws": [{"name": name, "type": cls.__name__}
                       for name, cls in method.exceptions]}


def _describeText(spec: ServiceSpec, source: str) -> str:
    lines = [f"service {spec.name} ({source}): {len(spec.methods)} methods"]
    for method in spec.methods.values():
        signature = _signature(method)
        arguments = ", ".join(f"{argument['type']} {argument['name']}"
                              for argument in signature["arguments"])
        line = (f"  {'oneway ' if method.oneway else ''}{signature['returns']}"
                f" {method.name}({arguments})")
        if signature["throws"]:
            line += " throws (" + ", ".join(f"{thrown['type']} {thrown['name']}"
                                            for thrown in signature["throws"]) + ")"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _noOptionsAmong(args: Sequence[str], first: str) -> None:
    """
    @raise usage.UsageError: for an option among the arguments (Twisted's
        parser takes options only before them), saying so.
    """
    options = [arg for arg in args if arg.startswith("-") and arg != "-"
               and not re.fullmatch(r"-\d.*", arg)]
    if options:
        raise usage.UsageError(f"options go before {first}: {options[0]} came after it")


class _Versioned(usage.Options):
    def opt_version(self) -> None:
        """
        Show txthrift's version and exit.
        """
        print(f"txthrift {__version__}")
        sys.exit(0)


#: C{--idl}, of both commands.
_IDL = ["idl", None, None, ("A .thrift file to load the service from, with no compiler (the"
                            " extra txthrift[idl]); the service is then named as in it.")]


class CallOptions(_Versioned):
    """
    C{txthrift call}'s command line.
    """

    synopsis = ("[options] ENDPOINT MODULE.Service METHOD [ARGUMENTS]\n"
                "  or: [options] --idl FILE.thrift ENDPOINT Service METHOD [ARGUMENTS]\n"
                "  ENDPOINT: host:port, a client endpoint string (tcp:host=H:port=P, tls:H:P,"
                " unix:PATH), or an http(s):// or ws(s):// URL\n"
                "  ARGUMENTS: a JSON object by argument name (default {}; - reads it from"
                " standard input); binary in base64")
    optParameters: ClassVar[list[list[Any]]] = [
        ["transport", None, "framed", ("framed, buffered, header (THeader), zlib or"
                                       " zlib-buffered (Apache's TZlibTransport around"
                                       " framed or buffered).")],
        ["protocol", None, "binary", "binary, compact or json."],
        ["service-name", None, None, "The service's name on a multiplexed server."],
        ["ca", None, None, ("A PEM file of the CAs an https:// or wss:// server's certificate"
                            " must chain to (a tls: endpoint takes trustRoots=DIR).")],
        _IDL,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["headers"] = {}
        self["timeout"] = 10.0

    def opt_timeout(self, value: str) -> None:
        """
        Seconds to connect, and again for the reply [default: 10].
        """
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:
            raise usage.UsageError(f"--timeout: expected seconds above 0, not {value!r}")
        self["timeout"] = seconds

    def opt_header(self, value: str) -> None:
        """A header key=value (repeatable): THeader's with --transport header, HTTP's for an http(s):// URL, the opening handshake's for ws(s)://."""
        key, equals, given = value.partition("=")
        if not equals or not key.strip():
            raise usage.UsageError(f"--header: expected key=value, not {value!r}")
        self["headers"][key.strip()] = given

    def parseArgs(self, *args: str) -> None:
        _noOptionsAmong(args, "ENDPOINT")
        if not 3 <= len(args) <= 4:
            raise usage.UsageError("expected ENDPOINT MODULE.Service METHOD [ARGUMENTS] (with"
                                   " --idl, ENDPOINT Service METHOD [ARGUMENTS])")
        self["endpoint"], self["service"], self["method"] = args[:3]
        self["arguments"] = args[3] if len(args) == 4 else "{}"


class DescribeOptions(_Versioned):
    """
    C{txthrift describe}'s command line.
    """

    synopsis = "[--json] MODULE.Service\n  or: [--json] --idl FILE.thrift [Service]"
    optFlags: ClassVar[list[list[Any]]] = [["json", None, "Print the methods as JSON."]]
    optParameters: ClassVar[list[list[Any]]] = [_IDL]

    def parseArgs(self, *args: str) -> None:
        _noOptionsAmong(args, "MODULE.Service")
        if self["idl"] is not None and not args:
            self["service"] = None  # The file's one service.
            return
        if len(args) != 1:
            raise usage.UsageError("expected one MODULE.Service (with --idl, one Service,"
                                   " or none for a file of one)")
        self["service"] = args[0]


class Options(_Versioned):
    """
    The C{txthrift} command line.
    """

    synopsis = "Usage: txthrift"
    subCommands: ClassVar[list[list[Any]]] = [
        ["call", None, CallOptions, "Call one method; print its result as JSON."],
        ["describe", None, DescribeOptions, "List a service's methods and their types."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a command: call or describe (txthrift --help)")


def _load(path: str | None, idl: str | None = None) -> ModuleType:
    """
    The generated service module C{path} names, from C{PYTHONPATH} or the
    current folder, as C{twistd thrift --service} loads it; or, with
    C{idl}, the service C{path} names in that C{.thrift} file (its one
    service if C{None}), loaded.
    """
    if idl is not None:
        try:
            return loadIDL(idl, path)
        except (IDLError, ImportError) as error:
            raise BadInput(f"--idl {error}" if isinstance(error, IDLError) else str(error)
                           ) from None
    if path is None:
        raise BadInput("expected one MODULE.Service")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return loadService(path)
    except (usage.UsageError, HandlerFailed) as error:
        raise BadInput(str(error).removeprefix("--service: ")) from None


#: C{host:port}, a bracketed IPv6 address for the host.
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]=\s]+)):(?P<port>\d+)")


def endpointOf(text: str) -> str:
    """
    What C{connect} takes for an ENDPOINT: C{host:port} becomes a C{tcp:}
    client endpoint string; URLs and endpoint strings stay as they are.
    """
    found = _HOST_PORT.fullmatch(text)
    if found is None or (found["host"] or "").lower() in _endpointKinds():
        return text
    host = found["v6"] or found["host"]
    return f"tcp:host={host.replace(':', chr(92) + ':')}:port={found['port']}"


def _endpointKinds() -> set[str]:
    """
    The client endpoint strings' prefixes (C{tcp}, C{unix}, plugins' own).
    """
    from twisted.internet.interfaces import IStreamClientEndpointStringParserWithReactor
    from twisted.plugin import getPlugins

    return {"tcp", "ssl", "unix", *(plugin.prefix.lower() for plugin in getPlugins(
        IStreamClientEndpointStringParserWithReactor))}


def _printJSON(value: Any, stream: Any) -> None:
    stream.buffer.write(json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
                        .encode("utf-8") + b"\n")
    stream.flush()


async def _call(reactor: Any, options: CallOptions) -> int:
    """
    Make the call C{options} say, print its outcome; the exit status.
    """
    service = options["service"]
    module = _load(service, options["idl"])
    shown = service if options["idl"] is None else f"--idl {options['idl']} {service}"
    method = _method(describe(module), options["method"], shown)
    arguments = _arguments(method, options["arguments"])
    endpoint, timeout = endpointOf(options["endpoint"]), options["timeout"]
    keywords: dict[str, Any] = {"headers": options["headers"]} if options["headers"] else {}
    if keywords and options["transport"] != "header" and not re.match(
            r"(https?|wss?)://", endpoint, re.IGNORECASE):
        raise BadInput("--header needs --transport header, or an http(s):// or ws(s):// URL")
    if options["ca"] is not None:
        if not re.match(r"(https|wss)://", endpoint, re.IGNORECASE):
            raise BadInput("--ca is for https:// and wss:// URLs; a tls: endpoint string takes"
                           " trustRoots=DIR (a folder of PEM files)")
        keywords["trustRoot"] = options["ca"]
    try:
        connecting = connect(reactor, endpoint, module, transport=options["transport"],
                             protocol=options["protocol"], timeout=timeout,
                             service_name=options["service-name"], **keywords)
    except (ValueError, TypeError, ImportError) as error:
        raise BadInput(str(error)) from None
    try:
        client = await connecting.addTimeout(timeout, reactor)
    except (CancelledError, TimeoutError, ConnectingCancelledError):
        raise BadInput(f"cannot connect to {options['endpoint']}: no connection within"
                       f" {timeout:g} s") from None
    except Exception as error:
        raise BadInput(f"cannot connect to {options['endpoint']}: {oneLine(error)}") from None
    declared: tuple[type[BaseException], ...] = tuple(cls for _, cls in method.exceptions)
    try:
        result = await getattr(client, method.name)(*arguments)
    except declared as error:
        _printJSON({"exception": type(error).__name__,
                    "fields": toJSON(error, TType.STRUCT, [type(error), None])}, sys.stderr)
        return DECLARED
    finally:
        await Client.close(client)  # even where a service method is called close
    entry = _fields(method.result).get("success") if method.result is not None else None
    _printJSON(None if entry is None else toJSON(result, entry[1], entry[3]), sys.stdout)
    return 0


async def _run(reactor: Any, argv: Sequence[str]) -> None:
    options = Options()
    try:
        options.parseOptions(argv)
        sub: Any = options.subOptions
        if options.subCommand == "describe":
            module = _load(sub["service"], sub["idl"])
            spec = describe(module)
            source = {"module": module.__name__} if sub["idl"] is None else {"idl": sub["idl"]}
            if sub["json"]:
                _printJSON({"service": spec.name, **source, "methods": [
                    _signature(method) for method in spec.methods.values()]}, sys.stdout)
            else:
                sys.stdout.write(_describeText(spec, next(iter(source.values()))))
            return
        code = await _call(reactor, sub)
    except SystemExit:
        raise
    except usage.UsageError as error:
        _fail(f"{' '.join(filter(None, ['txthrift', options.subCommand]))}: {error}")
    except BadInput as error:
        _fail(f"txthrift: {error}")
    except BaseException as error:
        _fail(f"txthrift: {oneLine(error)}")
    if code:
        raise SystemExit(code)


def _fail(line: str) -> None:
    """
    End with C{line}, on one line and not too long, and exit status 2.
    """
    line = " ".join(line.split())
    if len(line) > _SHOWN:
        line = line[:_SHOWN] + f"...({len(line)} characters)"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(FAILED)


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the C{txthrift} command (the console script, and C{python -m
    txthrift}); exits with 0, 1 for a declared exception, 2 for any other
    failure.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    react(lambda reactor: Deferred.fromCoroutine(_run(reactor, arguments)))
