"""
What txthrift takes from inside Apache's C{thrift} package that its
documented API does not give, all of it here, each guarded by
C{tests/test_internals.py}.  Knows nothing of txthrift.

Tested with thrift 0.25.0, the one minor release C{setup.cfg} allows (it
says why); its guards also passed with 0.20.0.
What is relied on, why, and what happens without it:

  - C{thrift.protocol.fastbinary}'s C{encode_binary} and C{decode_binary},
    C{encode_compact} and C{decode_compact}: undocumented functions of the
    optional C extension, the ones C{TBinaryProtocolAccelerated} and
    C{TCompactProtocolAccelerated} install as their C{_fast_encode} and
    C{_fast_decode}.  The binary and compact codecs call them themselves on
    a whole args or result struct (L{encodeBinary}, L{decodeBinary},
    L{encodeCompact}, L{decodeCompact}), skipping the generated
    C{read}/C{write} and their per-call checks.  Each decoder reads the
    string and container limits from the protocol it is given (its
    C{string_length_limit} and C{container_length_limit}).  Without the
    extension all four are C{None} and the codecs go through the generated
    code in Python.

  - C{_fast_decode} and C{_fast_encode}, the attributes of a protocol that
    C{thrift --gen py} code and C{TBase} hand whole structs to, when set.
    L{WholeStructProtocol} sets them to a subclass's C{decodeStruct} and
    C{encodeStruct} (our JSON protocol's parse-once reader and writer), and
    undoes C{TProtocolBase.__init__} setting them to C{None} on each
    instance.  Should generated code stop calling them, it calls the
    protocol's read and write API instead, which the subclass serves too
    (slower, same bytes).

  - Apache's protocol objects are plain Python objects with their state in
    their C{__dict__}, so one can be moved to a subclass of its class
    (C{__class__} assignment) that overrides one method: the processor's
    input answering C{readMessageBegin} with a header already read
    (L{withStoredHeader}), a reply writer starting over when a processor
    begins a second message (L{restartingEachMessage}).  Apache's own way,
    C{TProtocolDecorator}, builds a class per call: 2.5 times the time of a
    whole small call.  Where assignment fails, a proxy forwarding every
    other attribute does it (slower per call, same behaviour).

  - What C{thrift --gen py} code keeps on its objects: a processor's
    C{_handler} and C{_processMap} (method name to C{process_X}), through
    which a processor made by C{py:twisted} is told apart and its handler
    put in a thread pool (L{processorParts}, L{withHandler}); a
    C{py:twisted} client's C{_seqid} (the last seqid used) and C{_reqs}
    (seqid to the Deferred of each call awaiting its reply), which Apache's
    own C{TTwisted} reads and writes as we do (L{lastSeqid},
    L{setLastSeqid}, L{awaitingReplies}).  Without them a processor is run
    whole in the pool, and a client's replies find no call.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from thrift.protocol.TProtocol import TProtocolBase

__all__ = [
    "STRUCT_HOOKS",
    "WholeStructProtocol",
    "awaitingReplies",
    "decodeBinary",
    "decodeCompact",
    "encodeBinary",
    "encodeCompact",
    "lastSeqid",
    "processorParts",
    "restartingEachMessage",
    "setLastSeqid",
    "withHandler",
    "withStoredHeader",
]

try:
    from thrift.protocol import fastbinary
except ImportError:  # pragma: no cover - thrift built without its C extension
    _decode = _encode = _decodeCompact = _encodeCompact = None
else:
    _decode, _encode = fastbinary.decode_binary, fastbinary.encode_binary
    _decodeCompact, _encodeCompact = fastbinary.decode_compact, fastbinary.encode_compact

#: C{decodeBinary(struct, iprot, [cls, thrift_spec])} reads a whole binary
#: struct from C{iprot.trans.cstringio_buf} into C{struct}, within
#: C{iprot}'s string and container limits; C{None} without the extension.
decodeBinary: Final[Callable[[Any, Any, list[Any]], Any] | None] = _decode

#: C{encodeBinary(struct, [cls, thrift_spec])} is a whole struct's binary
#: encoding; C{None} without the extension.
encodeBinary: Final[Callable[[Any, list[Any]], bytes] | None] = _encode

#: C{decodeCompact(struct, iprot, [cls, thrift_spec])}: L{decodeBinary} for
#: the compact protocol.
decodeCompact: Final[Callable[[Any, Any, list[Any]], Any] | None] = _decodeCompact

#: C{encodeCompact(struct, [cls, thrift_spec])}: L{encodeBinary} for the
#: compact protocol.
encodeCompact: Final[Callable[[Any, list[Any]], bytes] | None] = _encodeCompact

#: The protocol attributes generated code reads and writes whole structs
#: through: the decoder's name, then the encoder's.
STRUCT_HOOKS: Final = ("_fast_decode", "_fast_encode")

#: Whether TProtocolBase.__init__ sets the hooks on each instance (to None).
_HOOKS_ON_INSTANCES: Final = all(hook in vars(TProtocolBase(None)) for hook in STRUCT_HOOKS)


class WholeStructProtocol(TProtocolBase):
    """
    A protocol to which generated code hands whole structs: a subclass
    defines C{decodeStruct(obj, iprot, [cls, spec])}, which reads into
    C{obj} or, when it is C{None}, returns a new immutable struct, and
    C{encodeStruct(obj, [cls, spec])}, whose result is written to the
    transport as it is.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The very methods, not wrappers: a call per struct, no more.
        cls._fast_decode = cls.decodeStruct
        cls._fast_encode = cls.encodeStruct

    def __init__(self, trans: Any) -> None:
        TProtocolBase.__init__(self, trans)  # Not super(): one per message.
        # It sets both hooks to None on the instance, hiding the class's.
        del self._fast_decode, self._fast_encode

    if not _HOOKS_ON_INSTANCES:  # pragma: no cover - a thrift that no longer does
        __init__ = TProtocolBase.__init__

    def decodeStruct(self, obj: Any, iprot: Any, typeArgs: list[Any]) -> Any:
        raise NotImplementedError

    def encodeStruct(self, obj: Any, typeArgs: list[Any]) -> bytes:
        raise NotImplementedError


_subclasses: dict[tuple[type, str], type] = {}


def _overriding(protocol: Any, name: str, method: Callable[..., Any]) -> bool:
    """
    Move C{protocol} to a cached subclass of its class whose C{name} is
    C{method}; C{False} if its class cannot be changed.

    A subclass, not an instance attribute: protocol decorators (as
    C{TMultiplexedProcessor}'s) build a class from the instance's dict,
    where a function would become a method and shadow the decorator's own.
    """
    cls = type(protocol)
    sub = _subclasses.get((cls, name))
    if sub is None:
        sub = _subclasses[cls, name] = type(cls.__name__, (cls,), {name: method})
    try:
        protocol.__class__ = sub
    except TypeError:  # A class of another layout (slots, or C).
        return False
    return True


def _storedReadMessageBegin(self: Any) -> tuple[str, int, int]:
    header: tuple[str, int, int] = self._txthriftHeader
    return header


def withStoredHeader(protocol: Any, header: tuple[str, int, int]) -> Any:
    """
    C{protocol}, whose message header has been read, returning C{header}
    when it is read again (by a processor): C{protocol} itself or, where its
    class cannot be changed, a proxy for it.
    """
    if _overriding(protocol, "readMessageBegin", _storedReadMessageBegin):
        protocol._txthriftHeader = header
        return protocol
    return _StoredHeader(protocol, header)


def _restartingWriteMessageBegin(self: Any, name: str, ttype: int, seqid: int) -> None:
    # Write each message over any partial one before it.
    self.trans.restart()
    for owner in type(self).__mro__:
        if vars(owner).get("writeMessageBegin") is _restartingWriteMessageBegin:
            super(owner, self).writeMessageBegin(name, ttype, seqid)  # type: ignore[arg-type]
            return


def restartingEachMessage(protocol: Any) -> Any:
    """
    C{protocol}, calling its transport's C{restart()} as each message
    begins: C{protocol} itself or, where its class cannot be changed, a
    proxy for it.
    """
    if _overriding(protocol, "writeMessageBegin", _restartingWriteMessageBegin):
        return protocol
    return _Restarting(protocol)


class _Forwarding:
    """
    Another protocol, attribute for attribute, but for what a subclass
    defines: what L{withStoredHeader} and L{restartingEachMessage} make of
    a protocol whose class cannot be changed.
    """

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


class _StoredHeader(_Forwarding):
    def __init__(self, protocol: Any, header: tuple[str, int, int]) -> None:
        super().__init__(protocol)
        self._header = header

    def readMessageBegin(self) -> tuple[str, int, int]:
        return self._header


class _Restarting(_Forwarding):
    def writeMessageBegin(self, name: str, ttype: int, seqid: int) -> None:
        self._protocol.trans.restart()
        self._protocol.writeMessageBegin(name, ttype, seqid)


def processorParts(processor: object) -> tuple[dict[str, Any], object] | None:
    """
    A generated processor's method table (name to C{process_X} function)
    and handler; C{None} for a processor made otherwise.
    """
    functions = getattr(processor, "_processMap", None)
    if not isinstance(functions, dict) or not functions or not hasattr(processor, "_handler"):
        return None
    return functions, processor._handler


def withHandler(processor: object, handler: object) -> object:
    """
    A copy of a generated processor calling C{handler} instead of its own.
    """
    changed: Any = copy.copy(processor)
    changed._handler = handler
    return changed


def lastSeqid(client: object) -> int | None:
    """
    The seqid a generated client used last, as it counts them.
    """
    seqid = getattr(client, "_seqid", None)
    return seqid if isinstance(seqid, int) else None


def setLastSeqid(client: object, seqid: int) -> None:
    """
    Make a generated client's next call use C{seqid + 1}.
    """
    client._seqid = seqid  # type: ignore[attr-defined]


def awaitingReplies(client: object) -> dict[int, Any] | None:
    """
    A generated C{py:twisted} client's calls awaiting replies: seqid to the
    Deferred the reply fires.
    """
    pending = getattr(client, "_reqs", None)
    return pending if isinstance(pending, dict) else None
