"""
A service's C{.thrift} file loaded at run time, with no compiler: parsed by
thriftpy2 (the extra C{txthrift[idl]}) and built into the modules Apache's
compiler would generate from it, so that everything taking a generated
service module (C{connect}, C{serve}, C{txthrift call}) takes it unchanged.

thriftpy2 parses (includes, typedefs, constants and forward references
resolved); its classes are not used.  Each struct, union and exception
becomes what C{thrift --gen py:dynamic} makes: a class on Apache's own
C{TBase} (exceptions on C{TFrozenExceptionBase}, immutable as Apache makes
them), with an Apache C{thrift_spec} the C coder reads and writes by, the
fields as C{__init__} keywords with the IDL's defaults, C{validate},
C{__eq__} and C{__repr__} (from C{dataclasses}).  Each service becomes a
module holding the types, C{Iface}, C{Client}, C{Processor} and C{m_args}
and C{m_result} for each method, as C{thrift --gen py} writes them.
Constants and defaults are made by their declared types, as Apache's
compiler makes them.  A file loaded again, unchanged, gives the same
modules.

This module knows nothing of connections or hosting.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import itertools
import keyword
import operator
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from inspect import Parameter, Signature
from types import ModuleType
from typing import Any

from thrift.protocol.TBase import TBase, TFrozenExceptionBase
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType, TProcessor, TType
from thrift.transport.TTransport import TTransportException
from thrift.TRecursive import fix_spec
from twisted.logger import Logger

from ._extras import fromExtra

__all__ = ["IDLError", "loadIDL"]

_log = Logger()

#: thriftpy2's own type number for binary (Apache's is a string, "BINARY").
_BINARY = 18
_SCALARS = frozenset({TType.BOOL, TType.BYTE, TType.I16, TType.I32, TType.I64, TType.DOUBLE})
_IMMUTABLE = (type(None), bool, int, float, str, bytes)


class IDLError(ValueError):
    """
    A C{.thrift} file that cannot be loaded, or has no such service; the
    message is one line naming the file and what is wrong (the line, for
    a mistake in the file).
    """


def _thriftpy2() -> tuple[Callable[..., ModuleType], type[Exception]]:
    """
    thriftpy2's parser and its error, from the extra C{txthrift[idl]}.

    @raise ImportError: naming the extra, when it is not installed.
    """
    parser = fromExtra("idl", "loading a .thrift file needs thriftpy2", "thriftpy2.parser",
                       "thriftpy2.parser.exc")
    return parser.parse, parser.exc.ThriftParserError


#: What generated Python cannot name (Apache's compiler refuses these too;
#: C{self} would be a second C{self} of C{__init__}); thriftpy2's own list
#: also refuses other languages' words (C{next}, C{end}) Apache takes.
_PYTHON_KEYWORDS = (*keyword.kwlist, "self")


class _Parsing:
    """
    What one parse read: each file opened (for the load's cache), and the
    innermost file whose parse failed (for the error's message).
    """

    def __init__(self, lexer: Any) -> None:
        self.files: list[str] = []
        self.failed: list[str] = []
        #: A lexer of thriftpy2's tokens, for L{_declaredConstants}.
        self.lexer = lexer

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        """
        thriftpy2's C{open}: UTF-8, a byte order mark skipped, other bytes
        kept (as surrogates) so that a comment in Latin-1 is ignored, as
        Apache's compiler ignores it; L{_Builder.value} refuses them in a
        string.
        """
        self.files.append(os.fspath(file))
        return builtins.open(file, mode, encoding="utf-8-sig", errors="surrogateescape")

    def tracking(self, parse: Callable[..., ModuleType]) -> Callable[..., ModuleType]:
        def tracked(path: str, *args: Any, **kwargs: Any) -> ModuleType:
            try:
                return parse(path, *args, **kwargs)
            except Exception:
                self.failed.append(path)  # The innermost file first.
                raise

        return tracked


@contextmanager
def _insideThriftpy2() -> Iterator[tuple[Callable[..., ModuleType], _Parsing]]:
    """
    thriftpy2's C{parse}, with four of its internals changed for one load and
    put back after (the only place txthrift touches them; a test checks they
    are still there, so a thriftpy2 that moves them fails that test loudly,
    and a load fails with this ImportError rather than loading wrongly):

      - its cache of parsed files, emptied: it keeps included files under
        their relative name, so another folder's C{common.thrift}, or an
        old version of an edited one, would be taken;
      - its list of reserved words, only Python's: it also refuses words of
        other languages (C{next}, C{end}, C{float}...) that Apache takes;
      - C{open}, in its module: see L{_Parsing.open};
      - C{parse} as includes call it: to know which file failed.

    All under thriftpy2's own lock, which its every parse holds.  Its lexer
    also reads the constants' declared types (L{_declaredConstants}).
    """
    from thriftpy2.parser import lexer, parser
    try:
        lock, cache, reserved = (parser._parse_lock, parser._thrift_cache,
                                 lexer.thrift_reserved_keywords)
    except AttributeError as error:
        raise ImportError(f"this thriftpy2 is not one txthrift knows ({error}); install"
                          " thriftpy2 0.7") from None

    def parseAlone(path: str) -> ModuleType:
        cache.clear()
        return parser.parse(path, enable_cache=False)

    with lock:
        parsing = _Parsing(parser.lex.lex(module=lexer))
        saved, realParse = dict(cache), parser.parse
        cache.clear()
        lexer.thrift_reserved_keywords = _PYTHON_KEYWORDS  # type: ignore[assignment]
        parser.open = parsing.open  # type: ignore[attr-defined]
        parser.parse = parsing.tracking(realParse)
        try:
            yield parseAlone, parsing
        finally:
            parser.parse = realParse
            del parser.open  # type: ignore[attr-defined]
            lexer.thrift_reserved_keywords = reserved
            cache.clear()
            cache.update(saved)


def _copyOf(box: list[Any]) -> Any:
    """
    A fresh copy of a mutable default (as generated code makes a fresh
    list, set, map or struct for each instance).
    """
    return copy.deepcopy(box[0])


#: The next number of each package name (see L{_freeName}).
_numbers: dict[str, Iterator[int]] = {}


def _freeName(path: str) -> str:
    """
    A package name, not in C{sys.modules}, for the modules built from the
    file at C{path}: its name with C{_idl}, numbered after the first.
    """
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "thrift"
    base = ("_" if stem[0].isdigit() else "") + stem + "_idl"
    numbers = _numbers.setdefault(base, itertools.count(1))
    while True:
        number = next(numbers)
        name = base if number == 1 else f"{base}{number}"
        if name not in sys.modules:
            return name


def _identifier(name: str, where: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise IDLError(f"{where}: {name!r} is a Python keyword or not a Python name, so"
                       " generated Python cannot have it; rename it in the IDL")
    return name


class _Builder:
    """
    One load: thriftpy2's parsed modules in, Apache-shaped modules out.
    Classes are made first and their C{thrift_spec}s after, so that
    recursive and mutually recursive structs refer to classes that exist.
    """

    def __init__(self, path: str, lexer: Any) -> None:
        self.path, self.lexer = path, lexer
        self.classes: dict[type, type] = {}
        self.packages: dict[int, ModuleType] = {}
        self.services: dict[type, ModuleType] = {}
        self.owners: dict[type, ModuleType] = {}
        #: (our class, thriftpy2's class, the boxes of its mutable defaults).
        self.pending: list[tuple[type, type, dict[str, list[Any]]]] = []
        #: Each class's defaults, as ours hold them (see L{defaultsOf}).
        self.defaults: dict[type, dict[str, Any]] = {}
        self.making: set[type] = set()
        self.modules: list[ModuleType] = []

    def module(self, name: str) -> ModuleType:
        module = ModuleType(name, f"Built by txthrift.loadIDL from {self.path}.")
        self.modules.append(module)
        return module

    def package(self, parsed: ModuleType) -> ModuleType:
        """
        The package built from one parsed file (and its includes first):
        C{ttypes} with its enums, structs, unions and exceptions, and, once
        L{finish} ran, C{constants} and a module per service.
        """
        built = self.packages.get(id(parsed))
        if built is not None:
            return built
        package = self.packages[id(parsed)] = self.module(_freeName(
            getattr(parsed, "__thrift_file__", None) or self.path))
        package.__path__ = []
        types = package.ttypes = self.module(package.__name__ + ".ttypes")  # type: ignore[attr-defined]
        for included in _meta(parsed, "includes"):
            setattr(types, included.__name__, self.package(included))
        self.owners.update(dict.fromkeys(_meta(parsed, "services"), package))
        for enum in _meta(parsed, "enums"):
            setattr(types, enum.__name__, self.enum(enum, types.__name__))
        for kind in ("structs", "unions", "exceptions"):
            for cls in _meta(parsed, kind):
                setattr(types, cls.__name__, self.struct(cls, types.__name__, kind))
        return package

    def enum(self, parsed: type, module: str) -> type:
        """
        An enum as C{thrift --gen py} writes it: a class of C{i32} values.
        """
        names: dict[str, int] = dict(parsed._NAMES_TO_VALUES)  # type: ignore[attr-defined]
        return type(parsed.__name__, (), {
            **names, "__module__": module,
            "_VALUES_TO_NAMES": {value: name for name, value in names.items()},
            "_NAMES_TO_VALUES": names})

    def struct(self, parsed: type, module: str, kind: str, name: str | None = None) -> type:
        """
        Our class for one of thriftpy2's, its C{thrift_spec} set by L{finish}.
        """
        name = name or parsed.__name__
        where = f"{self.path}: {name}"
        fields: list[tuple[str, Any, Any]] = []
        boxes: dict[str, list[Any]] = {}
        entries = {entry[1]: entry for entry in parsed.thrift_spec.values()}  # type: ignore[attr-defined]
        for field, default in parsed.default_spec:  # type: ignore[attr-defined]
            _identifier(field, where)
            if isinstance(default, _IMMUTABLE):  # Needs no class: made now (binary as bytes).
                default = self.value(default, entries[field][0], None, f"{where}.{field}")
                fields.append((field, Any, dataclasses.field(default=default)))
            else:
                box = boxes[field] = [default]
                fields.append((field, Any, dataclasses.field(
                    default_factory=partial(_copyOf, box))))
        required = [entry[1] for entry in parsed.thrift_spec.values()  # type: ignore[attr-defined]
                    if entry[-1] is True]
        exception = kind == "exceptions"
        namespace: dict[str, Any] = {"validate": _validator(tuple(required)),
                                     "__module__": module}
        if exception:
            namespace["__str__"] = lambda self: repr(self)
        built = dataclasses.make_dataclass(
            name, fields, bases=(TFrozenExceptionBase if exception else TBase,),
            namespace=namespace, frozen=exception)
        built.__module__ = module
        self.classes[parsed] = built
        self.pending.append((built, parsed, boxes))
        return built

    def typeArgs(self, ttype: int, arg: Any, where: str) -> tuple[int, Any]:
        """
        A type as an Apache C{thrift_spec} holds it: (type, type arguments).
        """
        if ttype == _BINARY:
            return TType.STRING, "BINARY"
        if ttype == TType.STRING:
            return TType.STRING, "UTF8"
        if ttype in _SCALARS:
            return ttype, None  # An enum is an i32, as Apache's spec has it.
        if ttype == TType.STRUCT:
            return TType.STRUCT, [self.classes[arg], None]
        if ttype in (TType.LIST, TType.SET):
            return ttype, (*self.typeArgs(*_typeOf(arg), where), False)
        if ttype == TType.MAP:
            return ttype, (*self.typeArgs(*_typeOf(arg[0]), where),
                           *self.typeArgs(*_typeOf(arg[1]), where), False)
        raise IDLError(f"{where}: type {ttype} is not one txthrift can load (uuid and"
                       " others Apache's Python does not generate)")

    def value(self, value: Any, ttype: int, arg: Any, where: str) -> Any:
        """
        A constant or default as generated code holds it, by its declared
        type: thriftpy2 leaves binary as text, structs in lists and sets as
        dicts, maps in the IDL's order; Apache's compiler makes binary bytes
        and orders a map by key.
        """
        if isinstance(value, tuple) and value[:1] == ("UNKNOWN_CONST",):
            value = value[2]  # Of a type declared after: thriftpy2 leaves it as written
            # (its own form: a test of _insideThriftpy2's looks for it).
        if value is None:
            return None
        try:
            if ttype in (_BINARY, TType.STRING):
                if not isinstance(value, str):
                    raise TypeError("not text")
                if not value.isascii() and any("\udc80" <= char <= "\udcff" for char in value):
                    raise IDLError(f"{where}: {value!r} is not UTF-8 (a byte of another"
                                   " encoding, kept as a surrogate)")
                return value.encode() if ttype == _BINARY else value
            if ttype in (TType.BYTE, TType.I16, TType.I32, TType.I64):
                return operator.index(value)
            if ttype in (TType.BOOL, TType.DOUBLE):
                return (bool if ttype == TType.BOOL else float)(value)
            if ttype in (TType.LIST, TType.SET):
                items = [self.value(item, *_typeOf(arg), where) for item in value]
                return items if ttype == TType.LIST else set(items)
            if ttype == TType.MAP:
                keyType, valueType = _typeOf(arg[0]), _typeOf(arg[1])
                return {self.value(key, *keyType, where): self.value(value[key], *valueType, where)
                        for key in _ordered(value)}
            if ttype == TType.STRUCT:
                return self.structValue(value, arg, where)
        except IDLError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise IDLError(f"{where}: the value {value!r} is not of its type ({error})") from None
        return value

    def structValue(self, value: Any, parsed: type, where: str) -> Any:
        """
        A struct constant or default as ours: the fields given, and the
        others' defaults, each by its type.
        """
        entries = {entry[1]: entry for entry in parsed.thrift_spec.values()}  # type: ignore[attr-defined]
        if isinstance(value, parsed):
            value = {name: getattr(value, name) for name in entries}
        unknown = set(value) - set(entries)
        if unknown:
            raise IDLError(f"{where}: {parsed.__name__} has no field {min(unknown)!r}")
        fields = copy.deepcopy(self.defaultsOf(parsed))
        fields.update({name: self.value(item, entries[name][0], _argOf(entries[name]),
                                        f"{where}.{name}") for name, item in value.items()})
        return self.classes[parsed](**fields)

    def defaultsOf(self, parsed: type) -> dict[str, Any]:
        """
        The defaults of one of thriftpy2's classes, as ours hold them.
        """
        known = self.defaults.get(parsed)
        if known is not None:
            return known
        if parsed in self.making:
            raise IDLError(f"{self.path}: {parsed.__name__}: its defaults hold a"
                           f" {parsed.__name__} again, without end")
        self.making.add(parsed)
        entries = {entry[1]: entry for entry in parsed.thrift_spec.values()}  # type: ignore[attr-defined]
        where = f"{self.path}: {parsed.__name__}"
        known = self.defaults[parsed] = {
            name: self.value(default, entries[name][0], _argOf(entries[name]), f"{where}.{name}")
            for name, default in parsed.default_spec}  # type: ignore[attr-defined]
        self.making.discard(parsed)
        return known

    def spec(self, built: type, parsed: type, boxes: dict[str, list[Any]]) -> None:
        """
        Set C{built.thrift_spec}, as Apache's compiler writes it: a tuple
        indexed by field id (C{None} where there is none).
        """
        where = f"{self.path}: {built.__name__}"
        declared: dict[int, Any] = parsed.thrift_spec  # type: ignore[attr-defined]
        defaults = self.defaultsOf(parsed)
        entries: dict[int, tuple[Any, ...]] = {}
        for fid, entry in declared.items():
            if fid < 0:
                raise IDLError(f"{where}: field {entry[1]!r} has no id, or a negative one;"
                               f" give it a positive one (1: {entry[1]}), as Apache's"
                               " Python needs")
            ttype, typeArgs = self.typeArgs(entry[0], _argOf(entry), f"{where}.{entry[1]}")
            default = defaults.get(entry[1])
            if entry[1] in boxes:
                boxes[entry[1]][0] = default
            entries[fid] = (fid, ttype, entry[1], typeArgs, default)
        built.thrift_spec = tuple(  # type: ignore[attr-defined]
            entries.get(fid) for fid in range(max(entries, default=-1) + 1))

    def specs(self) -> None:
        """
        The C{thrift_spec}s of the classes made since last time, each
        struct's type arguments then given its class's spec, as Apache's
        C{fix_spec} does at the end of a generated module.
        """
        for built, parsed, boxes in self.pending:
            self.spec(built, parsed, boxes)
        fix_spec([built for built, _, _ in self.pending])
        self.pending.clear()

    def finish(self, parsed: ModuleType) -> None:
        """
        Once every class of every file is made: their specs, then each
        file's constants and services.
        """
        self.specs()
        done: set[int] = set()
        todo = [parsed]
        while todo:
            one = todo.pop()
            if id(one) in done:
                continue
            done.add(id(one))
            todo.extend(_meta(one, "includes"))
            package = self.packages[id(one)]
            constants = package.constants = self.module(  # type: ignore[attr-defined]
                package.__name__ + ".constants")
            constants.__dict__.update(_public(package.ttypes))
            for name, (ttype, arg), value in self.constants(one):
                setattr(constants, name, self.value(value, ttype, arg, f"{self.path}: {name}"))
            for service in _meta(one, "services"):
                self.service(service)

    def constants(self, parsed: ModuleType) -> list[tuple[str, tuple[int, Any], Any]]:
        """
        The constants of a parsed file: name, declared type and value.
        thriftpy2 keeps only their values, in order (and a constant's type
        decides its value: binary, structs in a list); names and types are
        read from the file's tokens, by thriftpy2's lexer.
        """
        values = _meta(parsed, "consts")
        if not values:
            return []
        file = parsed.__thrift_file__
        with open(file, encoding="utf-8-sig", errors="surrogateescape") as text:
            declared = _declaredConstants(self.lexer, text.read())
        if len(declared) != len(values):
            raise IDLError(f"{file}: {len(values)} constants parsed but {len(declared)} read")
        return [(name, self.resolved(parsed, kind, f"{file}: {name}"), value)
                for (name, kind), value in zip(declared, values)]

    def resolved(self, parsed: ModuleType, kind: tuple[Any, ...], where: str) -> tuple[int, Any]:
        """
        A type as read by L{_declaredConstants}, as thriftpy2 holds it: a
        type number and its argument (element types, the class, the enum).
        """
        if kind[0] == "IDENTIFIER":
            found: Any = parsed
            for part in kind[1].split("."):
                found = getattr(found, part, None)
            if hasattr(found, "_ttype"):
                return found._ttype, found
            if isinstance(found, (int, tuple)):
                return _typeOf(found)
            raise IDLError(f"{where}: no type {kind[1]!r}")
        if kind[0] in ("LIST", "SET"):
            return getattr(TType, kind[0]), _spec(self.resolved(parsed, kind[1], where))
        if kind[0] == "MAP":
            return TType.MAP, (_spec(self.resolved(parsed, kind[1], where)),
                               _spec(self.resolved(parsed, kind[2], where)))
        return _BASE_TYPES[kind[0]], None

    def throws(self, result: type, where: str) -> None:
        """
        Refuse a C{throws} that is not an exception, as Apache's compiler
        does (its generated processor could not raise it).
        """
        for fid, entry in result.thrift_spec.items():  # type: ignore[attr-defined]
            if (fid, entry[1]) == (0, "success"):
                continue
            cls = self.classes.get(_argOf(entry)) if entry[0] == TType.STRUCT else None
            if cls is None or not issubclass(cls, TFrozenExceptionBase):
                raise IDLError(f"{where}: throws {entry[1]!r}, which is not an exception;"
                               " a throws clause may hold only exceptions")

    def service(self, parsed: type) -> ModuleType:
        """
        The module of one service, as C{thrift --gen py} writes it: the
        types, C{Iface}, C{Client}, C{Processor}, and each method's C{_args}
        and C{_result} (none for a oneway method).
        """
        built = self.services.get(parsed)
        if built is not None:
            return built
        base = next((self.service(cls) for cls in parsed.__bases__
                     if hasattr(cls, "thrift_services")), None)
        package = self.owners[parsed]
        name = f"{package.__name__}.{parsed.__name__}"
        module = self.services[parsed] = self.module(name)
        module.__dict__.update(_public(package.ttypes))
        setattr(package, parsed.__name__, module)
        methods: list[tuple[str, type, type | None]] = []
        for method in parsed.thrift_services:  # type: ignore[attr-defined]
            if method + "_args" not in vars(parsed):
                continue  # Inherited: the base service's module has it.
            _identifier(method, f"{self.path}: {parsed.__name__}")
            args = self.struct(getattr(parsed, method + "_args"), name, "args", method + "_args")
            result = getattr(parsed, method + "_result")
            self.throws(result, f"{self.path}: {parsed.__name__}.{method}")
            results = None if getattr(result, "oneway", False) else self.struct(
                result, name, "result", method + "_result")
            setattr(module, args.__name__, args)
            if results is not None:
                setattr(module, results.__name__, results)
            methods.append((method, args, results))
        self.specs()
        _serviceClasses(module, base, methods)
        return module


def _meta(parsed: ModuleType, kind: str) -> list[Any]:
    """
    What thriftpy2 found of one kind (C{"structs"}, C{"services"}...) in a
    parsed file, in order; it records nothing for a file with none.
    """
    return list(getattr(parsed, "__thrift_meta__", {}).get(kind, ()))


def _public(module: ModuleType) -> dict[str, Any]:
    """
    What C{from module import *} takes.
    """
    return {name: value for name, value in vars(module).items() if not name.startswith("_")}


def _typeOf(spec: Any) -> tuple[int, Any]:
    """
    A type as thriftpy2 writes it inside another (a number, or a number
    and its argument), as a type number and its argument.
    """
    return (spec[0], spec[1]) if isinstance(spec, tuple) else (spec, None)


def _spec(typed: tuple[int, Any]) -> Any:
    """
    The reverse of L{_typeOf}.
    """
    return typed if typed[1] is not None else typed[0]


def _argOf(entry: tuple[Any, ...]) -> Any:
    """
    The type argument of a field in thriftpy2's C{thrift_spec}.
    """
    return entry[2] if len(entry) == 4 else None


def _ordered(mapping: dict[Any, Any]) -> list[Any]:
    """
    A map constant's keys as Apache's compiler writes them: numbers (an
    integer before a double, as it ranks them), then text, each in order;
    other keys as written.  (An enum value's name it orders by the name;
    thriftpy2 gives only its number.)
    """
    ranks = [0 if isinstance(key, int) else 1 if isinstance(key, float)
             else 2 if isinstance(key, str) else None for key in mapping]
    if None in ranks:
        return list(mapping)
    return [key for _, key in sorted(zip(ranks, mapping))]


#: The base types as thriftpy2 numbers them, by its lexer's token names.
_BASE_TYPES = {"BOOL": TType.BOOL, "BYTE": TType.BYTE, "I8": TType.BYTE, "I16": TType.I16,
               "I32": TType.I32, "I64": TType.I64, "DOUBLE": TType.DOUBLE,
               "STRING": TType.STRING, "BINARY": _BINARY}


def _declaredConstants(lexer: Any, text: str) -> list[tuple[str, tuple[Any, ...]]]:
    """
    Each constant of a file's text, in order: its name and type as written
    (C{("I32",)}, C{("LIST", ("IDENTIFIER", "shared.Tree"))}), found after
    each C{const} among the tokens of thriftpy2's C{lexer}.
    """
    lexer.input(text)
    tokens = list(iter(lexer.token, None))
    declared: list[tuple[str, tuple[Any, ...]]] = []
    for at, token in enumerate(tokens):
        if token.type == "CONST":
            kind, after = _lexedType(tokens, at + 1)
            declared.append((tokens[after].value, kind))
    return declared


def _lexedType(tokens: list[Any], at: int) -> tuple[tuple[Any, ...], int]:
    """
    The type whose tokens start at C{at}, and where its tokens end (after
    its annotations, if any).
    """
    kind = tokens[at].type
    if kind == "IDENTIFIER":
        return (kind, tokens[at].value), at + 1
    if kind in ("LIST", "SET", "MAP"):
        first, at = _lexedType(tokens, at + 2)  # After the '<'.
        if kind == "MAP":
            second, at = _lexedType(tokens, at + 1)  # After the ','.
            found: tuple[Any, ...] = (kind, first, second)
        else:
            found = (kind, first)
        at += 1  # The '>'.
    else:
        found, at = (kind,), at + 1
    if tokens[at].type == "(":  # Annotations.
        while tokens[at].type != ")":
            at += 1
        at += 1
    return found, at


def _validator(required: tuple[str, ...]) -> Callable[[Any], None]:
    """
    Apache's C{validate}: a required field left unset is refused.
    """
    def validate(self: Any) -> None:
        for name in required:
            if getattr(self, name) is None:
                raise TProtocolException(message=f"Required field {name} is unset!")

    return validate


def _signature(argNames: tuple[str, ...]) -> Signature:
    return Signature([Parameter(name, Parameter.POSITIONAL_OR_KEYWORD)
                      for name in ("self", *argNames)])


def _argNames(args: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(args))


def _stub(name: str, argNames: tuple[str, ...]) -> Callable[..., None]:
    """
    An C{Iface} method: as generated, it does nothing and returns C{None}.
    """
    def method(self: Any, *args: Any) -> None:
        return None

    method.__name__ = method.__qualname__ = name
    method.__signature__ = _signature(argNames)  # type: ignore[attr-defined]
    return method


def _unpacked(name: str, result: type, reply: Any) -> Any:
    """
    What a generated client's C{recv_m} returns or raises for a reply.
    """
    spec: Any = result.thrift_spec  # type: ignore[attr-defined]
    returnsValue = bool(spec) and spec[0] is not None
    if returnsValue and reply.success is not None:
        return reply.success
    for entry in spec[1:]:
        if entry is not None and getattr(reply, entry[2]) is not None:
            raise getattr(reply, entry[2])
    if returnsValue:
        raise TApplicationException(TApplicationException.MISSING_RESULT,
                                    f"{name} failed: unknown result")
    return None


def _clientMethods(name: str, args: type, result: type | None) -> dict[str, Any]:
    """
    A method of Apache's synchronous C{Client}: C{m}, C{send_m} and
    C{recv_m}, over its C{_iprot} and C{_oprot}.
    """
    def send(self: Any, *values: Any) -> None:
        mtype = TMessageType.ONEWAY if result is None else TMessageType.CALL
        self._oprot.writeMessageBegin(name, mtype, self._seqid)
        args(*values).write(self._oprot)
        self._oprot.writeMessageEnd()
        self._oprot.trans.flush()

    def recv(self: Any) -> Any:
        iprot = self._iprot
        _, mtype, _ = iprot.readMessageBegin()
        if mtype == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(iprot)
            iprot.readMessageEnd()
            raise error
        assert result is not None
        reply = result()
        reply.read(iprot)
        iprot.readMessageEnd()
        return _unpacked(name, result, reply)

    def call(self: Any, *values: Any) -> Any:
        send(self, *values)
        return None if result is None else recv(self)

    call.__name__ = name
    call.__signature__ = _signature(_argNames(args))  # type: ignore[attr-defined]
    methods = {name: call, "send_" + name: send}
    if result is not None:
        methods["recv_" + name] = recv
    return methods


def _clientInit(self: Any, iprot: Any, oprot: Any = None) -> None:
    self._iprot = self._oprot = iprot
    if oprot is not None:
        self._oprot = oprot
    self._seqid = 0


def _processorInit(self: Any, handler: object) -> None:
    self._handler = handler
    self._on_message_begin = None
    self._processMap = {name: function for cls in reversed(type(self).__mro__)
                        for name, function in vars(cls).get("_processes", {}).items()}


def _onMessageBegin(self: Any, function: Callable[[str, int, int], None]) -> None:
    self._on_message_begin = function


def _process(self: Any, iprot: Any, oprot: Any) -> bool | None:
    """
    Apache's generated C{Processor.process}: one request, one reply (an
    unknown method's is a C{TApplicationException}).
    """
    name, mtype, seqid = iprot.readMessageBegin()
    if self._on_message_begin:
        self._on_message_begin(name, mtype, seqid)
    if name not in self._processMap:
        iprot.skip(TType.STRUCT)
        iprot.readMessageEnd()
        error = TApplicationException(TApplicationException.UNKNOWN_METHOD,
                                      f"Unknown function {name}")
        oprot.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
        error.write(oprot)
        oprot.writeMessageEnd()
        oprot.trans.flush()
        return None
    self._processMap[name](self, seqid, iprot, oprot)
    return True


def _answer(name: str, handler: object, values: list[Any], result: type) -> tuple[int, Any]:
    """
    Call a handler's method as a generated processor does: the message type
    and body of its reply.
    """
    reply = result()
    declared = [(entry[2], entry[3][0]) for entry in result.thrift_spec[1:]  # type: ignore[attr-defined]
                if entry is not None]
    try:
        value = getattr(handler, name)(*values)
        if result.thrift_spec and result.thrift_spec[0] is not None:  # type: ignore[attr-defined]
            reply.success = value
        return TMessageType.REPLY, reply
    except TTransportException:
        raise
    except Exception as error:
        for field, cls in declared:
            if isinstance(error, cls):
                setattr(reply, field, error)
                return TMessageType.REPLY, reply
        _log.failure("{method} of the handler raised", method=name)
        if isinstance(error, TApplicationException):
            return TMessageType.EXCEPTION, error
        return TMessageType.EXCEPTION, TApplicationException(
            TApplicationException.INTERNAL_ERROR, "Internal error")


def _processFunction(name: str, args: type,
                     result: type | None) -> Callable[[Any, int, Any, Any], None]:
    """
    A generated processor's C{process_m}.
    """
    argNames = _argNames(args)

    def process(self: Any, seqid: int, iprot: Any, oprot: Any) -> None:
        received = args()
        received.read(iprot)
        iprot.readMessageEnd()
        values = [getattr(received, arg) for arg in argNames]
        if result is None:
            try:
                getattr(self._handler, name)(*values)
            except TTransportException:
                raise
            except Exception:
                _log.failure("oneway {method} of the handler raised", method=name)
            return
        mtype, reply = _answer(name, self._handler, values, result)
        oprot.writeMessageBegin(name, mtype, seqid)
        reply.write(oprot)
        oprot.writeMessageEnd()
        oprot.trans.flush()

    process.__name__ = "process_" + name
    return process


def _serviceClasses(module: ModuleType, base: ModuleType | None,
                    methods: list[tuple[str, type, type | None]]) -> None:
    """
    Put C{Iface}, C{Client} and C{Processor} in a service's C{module}, each
    deriving from the base service's (C{extends}) as generated ones do.
    """
    where = {"__module__": module.__name__}
    iface = type("Iface", (base.Iface,) if base else (object,), {
        **where, **{name: _stub(name, _argNames(args)) for name, args, _ in methods}})
    client: dict[str, Any] = {**where, "__init__": _clientInit}
    processes = {name: _processFunction(name, args, result) for name, args, result in methods}
    for name, args, result in methods:
        client.update(_clientMethods(name, args, result))
    module.Iface = iface  # type: ignore[attr-defined]
    module.Client = type("Client", (base.Client, iface) if base else (iface,),  # type: ignore[attr-defined]
                         client)
    module.Processor = type(  # type: ignore[attr-defined]
        "Processor", (base.Processor, iface, TProcessor) if base else (iface, TProcessor), {
            **where, "__init__": _processorInit, "process": _process,
            "on_message_begin": _onMessageBegin, "_processes": processes,
            **{function.__name__: function for function in processes.values()}})


#: Each file loaded, by the folder it was loaded from (includes may be
#: found there) and its real path: the size and time of each file read, and
#: its services' modules.
_loaded: dict[tuple[str, str], tuple[list[tuple[str, int, int]], dict[str, ModuleType],
                                     list[ModuleType]]] = {}
_loading = threading.Lock()


def _stamps(files: list[str]) -> list[tuple[str, int, int]] | None:
    """
    The size and time of each file, or C{None} if one is gone.
    """
    try:
        return [(file, stat.st_mtime_ns, stat.st_size)
                for file, stat in ((file, os.stat(file)) for file in files)]
    except OSError:
        return None


def _built(text: str) -> dict[str, ModuleType]:
    """
    The services of the file at C{text} by name, in order, loaded once and
    again only when it or a file it includes changed: the same modules
    each time (as C{import} gives), so a process does not grow as it loads.
    """
    key = (os.getcwd(), os.path.realpath(text))
    known = _loaded.get(key)
    if known is not None and _stamps([file for file, _, _ in known[0]]) == known[0]:
        return known[1]
    services, modules, files = _build(text)
    for module in known[2] if known is not None else ():
        if sys.modules.get(module.__name__) is module:
            del sys.modules[module.__name__]
    for module in modules:  # Only now: a failure leaves nothing behind.
        sys.modules[module.__name__] = module
    _loaded[key] = (_stamps(files) or [], services, modules)
    return services


def _build(text: str) -> tuple[dict[str, ModuleType], list[ModuleType], list[str]]:
    """
    Parse and build the file at C{text}: its services, every module built,
    and every file read.
    """
    _, ParseError = _thriftpy2()
    with _insideThriftpy2() as (parse, parsing):
        try:
            parsed = parse(text)
            builder = _Builder(text, parsing.lexer)
            builder.package(parsed)
            builder.finish(parsed)
        except IDLError:
            raise
        except RecursionError:
            raise IDLError(f"{text}: nested too deeply to load") from None
        except ParseError as error:
            raise _parseError(text, parsing, parse, error, ParseError) from None
        except (OSError, UnicodeError) as error:
            raise IDLError(f"{_failing(text, parsing)}: {error}") from None
        except Exception as error:  # thriftpy2 failing otherwise: still one line.
            raise IDLError(f"{_failing(text, parsing)}: thriftpy2 cannot parse it"
                           f" ({type(error).__name__}: {error})") from error
    services = {cls.__name__: builder.services[cls] for cls in _meta(parsed, "services")}
    return services, builder.modules, parsing.files


def _parseError(text: str, parsing: _Parsing, parse: Callable[[str], ModuleType],
                error: Exception, ParseError: type[Exception]) -> IDLError:
    """
    thriftpy2's error as one line, naming the file it is in: the loaded
    one, or one it includes.  thriftpy2 checks types declared after their
    use once every include is parsed, so when it blames the loaded file the
    included ones are parsed alone, to find the one to blame.
    """
    if not parsing.failed or parsing.failed[0] == text:
        for included in [file for file in dict.fromkeys(parsing.files) if file != text]:
            try:
                parse(included)
            except Exception as inner:  # Whatever fails alone is to blame.
                error = inner if isinstance(inner, ParseError) else error
                parsing.failed[:] = [included]
                break
        else:
            parsing.failed[:] = [text]
    return IDLError(f"{_failing(text, parsing)}: {' '.join(str(error).split())}")


def _failing(text: str, parsing: _Parsing) -> str:
    """
    The file a parse failed in: the one loaded, or the one it includes.
    """
    failed = parsing.failed[0] if parsing.failed else text
    return text if failed == text else f"{failed} (included by {text})"


def loadIDL(path: str | os.PathLike[str], service: str | None = None) -> ModuleType:
    """
    Load a C{.thrift} file, with no compiler, as the module Apache's
    C{thrift --gen py} makes for one of its services: what C{connect},
    C{serve} and C{txthrift call} take.  Loaded again, unchanged (it and
    the files it includes), it gives the same modules.

    @param service: the service's name; may be left out when the file
        declares one service.
    @return: the service's module; its types, constants (C{constants}) and
        other services are in its package (C{sys.modules}, named after the
        file: C{Calc_idl.Calculator} for C{Calc.thrift}'s C{Calculator}).
    @raise IDLError: for a file that is missing or cannot be parsed (naming
        the line), has no such service, or has what Apache's Python cannot
        generate (a field with no id, a Python keyword as a name, a throws
        that is not an exception).
    @raise ImportError: without thriftpy2, naming the extra C{txthrift[idl]}.
    """
    _thriftpy2()
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise IDLError(f"{text}: no such file")
    if not text.endswith(".thrift"):
        raise IDLError(f"{text}: not a .thrift file (the name must end in .thrift)")
    with _loading:
        services = _built(text)
    if not services:
        raise IDLError(f"{text} declares no service")
    if service is None and len(services) > 1:
        raise IDLError(f"{text} declares {len(services)} services: name one"
                       f" ({', '.join(services)})")
    chosen = services.get(service) if service is not None else next(iter(services.values()))
    if chosen is None:
        raise IDLError(f"{text} has no service {service!r} (its services:"
                       f" {', '.join(services) or 'none'})")
    return chosen
