/*
 * txthrift._speedups: the loops that Python makes slow, of txthrift's unframed
 * message scanners and of its metrics.
 *
 * An unframed ("buffered") Thrift message has no length prefix, so its end is
 * found by walking its encoding.  txthrift/_scanning.py walks it in Python,
 * resumably, and says what is wrong with what it refuses.  Two walks here
 * spare it most of that work:
 *
 * - messageEnd and cutMessages walk whole binary or compact messages: the
 *   small calls that are most of any traffic cost a Python scanner more than
 *   everything else done with them.  They accept only a message that is
 *   whole in the buffer and within every limit, and give up on anything else
 *   (not whole yet, or bad), leaving it to the Python scanner, which resumes
 *   across reads and names what is wrong.  So they need never say why.
 * - skipFlat walks the elements of one container whose elements are all
 *   "flat" (fixed width, varints or strings), for the Python scanner: a
 *   container of a million strings must not cost a turn of its loop each.
 *   skipFlatPieces walks them across the pieces a message came in, so that
 *   a big one is not joined to be walked.
 *
 * Tally, below, counts calls for txthrift.metrics; accessLines makes the
 * lines of its access log; cutReplies cuts a client's framed replies.
 * cutFrames, binaryStart, joinFrames and binaryMessage, at the end, take a
 * framed binary call's per-message framing and header, and the writing of a
 * flat reply, out of Python.
 *
 * This module is optional: txthrift/_scanning.py does all of it in Python
 * when it was not compiled; the kinds below are its _I32_STRING, _VARINT,
 * _VARINT_STRING, _NESTS_STRUCT, _NESTS_LIST, _NESTS_MAP and _UNKNOWN, and
 * the tables its _BinaryScanner._KINDS and _CompactScanner._KINDS.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <structmember.h>

/* Element kinds other than a fixed width (a width is >= 0). */
#define BINARY_STRING (-1)  /* i32 big-endian length, then the bytes */
#define VARINT (-2)         /* 1 to 10 bytes, the last without its top bit */
#define COMPACT_STRING (-3) /* a varint length, then the bytes */
#define NESTS_STRUCT (-4)   /* fields up to a stop byte */
#define NESTS_LIST (-5)     /* a list or set header, then its elements */
#define NESTS_MAP (-6)      /* a map header, then its keys and values */
#define UNKNOWN (-7)        /* no type of the protocol */

#define MAX_VARINT 10

/*
 * The end of a varint starting at pos, or -1 if it is not whole or too long.
 * A value of 2**64 or more (a 10th byte above 1) is given as UINT64_MAX, not
 * wrapped to a small number: as a length it must be refused, as the Python
 * loop, which reads it whole, refuses it.
 */
static Py_ssize_t
varintEnd(const unsigned char *data, Py_ssize_t pos, Py_ssize_t size, uint64_t *value)
{
    uint64_t result = 0;
    int shift = 0;
    Py_ssize_t i;
    for (i = 0; i < MAX_VARINT && pos + i < size; i++) {
        unsigned char byte = data[pos + i];
        if (shift == 63 && (byte & 0x7F) > 1) {
            result = UINT64_MAX;
        } else {
            result |= (uint64_t)(byte & 0x7F) << shift;
        }
        if (!(byte & 0x80)) {
            *value = result;
            return pos + i + 1;
        }
        shift += 7;
    }
    return -1;
}

/* The end of the element of the given kind at pos, or -1 (see above). */
static Py_ssize_t
elementEnd(const unsigned char *data, Py_ssize_t pos, Py_ssize_t size, Py_ssize_t kind,
           Py_ssize_t maxString)
{
    uint64_t length;
    Py_ssize_t after;

    if (kind >= 0) {
        return size - pos >= kind ? pos + kind : -1;
    }
    switch (kind) {
    case BINARY_STRING: {
        int32_t signedLength;
        if (size - pos < 4) {
            return -1;
        }
        signedLength = (int32_t)(((uint32_t)data[pos] << 24) | ((uint32_t)data[pos + 1] << 16)
                                 | ((uint32_t)data[pos + 2] << 8) | (uint32_t)data[pos + 3]);
        if (signedLength < 0 || signedLength > maxString) {
            return -1;
        }
        after = pos + 4;
        length = (uint64_t)signedLength;
        break;
    }
    case VARINT:
        return varintEnd(data, pos, size, &length);
    case COMPACT_STRING:
        after = varintEnd(data, pos, size, &length);
        if (after < 0 || length > (uint64_t)maxString) {
            return -1;
        }
        break;
    default:
        return -1;
    }
    return (uint64_t)(size - after) >= length ? after + (Py_ssize_t)length : -1;
}

/* The big-endian i32 at data. */
static int32_t
readI32(const unsigned char *data)
{
    return (int32_t)(((uint32_t)data[0] << 24) | ((uint32_t)data[1] << 16)
                     | ((uint32_t)data[2] << 8) | (uint32_t)data[3]);
}

/* The kind of each type code of the binary and the compact protocol. */
static signed char binaryKinds[256];
static signed char compactKinds[256];

static void
fillKinds(void)
{
    int code;
    for (code = 0; code < 256; code++) {
        binaryKinds[code] = compactKinds[code] = UNKNOWN;
    }
    /* bool, byte, double, i16, i32, i64, string, struct, map, set, list, uuid */
    binaryKinds[2] = 1;
    binaryKinds[3] = 1;
    binaryKinds[4] = 8;
    binaryKinds[6] = 2;
    binaryKinds[8] = 4;
    binaryKinds[10] = 8;
    binaryKinds[11] = BINARY_STRING;
    binaryKinds[12] = NESTS_STRUCT;
    binaryKinds[13] = NESTS_MAP;
    binaryKinds[14] = NESTS_LIST;
    binaryKinds[15] = NESTS_LIST;
    binaryKinds[16] = 16;
    /* true, false (a byte each in a container), byte, i16, i32, i64, double,
     * binary, list, set, map, struct, uuid */
    compactKinds[1] = 1;
    compactKinds[2] = 1;
    compactKinds[3] = 1;
    compactKinds[4] = VARINT;
    compactKinds[5] = VARINT;
    compactKinds[6] = VARINT;
    compactKinds[7] = 8;
    compactKinds[8] = COMPACT_STRING;
    compactKinds[9] = NESTS_LIST;
    compactKinds[10] = NESTS_LIST;
    compactKinds[11] = NESTS_MAP;
    compactKinds[12] = NESTS_STRUCT;
    compactKinds[13] = 16;
}

/* The limits a message is held to, as txthrift.Limits gives them. */
typedef struct {
    Py_ssize_t maxFrame, maxString, maxContainer, maxDepth;
} Limits;

/*
 * A struct or container begun and not yet ended.  A container's elements
 * alternate by the count left: of evenType when it is even, of oddType when
 * it is odd (a map's keys and values, its count doubled).
 */
typedef struct {
    Py_ssize_t remaining; /* the elements still to come; -1 for a struct */
    unsigned char evenType, oddType;
} Open;

/* The deepest nesting walked here; a deeper message is left to Python. */
#define STACK_SIZE 128

/* The offset after a binary message's header (name, type, seqid), or -1. */
static Py_ssize_t
binaryHeader(const unsigned char *data, Py_ssize_t size, const Limits *limits)
{
    int32_t word, length;

    if (size < 4) {
        return -1;
    }
    word = readI32(data);
    if (word >= 0) {
        /* Old non-strict: name length, name, type byte, seqid. */
        if (word > limits->maxString || word > size - 9) {
            return -1;
        }
        return 9 + (Py_ssize_t)word;
    }
    /* Strict: version|type, name length, name, seqid. */
    if (((uint32_t)word >> 16) != 0x8001 || size < 8) {
        return -1;
    }
    length = readI32(data + 4);
    if (length < 0 || length > limits->maxString || length > size - 12) {
        return -1;
    }
    return 12 + (Py_ssize_t)length;
}

/* The offset after a compact message's header (id, version|type, seqid, name), or -1. */
static Py_ssize_t
compactHeader(const unsigned char *data, Py_ssize_t size, const Limits *limits)
{
    uint64_t value;
    Py_ssize_t pos;

    if (size < 2 || data[0] != 0x82 || (data[1] & 0x1F) != 1) {
        return -1;
    }
    pos = varintEnd(data, 2, size, &value);
    if (pos < 0) {
        return -1;
    }
    pos = varintEnd(data, pos, size, &value);
    if (pos < 0 || value > (uint64_t)limits->maxString || value > (uint64_t)(size - pos)) {
        return -1;
    }
    return pos + (Py_ssize_t)value;
}

/*
 * Open the list, set or map whose header is at pos: fill in its element
 * types and count (doubled for a map), and return the offset after the
 * header, or -1.
 */
static Py_ssize_t
containerHeader(const unsigned char *data, Py_ssize_t pos, Py_ssize_t size, int compact,
                int isMap, const Limits *limits, Open *opened)
{
    uint64_t count;

    if (!compact) {
        int32_t signedCount;
        Py_ssize_t headerSize = isMap ? 6 : 5;
        if (size - pos < headerSize) {
            return -1;
        }
        opened->evenType = data[pos];
        opened->oddType = data[pos + headerSize - 5];
        signedCount = readI32(data + pos + headerSize - 4);
        if (signedCount < 0) {
            return -1;
        }
        count = (uint64_t)signedCount;
        pos += headerSize;
    } else if (!isMap) {
        /* The count (15: a varint count follows) over the element type. */
        if (pos >= size) {
            return -1;
        }
        count = data[pos] >> 4;
        opened->evenType = opened->oddType = data[pos] & 0x0F;
        pos++;
        if (count == 15) {
            pos = varintEnd(data, pos, size, &count);
            if (pos < 0) {
                return -1;
            }
        }
    } else {
        /* A varint count, then (unless it is 0) the key type over the value type. */
        pos = varintEnd(data, pos, size, &count);
        if (pos < 0) {
            return -1;
        }
        opened->evenType = opened->oddType = 0;
        if (count) {
            if (pos >= size) {
                return -1;
            }
            opened->evenType = data[pos] >> 4;
            opened->oddType = data[pos] & 0x0F;
            pos++;
        }
    }
    if (count > (uint64_t)limits->maxContainer) {
        return -1;
    }
    opened->remaining = (Py_ssize_t)count * (isMap ? 2 : 1);
    return pos;
}

/*
 * The end of the binary or compact message at the start of data, if it is
 * whole in its size bytes and within every limit; -1 if not, or if it nests
 * deeper than STACK_SIZE.  Its end is its size: whatever follows is not
 * looked at, so size may be cut at max_frame_size beforehand.
 */
static Py_ssize_t
messageEnd(const unsigned char *data, Py_ssize_t size, int compact, const Limits *limits)
{
    const signed char *kinds = compact ? compactKinds : binaryKinds;
    Py_ssize_t maxDepth = limits->maxDepth < STACK_SIZE ? limits->maxDepth : STACK_SIZE;
    Open stack[STACK_SIZE];
    Py_ssize_t depth = 1;
    Py_ssize_t pos = compact ? compactHeader(data, size, limits)
                             : binaryHeader(data, size, limits);

    if (pos < 0) {
        return -1;
    }
    stack[0].remaining = -1;
    for (;;) {
        Open *top = &stack[depth - 1];
        unsigned char type;
        Py_ssize_t kind;

        if (top->remaining < 0) {
            /* In a struct: a field header, or its stop byte. */
            unsigned char header;
            if (pos >= size) {
                return -1;
            }
            header = data[pos];
            if (header == 0) {
                pos++;
                if (--depth == 0) {
                    return pos;
                }
                continue;
            }
            if (!compact) {
                /* The value's type code and an i16 field id. */
                if (size - pos < 3) {
                    return -1;
                }
                pos += 3;
                type = header;
            } else {
                /* The field id's delta (0: a varint id follows) over the type
                 * code, a boolean's type code being its value. */
                if (header >> 4) {
                    pos++;
                } else {
                    uint64_t fieldId;
                    pos = varintEnd(data, pos + 1, size, &fieldId);
                    if (pos < 0) {
                        return -1;
                    }
                }
                type = header & 0x0F;
                if (type == 1 || type == 2) {
                    continue;
                }
            }
        } else if (top->remaining == 0) {
            depth--;
            continue;
        } else {
            type = (top->remaining & 1) ? top->oddType : top->evenType;
            top->remaining--;
        }
        /* A value of this type starts at pos. */
        kind = kinds[type];
        if (kind >= COMPACT_STRING) {
            pos = elementEnd(data, pos, size, kind, limits->maxString);
            if (pos < 0) {
                return -1;
            }
            continue;
        }
        if (kind == UNKNOWN || depth >= maxDepth) {
            return -1;
        }
        top = &stack[depth];
        if (kind == NESTS_STRUCT) {
            top->remaining = -1;
            depth++;
            continue;
        }
        pos = containerHeader(data, pos, size, compact, kind == NESTS_MAP, limits, top);
        if (pos < 0) {
            return -1;
        }
        if (top->remaining) {
            Py_ssize_t evenKind = kinds[top->evenType], oddKind = kinds[top->oddType];
            if (evenKind >= 0 && oddKind >= 0) {
                /* Fixed widths (at least a byte each): skipped in one step. */
                Py_ssize_t pairs = top->remaining >> 1, total;
                if (pairs > size - pos) {
                    return -1;
                }
                total = pairs * (evenKind + oddKind) + (top->remaining & 1) * oddKind;
                if (total > size - pos) {
                    return -1;
                }
                pos += total;
            } else {
                depth++;
            }
        }
    }
}

PyDoc_STRVAR(skipFlat_doc,
"skipFlat(buffer, pos, remaining, evenKind, oddKind, maxString) -> (pos, remaining)\n\n"
"Walk up to `remaining` elements from `pos`: an element is of evenKind when\n"
"the count of those left is even, of oddKind when it is odd (a map's keys and\n"
"values, its count doubled).  A kind is a width >= 0, or -1 (binary protocol\n"
"string), -2 (varint) or -3 (compact protocol string).  Stops before the first\n"
"element that is not whole, or is a string longer than maxString, a negative\n"
"one or a varint of more than 10 bytes.");

/*
 * The five integers after the first argument of skipFlat and
 * skipFlatPieces: pos, remaining, evenKind, oddKind and maxString, each
 * checked as it is read (a second bad one must not hide the first's error).
 */
static int
walkArguments(PyObject *const *args, Py_ssize_t *values)
{
    int index;

    for (index = 0; index < 5; index++) {
        values[index] = PyLong_AsSsize_t(args[index + 1]);
        if (values[index] == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
skipFlat(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t values[5], pos, remaining, evenKind, oddKind, maxString, size;
    const unsigned char *data;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "skipFlat takes exactly 6 arguments");
        return NULL;
    }
    if (walkArguments(args, values) < 0) {
        return NULL;
    }
    pos = values[0], remaining = values[1], evenKind = values[2], oddKind = values[3];
    maxString = values[4];
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    data = (const unsigned char *)view.buf;
    size = view.len;
    if (pos < 0 || pos > size) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos is outside the buffer");
        return NULL;
    }
    while (remaining > 0) {
        Py_ssize_t end = elementEnd(data, pos, size, (remaining & 1) ? oddKind : evenKind,
                                    maxString);
        if (end < 0) {
            break;
        }
        pos = end;
        remaining--;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", pos, remaining);
}

/* Read the limits of messageEnd and cutMessages from their first arguments. */
static int
parseLimits(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected, const char *name,
            int *compact, Limits *limits)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes exactly %zd arguments", name, expected);
        return -1;
    }
    *compact = PyObject_IsTrue(args[0]);
    limits->maxFrame = PyLong_AsSsize_t(args[1]);
    limits->maxString = PyLong_AsSsize_t(args[2]);
    limits->maxContainer = PyLong_AsSsize_t(args[3]);
    limits->maxDepth = PyLong_AsSsize_t(args[4]);
    if (*compact < 0 || PyErr_Occurred()) {
        return -1;
    }
    if (limits->maxFrame < 0 || limits->maxString < 0 || limits->maxContainer < 0
        || limits->maxDepth < 0) {
        PyErr_Format(PyExc_ValueError, "%s: a limit is negative", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(messageEnd_doc,
"messageEnd(compact, maxFrame, maxString, maxContainer, maxDepth, buffer) -> int\n\n"
"The end of the binary (or, if compact is true, compact) message at the start\n"
"of buffer, if it is whole there and within the limits; -1 if it is not, or\n"
"it is no valid message, or it nests too deep to walk here.");

static PyObject *
messageEndFunction(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Limits limits;
    int compact;
    Py_ssize_t end;

    if (parseLimits(args, nargs, 6, "messageEnd", &compact, &limits) < 0
        || PyObject_GetBuffer(args[5], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    end = messageEnd((const unsigned char *)view.buf,
                     view.len < limits.maxFrame ? view.len : limits.maxFrame, compact, &limits);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(end);
}

PyDoc_STRVAR(cutMessages_doc,
"cutMessages(compact, maxFrame, maxString, maxContainer, maxDepth, buffer, messages) -> int\n\n"
"Append to the list messages, as bytes, each message at the start of buffer\n"
"that messageEnd finds the end of, one after another, and return where the\n"
"last ends (0 if none does).");

static PyObject *
cutMessages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Limits limits;
    int compact;
    Py_ssize_t start = 0;
    const unsigned char *data;

    if (parseLimits(args, nargs, 7, "cutMessages", &compact, &limits) < 0) {
        return NULL;
    }
    if (!PyList_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "cutMessages appends to a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[5], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    data = (const unsigned char *)view.buf;
    while (start < view.len) {
        Py_ssize_t left = view.len - start;
        Py_ssize_t end = messageEnd(data + start, left < limits.maxFrame ? left : limits.maxFrame,
                                    compact, &limits);
        PyObject *message;
        if (end < 0) {
            break;
        }
        if (start == 0 && end == view.len && PyBytes_CheckExact(args[5])) {
            /* The buffer is one message: it is its own copy. */
            message = Py_NewRef(args[5]);
        } else {
            message = PyBytes_FromStringAndSize((const char *)data + start, end);
        }
        if (message == NULL || PyList_Append(args[6], message) < 0) {
            Py_XDECREF(message);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(message);
        start += end;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(start);
}

/*
 * Tally: the per-call arithmetic of txthrift.metrics.Metrics, whose Python
 * base class _Tally in txthrift/metrics.py does the same where this module
 * was not compiled.  A server tells its observer of every call twice; done
 * in Python, counting a small call cost a fifth of the call.
 *
 * A record is a Python list, so that Python reads and sums it without a
 * copy: one count per outcome (in the order of the outcomes given), one per
 * duration bucket (bounds given, then +Inf), then the sum of the seconds.
 * Records are found by the name a call was sent by in self._records (see
 * tallyKept); a name not there, one kept for another service, or a call of
 * an unknown method, asks self._record(call, outcome).
 */
#include <time.h>

#define MAX_BOUNDS 64

typedef struct {
    PyObject_HEAD
    Py_ssize_t inFlight;
    long long received;
    long long sent;
    PyObject *records;  /* name: record */
    PyObject *outcomes; /* outcome: its index in a record */
    PyObject *clock;    /* None: CLOCK_MONOTONIC, as time.perf_counter on Linux */
    PyObject *unknown;  /* the outcome whose calls are all one record */
    Py_ssize_t unknownIndex; /* its index, -1 if it is no outcome */
    Py_ssize_t outcomeCount;
    Py_ssize_t bounds;
    double bound[MAX_BOUNDS];
    PyObject *serviceName; /* "service", an origin's attribute */
    PyObject *lastOrigin;  /* the origin of the call counted last, and its service */
    PyObject *lastService;
} Tally;

static int
tallyInit(Tally *self, PyObject *args, PyObject *kwargs)
{
    PyObject *outcomes, *bounds, *unknown, *clock = Py_None;
    static char *names[] = {"outcomes", "bounds", "unknown", "clock", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!U|O", names, &PyTuple_Type, &outcomes,
                                     &PyTuple_Type, &bounds, &unknown, &clock))
        return -1;
    if (PyTuple_GET_SIZE(bounds) > MAX_BOUNDS) {
        PyErr_SetString(PyExc_ValueError, "too many bounds");
        return -1;
    }
    PyObject *index = PyDict_New();
    if (index == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(outcomes); i++) {
        PyObject *number = PyLong_FromSsize_t(i);
        if (number == NULL || PyDict_SetItem(index, PyTuple_GET_ITEM(outcomes, i), number) < 0) {
            Py_XDECREF(number);
            Py_DECREF(index);
            return -1;
        }
        Py_DECREF(number);
    }
    self->bounds = PyTuple_GET_SIZE(bounds);
    for (Py_ssize_t i = 0; i < self->bounds; i++) {
        self->bound[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (self->bound[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(index);
            return -1;
        }
    }
    PyObject *records = PyDict_New();
    if (records == NULL) {
        Py_DECREF(index);
        return -1;
    }
    Py_XSETREF(self->outcomes, index);
    Py_XSETREF(self->records, records);
    PyObject *unknownIndex = PyDict_GetItemWithError(index, unknown);
    if (unknownIndex == NULL && PyErr_Occurred()) {
        Py_DECREF(index);
        Py_DECREF(records);
        return -1;
    }
    self->unknownIndex = unknownIndex == NULL ? -1 : PyLong_AsSsize_t(unknownIndex);
    self->outcomeCount = PyTuple_GET_SIZE(outcomes);
    Py_INCREF(unknown);
    Py_XSETREF(self->unknown, unknown);
    Py_XSETREF(self->serviceName, PyUnicode_InternFromString("service"));
    if (self->serviceName == NULL)
        return -1;
    Py_INCREF(clock);
    Py_XSETREF(self->clock, clock);
    self->inFlight = 0;
    self->received = self->sent = 0;
    return 0;
}

/* Whether self was initialised (its __init__ run, and not cleared since). */
static int
tallyReady(Tally *self)
{
    if (self->outcomes == NULL || self->records == NULL || self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Tally whose __init__ has not run");
        return 0;
    }
    return 1;
}

static int
tallyNow(Tally *self, double *now)
{
    if (self->clock == Py_None) {
        struct timespec spec;
        clock_gettime(CLOCK_MONOTONIC, &spec);
        *now = (double)spec.tv_sec + (double)spec.tv_nsec * 1e-9;
        return 0;
    }
    PyObject *value = PyObject_CallNoArgs(self->clock);
    if (value == NULL)
        return -1;
    *now = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
tallyStarted(Tally *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "callStarted(call, size)");
        return NULL;
    }
    if (!tallyReady(self))
        return NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if ((size == -1 && PyErr_Occurred()) || tallyNow(self, &now) < 0)
        return NULL;
    self->inFlight++;
    self->received += size;
    PyObject *began = PyFloat_FromDouble(now);
    if (began == NULL)
        return NULL;
    PyObject *token = PyTuple_Pack(2, began, args[0]);
    Py_DECREF(began);
    return token;
}

/*
 * The record kept for calls of name from origin (a new reference), or NULL
 * (with no error set when there is none).  self._records keeps, by name,
 * (service, record): the record is for calls of any service when service
 * is None (a name that says its service), else for that service's only.
 */
static PyObject *
tallyKept(Tally *self, PyObject *origin, PyObject *name)
{
    PyObject *kept = PyDict_GetItemWithError(self->records, name);
    if (kept == NULL || !PyTuple_CheckExact(kept) || PyTuple_GET_SIZE(kept) != 2)
        return NULL;
    Py_INCREF(kept);
    PyObject *service = PyTuple_GET_ITEM(kept, 0), *record = NULL;
    int same = service == Py_None;
    if (!same) {
        /* The calls of one connection come together: its origin's service
         * is asked once for them (the origin held, so never another's). */
        if (origin != self->lastOrigin) {
            PyObject *theirs = PyObject_GetAttr(origin, self->serviceName);
            if (theirs == NULL) {
                Py_DECREF(kept);
                return NULL;
            }
            Py_INCREF(origin);
            Py_XSETREF(self->lastOrigin, origin);
            Py_XSETREF(self->lastService, theirs);
        }
        same = PyObject_RichCompareBool(service, self->lastService, Py_EQ);
    }
    if (same > 0) {
        record = PyTuple_GET_ITEM(kept, 1);
        Py_INCREF(record);
    }
    Py_DECREF(kept);
    return record;
}

/* Add one to the count at index of record, or seconds to its last item. */
static int
tallyAdd(PyObject *record, Py_ssize_t index, double seconds)
{
    PyObject *old = PyList_GET_ITEM(record, index), *new;
    if (index == PyList_GET_SIZE(record) - 1) {
        double sum = PyFloat_AsDouble(old);
        if (sum == -1.0 && PyErr_Occurred())
            return -1;
        new = PyFloat_FromDouble(sum + seconds);
    } else {
        long long count = PyLong_AsLongLong(old);
        if (count == -1 && PyErr_Occurred())
            return -1;
        new = PyLong_FromLongLong(count + 1);
    }
    if (new == NULL)
        return -1;
    PyList_SET_ITEM(record, index, new);
    Py_DECREF(old);
    return 0;
}

static PyObject *
tallyEnded(Tally *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    if (nargs != 3 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 2) {
        PyErr_SetString(PyExc_TypeError, "callEnded(callStarted's token, outcome, size)");
        return NULL;
    }
    PyObject *call = PyTuple_GET_ITEM(args[0], 1);
    double began = PyFloat_AsDouble(PyTuple_GET_ITEM(args[0], 0));
    Py_ssize_t size = PyLong_AsSsize_t(args[2]);
    if ((began == -1.0 || size == -1) && PyErr_Occurred())
        return NULL;
    if (!tallyReady(self))
        return NULL;
    /* What the Python code below (the clock, _record) might change, read
     * first: the index of the outcome, and the shape of a record. */
    PyObject *found = PyDict_GetItemWithError(self->outcomes, args[1]);
    if (found == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "no such outcome: %R", args[1]);
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(found);
    Py_ssize_t outcomes = self->outcomeCount, bounds = self->bounds;
    if (index == -1 && PyErr_Occurred())
        return NULL;
    if (tallyNow(self, &now) < 0)
        return NULL;
    double elapsed = now - began;
    Py_ssize_t bucket = 0;
    while (bucket < bounds && elapsed > self->bound[bucket])
        bucket++;
    self->inFlight--;
    self->sent += size;
    PyObject *record = NULL;
    if (PyTuple_CheckExact(call) && PyTuple_GET_SIZE(call) > 1 && index != self->unknownIndex) {
        record = tallyKept(self, PyTuple_GET_ITEM(call, 0), PyTuple_GET_ITEM(call, 1));
        if (record == NULL && PyErr_Occurred())
            return NULL;
    }
    if (record == NULL) {
        record = PyObject_CallMethod((PyObject *)self, "_record", "OO", call, args[1]);
        if (record == NULL)
            return NULL;
    }
    int failed = !PyList_CheckExact(record) || index < 0 || index >= outcomes ||
        PyList_GET_SIZE(record) != outcomes + bounds + 2;
    if (failed)
        PyErr_SetString(PyExc_TypeError, "a record is a list of counts and a sum");
    else
        failed = tallyAdd(record, index, 0) < 0 || tallyAdd(record, outcomes + bucket, 0) < 0 ||
            tallyAdd(record, PyList_GET_SIZE(record) - 1, elapsed) < 0;
    Py_DECREF(record);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static int
tallyTraverse(Tally *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self)); /* a heap type: its instances hold it */
    Py_VISIT(self->records);
    Py_VISIT(self->outcomes);
    Py_VISIT(self->clock);
    Py_VISIT(self->unknown);
    Py_VISIT(self->lastOrigin);
    return 0;
}

static int
tallyClear(Tally *self)
{
    Py_CLEAR(self->records);
    Py_CLEAR(self->outcomes);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->unknown);
    Py_CLEAR(self->serviceName);
    Py_CLEAR(self->lastOrigin);
    Py_CLEAR(self->lastService);
    return 0;
}

static void
tallyDealloc(Tally *self)
{
    PyTypeObject *type = Py_TYPE(self); /* a heap type: its instances hold it */
    PyObject_GC_UnTrack(self);
    tallyClear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef tallyMethods[] = {
    {"callStarted", (PyCFunction)(void (*)(void))tallyStarted, METH_FASTCALL,
     "Count a call of size bytes begun; return the token callEnded takes."},
    {"callEnded", (PyCFunction)(void (*)(void))tallyEnded, METH_FASTCALL,
     "Count the call callStarted gave the token for, ended with outcome and size bytes."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef tallyMembers[] = {
    {"inFlight", T_PYSSIZET, offsetof(Tally, inFlight), 0, "calls begun and not ended"},
    {"received", T_LONGLONG, offsetof(Tally, received), 0, "bytes of the calls"},
    {"sent", T_LONGLONG, offsetof(Tally, sent), 0, "bytes of their replies"},
    {"_records", T_OBJECT, offsetof(Tally, records), READONLY, "name: record"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot tallySlots[] = {
    {Py_tp_doc, "Counts of calls by name and outcome, with their durations."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, tallyInit},
    {Py_tp_traverse, tallyTraverse},
    {Py_tp_clear, tallyClear},
    {Py_tp_dealloc, tallyDealloc},
    {Py_tp_methods, tallyMethods},
    {Py_tp_members, tallyMembers},
    {0, NULL},
};

static PyType_Spec tallySpec = {
    "txthrift._speedups.Tally", sizeof(Tally), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, tallySlots,
};

/*
 * accessLines: the lines of txthrift/_accesslog.py's access log, made as
 * its formatLines makes them in Python where this module was not built.
 * Each entry is (time, seconds taken, call, request bytes, outcome, reply
 * bytes); what many lines share, the JSON of a call's peer and names and
 * of the second it ended in, comes from prefixes and stamps (asked of
 * prefixOf(origin, name) and stampOf(second) when missing).  A name longer
 * than longest is not kept: the caches hold no name a peer made big.
 */
static int
appendText(char **buffer, Py_ssize_t *used, Py_ssize_t *size, PyObject *text)
{
    Py_ssize_t length;
    const char *data = PyUnicode_AsUTF8AndSize(text, &length);
    if (data == NULL)
        return -1;
    if (*used + length + 160 > *size) {
        Py_ssize_t wanted = (*used + length + 160) * 2;
        char *grown = PyMem_Realloc(*buffer, wanted);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *buffer = grown;
        *size = wanted;
    }
    memcpy(*buffer + *used, data, length);
    *used += length;
    return 0;
}

/* The value of cache[key], asked of make(*arguments) when missing (kept if keep). */
static PyObject *
cached(PyObject *cache, PyObject *key, PyObject *make, PyObject *arguments, int keep)
{
    PyObject *value = PyDict_GetItemWithError(cache, key);
    if (value != NULL) {
        Py_INCREF(value);
        return value;
    }
    if (PyErr_Occurred())
        return NULL;
    value = PyObject_Call(make, arguments, NULL);
    if (value == NULL)
        return NULL;
    if (!PyUnicode_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "an access log's piece is a str");
        Py_DECREF(value);
        return NULL;
    }
    if (keep && PyDict_SetItem(cache, key, value) < 0) {
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

static int
accessLine(PyObject *entry, PyObject *const *args, char **buffer, Py_ssize_t *used,
           Py_ssize_t *size)
{
    PyObject *prefixes = args[1], *prefixOf = args[2], *stamps = args[3], *stampOf = args[4];
    Py_ssize_t longest = PyLong_AsSsize_t(args[5]);
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 6 ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 2)) ||
            PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 2)) < 3 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(entry, 4))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "not an access log entry");
        return -1;
    }
    PyObject *call = PyTuple_GET_ITEM(entry, 2);
    double now = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 0));
    double elapsed = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 1));
    long long seqid = PyLong_AsLongLong(PyTuple_GET_ITEM(call, 2));
    long long received = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 3));
    long long sent = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 5));
    if (PyErr_Occurred())
        return -1;
    if (!isfinite(now) || !isfinite(elapsed) || fabs(now) > 1e15 || fabs(elapsed) > 1e9) {
        PyErr_SetString(PyExc_ValueError, "an access log entry's times are out of range");
        return -1;
    }
    long long second = (long long)now;
    PyObject *secondObject = PyLong_FromLongLong(second);
    if (secondObject == NULL)
        return -1;
    PyObject *arguments = PyTuple_Pack(1, secondObject);
    PyObject *stamp = arguments == NULL ? NULL : cached(stamps, secondObject, stampOf,
                                                        arguments, 1);
    Py_XDECREF(arguments);
    Py_DECREF(secondObject);
    if (stamp == NULL)
        return -1;
    PyObject *name = PyTuple_GET_ITEM(call, 1);
    PyObject *key = PyTuple_Pack(2, PyTuple_GET_ITEM(call, 0), name);
    PyObject *prefix = key == NULL ? NULL : cached(
        prefixes, key, prefixOf, key, !PyUnicode_Check(name) ||
        PyUnicode_GET_LENGTH(name) <= longest);
    Py_XDECREF(key);
    int failed = prefix == NULL || appendText(buffer, used, size, stamp) < 0;
    Py_DECREF(stamp);
    if (!failed)
        *used += sprintf(*buffer + *used, ".%06lldZ\",", (long long)((now - second) * 1e6));
    failed = failed || appendText(buffer, used, size, prefix) < 0;
    Py_XDECREF(prefix);
    if (!failed)
        *used += sprintf(*buffer + *used, "%lld,\"outcome\":\"", seqid);
    if (failed || appendText(buffer, used, size, PyTuple_GET_ITEM(entry, 4)) < 0)
        return -1;
    *used += sprintf(*buffer + *used,
                     "\",\"duration_us\":%lld,\"request_bytes\":%lld,\"reply_bytes\":%lld}\n",
                     (long long)(elapsed * 1e6), received, sent);
    return 0;
}

static PyObject *
accessLines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
            !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "accessLines(entries, prefixes, prefixOf, stamps, stampOf, longest)");
        return NULL;
    }
    Py_ssize_t used = 0, size = 256 * (PyList_GET_SIZE(args[0]) + 1);
    char *buffer = PyMem_Malloc(size);
    if (buffer == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[0]); i++) {
        PyObject *entry = PyList_GET_ITEM(args[0], i);
        Py_INCREF(entry);
        int failed = accessLine(entry, args, &buffer, &used, &size) < 0;
        Py_DECREF(entry);
        if (failed) {
            PyMem_Free(buffer);
            return NULL;
        }
    }
    PyObject *lines = PyBytes_FromStringAndSize(buffer, used);
    PyMem_Free(buffer);
    return lines;
}

PyDoc_STRVAR(accessLines_doc,
"accessLines(entries, prefixes, prefixOf, stamps, stampOf, longest) -> bytes\n\n"
"The access log's lines of entries, as txthrift._accesslog.formatLines makes them.");

/*
 * The walk of skipFlatPieces: a flat container's elements across the pieces
 * of a message as they came, so that they need not be joined to be walked.
 */

/*
 * Walk the whole elements of a flat container in data[pos:size], counting
 * them off *remaining (as skipFlat does); return where the walk stopped.
 *
 * Strings of one length (a list<string> of ids, say) are walked as a run: the
 * next element is taken to be as long as the last, and its length is only
 * compared, so that where each element starts does not wait on reading the
 * one before it.
 */
static Py_ssize_t
flatRun(const unsigned char *data, Py_ssize_t pos, Py_ssize_t size, Py_ssize_t *remaining,
        Py_ssize_t evenKind, Py_ssize_t oddKind, Py_ssize_t maxString)
{
    Py_ssize_t left = *remaining;
    int strings = evenKind == oddKind && (evenKind == BINARY_STRING || evenKind == COMPACT_STRING);

    while (left > 0) {
        Py_ssize_t end = elementEnd(data, pos, size, (left & 1) ? oddKind : evenKind, maxString);
        if (end < 0) {
            break;
        }
        if (strings) {
            /* The same header (i32 length, or a one-byte varint) is the same
             * length, already checked against maxString. */
            Py_ssize_t stride = end - pos;
            if (evenKind == BINARY_STRING) {
                int32_t length = readI32(data + pos);
                pos = end;
                left--;
                while (left > 0 && size - pos >= stride && readI32(data + pos) == length) {
                    pos += stride;
                    left--;
                }
                continue;
            }
            if (!(data[pos] & 0x80)) {
                unsigned char header = data[pos];
                pos = end;
                left--;
                while (left > 0 && size - pos >= stride && data[pos] == header) {
                    pos += stride;
                    left--;
                }
                continue;
            }
        }
        pos = end;
        left--;
    }
    *remaining = left;
    return pos;
}

/* The bytes and size of a piece: a bytes or a bytearray, as checked before. */
static const unsigned char *
pieceAt(PyObject *pieces, Py_ssize_t index, Py_ssize_t *size)
{
    PyObject *piece = PyList_GET_ITEM(pieces, index);
    if (PyBytes_Check(piece)) {
        *size = PyBytes_GET_SIZE(piece);
        return (const unsigned char *)PyBytes_AS_STRING(piece);
    }
    *size = PyByteArray_GET_SIZE(piece);
    return (const unsigned char *)PyByteArray_AS_STRING(piece);
}

/*
 * The size of the element of the given kind at (index, pos), whose start runs
 * past its piece: its header read across the pieces; -1 if they end before
 * its header does, or it is bad (see elementEnd).
 */
static Py_ssize_t
crossingSize(PyObject *pieces, Py_ssize_t index, Py_ssize_t pos, Py_ssize_t kind,
             Py_ssize_t maxString)
{
    unsigned char head[MAX_VARINT];
    Py_ssize_t got = 0, count = PyList_GET_SIZE(pieces), after;
    uint64_t length;

    if (kind >= 0) {
        return kind;
    }
    while (got < MAX_VARINT && index < count) {
        Py_ssize_t size;
        const unsigned char *data = pieceAt(pieces, index, &size);
        Py_ssize_t take = size - pos < MAX_VARINT - got ? size - pos : MAX_VARINT - got;
        memcpy(head + got, data + pos, (size_t)take);
        got += take;
        pos = 0;
        index++;
    }
    if (kind == BINARY_STRING) {
        int32_t signedLength;
        if (got < 4) {
            return -1;
        }
        signedLength = readI32(head);
        return signedLength < 0 || signedLength > maxString ? -1 : 4 + (Py_ssize_t)signedLength;
    }
    after = varintEnd(head, 0, got, &length);
    if (after < 0 || kind == VARINT) {
        return after;
    }
    /* The second bound keeps after + length a Py_ssize_t whatever the limit. */
    if (kind != COMPACT_STRING || length > (uint64_t)maxString
            || length > (uint64_t)(PY_SSIZE_T_MAX - after)) {
        return -1;
    }
    return after + (Py_ssize_t)length;
}

PyDoc_STRVAR(skipFlatPieces_doc,
"skipFlatPieces(pieces, pos, remaining, evenKind, oddKind, maxString)\n"
"    -> (index, pos, remaining, passed)\n\n"
"skipFlat over the bytes of `pieces` (a list of bytes or bytearray) as if\n"
"joined, from `pos` in the first: elements may run across pieces.  Returns\n"
"where the walk stopped as a piece's index and an offset in it (the offset\n"
"inside that piece: past a piece's end is the next piece's start, and\n"
"index == len(pieces) when all were walked), the elements left, and the\n"
"bytes of the pieces before index.");

static PyObject *
skipFlatPieces(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *pieces;
    Py_ssize_t values[5], pos, remaining, evenKind, oddKind, maxString, index, count;
    Py_ssize_t total = 0, passed = 0;

    if (nargs != 6 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "skipFlatPieces(pieces, pos, remaining, evenKind, oddKind, maxString)");
        return NULL;
    }
    pieces = args[0];
    if (walkArguments(args, values) < 0) {
        return NULL;
    }
    pos = values[0], remaining = values[1], evenKind = values[2], oddKind = values[3];
    maxString = values[4];
    count = PyList_GET_SIZE(pieces);
    for (index = 0; index < count; index++) {
        PyObject *piece = PyList_GET_ITEM(pieces, index);
        if (PyBytes_Check(piece)) {
            total += PyBytes_GET_SIZE(piece);
        } else if (PyByteArray_Check(piece)) {
            total += PyByteArray_GET_SIZE(piece);
        } else {
            PyErr_SetString(PyExc_TypeError, "skipFlatPieces: a piece is not bytes or bytearray");
            return NULL;
        }
    }
    if (pos < 0 || pos > total) {
        PyErr_SetString(PyExc_ValueError, "pos is outside the pieces");
        return NULL;
    }
    /* No Python code runs below: the list and its pieces stay as they are. */
    index = 0;
    for (;;) {
        Py_ssize_t size, elementSize;
        const unsigned char *data;
        /* Into the piece pos is in (past empty ones and those walked). */
        while (index < count) {
            pieceAt(pieces, index, &size);
            if (pos < size) {
                break;
            }
            pos -= size;
            passed += size;
            index++;
        }
        if (remaining <= 0) {
            break;
        }
        if (index < count) {
            data = pieceAt(pieces, index, &size);
            pos = flatRun(data, pos, size, &remaining, evenKind, oddKind, maxString);
            if (remaining <= 0 || pos >= size) {
                continue;
            }
        }
        /* The element at pos is not whole in its piece (or is bad), or
         * there are no more bytes (for a fixed width, it may need none). */
        elementSize = crossingSize(pieces, index, pos, (remaining & 1) ? oddKind : evenKind,
                                   maxString);
        if (elementSize < 0 || elementSize > total - passed - pos) {
            break;
        }
        pos += elementSize;
        remaining--;
    }
    return Py_BuildValue("nnnn", index, pos, remaining, passed);
}

/*
 * cutReplies: the frames a client reads, cut and their message headers read
 * in one loop, for txthrift/_client.py (whose _cutRepliesInPython is its
 * twin).  Each frame is a big-endian i32 length, 1..maxFrame, then a strict
 * binary message: the version word 0x8001, a byte nobody reads, the type
 * byte, the name as an i32 length (0..maxName) and UTF-8 bytes, the i32
 * seqid, then the body.  For each such frame whole in buffer, from its
 * start, it appends (seqid, type, name, message, where its body starts in
 * message) to replies; it stops at the first that is not one (not whole
 * yet, or anything else), leaving it to the framer and the codec, which
 * say what is wrong.  It returns the bytes it took.
 */
static uint32_t
bigEndian32(const unsigned char *data)
{
    return (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
}

static PyObject *
oneReply(const unsigned char *message, Py_ssize_t length, Py_ssize_t maxName)
{
    /* The reply of a frame of length bytes at message, or NULL: with an
     * exception set only for a failure of Python's (memory). */
    if (length < 12 || message[0] != 0x80 || message[1] != 0x01)
        return NULL;
    int32_t nameLength = (int32_t)bigEndian32(message + 4);
    if (nameLength < 0 || nameLength > maxName || (Py_ssize_t)nameLength > length - 12)
        return NULL;
    PyObject *name = PyUnicode_DecodeUTF8((const char *)message + 8, nameLength, NULL);
    if (name == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear();  /* Not UTF-8: the codec refuses it, saying so. */
        return NULL;
    }
    Py_ssize_t bodyStart = 12 + (Py_ssize_t)nameLength;
    int32_t seqid = (int32_t)bigEndian32(message + 8 + nameLength);
    PyObject *reply = PyTuple_New(5);
    PyObject *items[4] = {
        PyLong_FromLong(seqid), PyLong_FromLong(message[3]),
        PyBytes_FromStringAndSize((const char *)message, length),
        PyLong_FromSsize_t(bodyStart),
    };
    if (reply == NULL || items[0] == NULL || items[1] == NULL || items[2] == NULL ||
            items[3] == NULL) {
        Py_XDECREF(reply);
        Py_DECREF(name);
        for (int i = 0; i < 4; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    PyTuple_SET_ITEM(reply, 0, items[0]);
    PyTuple_SET_ITEM(reply, 1, items[1]);
    PyTuple_SET_ITEM(reply, 2, name);
    PyTuple_SET_ITEM(reply, 3, items[2]);
    PyTuple_SET_ITEM(reply, 4, items[3]);
    return reply;
}

static PyObject *
cutReplies(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "cutReplies(buffer, maxFrame, maxName, replies)");
        return NULL;
    }
    Py_ssize_t maxFrame = PyLong_AsSsize_t(args[1]);
    Py_ssize_t maxName = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len, pos = 0;
    while (size - pos >= 4) {
        int32_t length = (int32_t)bigEndian32(data + pos);
        if (length < 1 || length > maxFrame || length > size - pos - 4)
            break;
        PyObject *reply = oneReply(data + pos + 4, length, maxName);
        if (reply == NULL) {
            if (PyErr_Occurred()) {
                PyBuffer_Release(&view);
                return NULL;
            }
            break;
        }
        int appended = PyList_Append(args[3], reply);
        Py_DECREF(reply);
        if (appended < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        pos += 4 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
}

PyDoc_STRVAR(cutReplies_doc,
"cutReplies(buffer, maxFrame, maxName, replies) -> int\n\n"
"Append (seqid, type, name, message, body start) for each whole framed strict\n"
"binary message from the start of buffer to replies; return the bytes taken.");

/*
 * The small framed binary call's path, per message: frames cut out of a read,
 * a strict binary message's header read, replies framed and joined into one
 * write.  Each has a Python twin (txthrift/_framing.py, txthrift/_codec.py)
 * doing the same where this module was not compiled; done in Python, they
 * cost a 13-byte call about a quarter of its server time.
 */

PyDoc_STRVAR(cutFrames_doc,
"cutFrames(data, maxFrame, messages) -> int\n\n"
"Append to the list messages, as bytes, each whole frame's message at the\n"
"start of data (a big-endian i32 length, then that many bytes), one after\n"
"another, and return where the last ends.  Stops at a frame not whole or\n"
"whose length is outside 1..maxFrame: the Python loop deals with it.");

static PyObject *
cutFrames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t maxFrame, start = 0;
    const unsigned char *data;

    if (nargs != 3 || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "cutFrames(data, maxFrame, messages: list)");
        return NULL;
    }
    maxFrame = PyLong_AsSsize_t(args[1]);
    if (maxFrame == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    data = (const unsigned char *)view.buf;
    while (view.len - start >= 4) {
        /* The length as a signed i32: one with its top bit set is negative,
         * and refused below as the Python loop refuses it. */
        int32_t length = readI32(data + start);
        PyObject *message;
        if (length <= 0 || length > maxFrame || length > view.len - start - 4) {
            break;
        }
        message = PyBytes_FromStringAndSize((const char *)data + start + 4, length);
        if (message == NULL || PyList_Append(args[2], message) < 0) {
            Py_XDECREF(message);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(message);
        start += 4 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(start);
}

/* Put item (a new reference, or NULL on an error) in the new tuple; -1 for NULL. */
static int
setItem(PyObject *tuple, Py_ssize_t index, PyObject *item)
{
    if (item == NULL) {
        return -1;
    }
    PyTuple_SET_ITEM(tuple, index, item);
    return 0;
}

PyDoc_STRVAR(binaryStart_doc,
"binaryStart(message, maxName) -> (name, type, seqid, body) or None\n\n"
"The header of a strict binary message (0x80 0x01, a byte not read, the type\n"
"byte, the name as an i32 length and UTF-8, the i32 seqid), and an io.BytesIO\n"
"of message positioned where its body begins; None when message is shorter\n"
"than 12 bytes, does not start with 0x8001, or its name is longer than\n"
"maxName or than the message holds.  Raises UnicodeDecodeError for a name\n"
"that is not UTF-8.");

/* io.BytesIO and the name of its seek method, looked up at the first call. */
static PyObject *bytesIO = NULL;
static PyObject *seekName = NULL;

/* A BytesIO of message (sharing its bytes) positioned at start. */
static PyObject *
bytesIOAt(PyObject *message, Py_ssize_t start)
{
    PyObject *buffer, *position, *moved;
    if (bytesIO == NULL) {
        PyObject *io = PyImport_ImportModule("io");
        if (io == NULL) {
            return NULL;
        }
        bytesIO = PyObject_GetAttrString(io, "BytesIO");
        Py_DECREF(io);
        if (bytesIO == NULL) {
            return NULL;
        }
    }
    if (seekName == NULL && (seekName = PyUnicode_InternFromString("seek")) == NULL) {
        return NULL;
    }
    buffer = PyObject_CallOneArg(bytesIO, message);
    position = buffer == NULL ? NULL : PyLong_FromSsize_t(start);
    moved = position == NULL ? NULL : PyObject_CallMethodOneArg(buffer, seekName, position);
    Py_XDECREF(position);
    if (moved == NULL) {
        Py_XDECREF(buffer);
        return NULL;
    }
    Py_DECREF(moved);
    return buffer;
}

/*
 * A limit given as a Python int, in *limit: one past what a Py_ssize_t holds
 * (max_string_length may be any size) is PY_SSIZE_T_MAX, more than any
 * message holds; one below is -1, which nothing is within.  -1 on an error.
 */
static int
limitOf(PyObject *value, Py_ssize_t *limit)
{
    int overflow;
    long long given = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (given == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || given > PY_SSIZE_T_MAX || given < -1) {
        *limit = (overflow > 0 || given > PY_SSIZE_T_MAX) ? PY_SSIZE_T_MAX : -1;
    } else {
        *limit = (Py_ssize_t)given;
    }
    return 0;
}

static PyObject *
binaryStart(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t maxName, end;
    const unsigned char *data;
    int32_t length, seqid;
    int mtype;
    PyObject *name, *result;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "binaryStart(message, maxName)");
        return NULL;
    }
    if (limitOf(args[1], &maxName) < 0 || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    data = (const unsigned char *)view.buf;
    if (view.len < 12 || data[0] != 0x80 || data[1] != 0x01) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    length = readI32(data + 4);
    end = 8 + (Py_ssize_t)length;
    if (length < 0 || length > maxName || end > view.len - 4) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    mtype = data[3];
    seqid = readI32(data + end);
    name = PyUnicode_DecodeUTF8((const char *)data + 8, length, NULL);
    PyBuffer_Release(&view);
    if (name == NULL) {
        return NULL;
    }
    result = PyTuple_New(4);
    if (result == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, name);
    if (setItem(result, 1, PyLong_FromLong(mtype)) < 0
        || setItem(result, 2, PyLong_FromLong(seqid)) < 0
        || setItem(result, 3, bytesIOAt(args[0], end + 4)) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

PyDoc_STRVAR(joinFrames_doc,
"joinFrames(messages) -> bytes\n\n"
"The messages of the list, each after its length as a big-endian u32, as one\n"
"string: what b''.join makes of the prefixes and messages interleaved; None\n"
"where one is not bytes (a bytearray, say: the caller joins those itself).");

static PyObject *
joinFrames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t count, total = 0, i;
    PyObject *list, *joined;
    char *out;

    if (nargs != 1 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "joinFrames(messages: list)");
        return NULL;
    }
    list = args[0];
    count = PyList_GET_SIZE(list);
    for (i = 0; i < count; i++) {
        PyObject *message = PyList_GET_ITEM(list, i);
        Py_ssize_t size;
        if (!PyBytes_Check(message)) {
            Py_RETURN_NONE;
        }
        size = PyBytes_GET_SIZE(message);
        if (size > 0xFFFFFFFFLL || total > PY_SSIZE_T_MAX - 4 - size) {
            PyErr_SetString(PyExc_OverflowError, "a frame too long to prefix");
            return NULL;
        }
        total += 4 + size;
    }
    joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) {
        return NULL;
    }
    out = PyBytes_AS_STRING(joined);
    /* The list is only read above and here, with nothing run in between that
     * could change it: its items and their sizes are as counted. */
    for (i = 0; i < count; i++) {
        PyObject *message = PyList_GET_ITEM(list, i);
        Py_ssize_t size = PyBytes_GET_SIZE(message);
        uint32_t length = (uint32_t)size;
        out[0] = (char)(length >> 24);
        out[1] = (char)(length >> 16);
        out[2] = (char)(length >> 8);
        out[3] = (char)length;
        memcpy(out + 4, PyBytes_AS_STRING(message), size);
        out += 4 + size;
    }
    return joined;
}

PyDoc_STRVAR(binaryMessage_doc,
"binaryMessage(head, seqid, body, spec) -> bytes or None\n\n"
"A whole binary message: head (its version word, type and name), the i32\n"
"seqid, then body's fields as its thrift_spec spec lists them, as Apache's C\n"
"coder writes them, when each field set is flat: a str or bytes in a string\n"
"field, an int in an integer field within its range, a bool in a bool field,\n"
"a float in a double field, each of exactly that type.  None for any other\n"
"body (a container, a struct, a value of another type, anything that would\n"
"not encode), for Apache's coder to write or refuse.");

/* Binary protocol field types (Thrift's TType) written here. */
#define TYPE_BOOL 2
#define TYPE_BYTE 3
#define TYPE_DOUBLE 4
#define TYPE_I16 6
#define TYPE_I32 8
#define TYPE_I64 10
#define TYPE_STRING 11
/* The most fields set that a body written here may have. */
#define MOST_FLAT 16

typedef struct {
    int type;
    int fid;
    PyObject *value;     /* a new reference */
    const char *data;    /* a string's bytes */
    Py_ssize_t size;     /* its length */
    long long number;    /* an integer's or bool's value */
} FlatField;

/* Read one field's value from body into *field: 1 if set and flat, 0 if not
 * set, -1 if not flat (no error left set), -2 if reading it raised anything
 * but AttributeError (the error left set: a property's MemoryError, say, is
 * not swallowed). */
static int
flatField(PyObject *body, PyObject *entry, FlatField *field)
{
    PyObject *value;
    int overflow = 0;
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 3
        || !PyLong_Check(PyTuple_GET_ITEM(entry, 0)) || !PyLong_Check(PyTuple_GET_ITEM(entry, 1))
        || !PyUnicode_Check(PyTuple_GET_ITEM(entry, 2))) {
        return -1;
    }
    field->fid = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 0));
    field->type = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
    if (PyErr_Occurred() || field->fid < -32768 || field->fid > 32767) {
        PyErr_Clear();
        return -1;
    }
    value = PyObject_GetAttr(body, PyTuple_GET_ITEM(entry, 2));
    if (value == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -2;
        }
        PyErr_Clear();
        return -1;
    }
    if (value == Py_None) {
        Py_DECREF(value);
        return 0;
    }
    field->value = value;
    switch (field->type) {
    case TYPE_STRING:
        if (PyUnicode_CheckExact(value) && PyUnicode_IS_COMPACT_ASCII(value)) {
            /* Its UTF-8 is its own data: nothing is made or kept. */
            field->data = PyUnicode_AsUTF8AndSize(value, &field->size);
        } else if (PyUnicode_CheckExact(value)) {
            /* Encoded for this message alone: AsUTF8AndSize would keep a
             * UTF-8 copy inside the string for as long as it lives. */
            PyObject *encoded = PyUnicode_AsUTF8String(value);
            field->data = NULL;
            if (encoded != NULL) {
                Py_DECREF(value);
                value = field->value = encoded;
                field->data = PyBytes_AS_STRING(encoded);
                field->size = PyBytes_GET_SIZE(encoded);
            }
        } else if (PyBytes_CheckExact(value)) {
            field->data = PyBytes_AS_STRING(value);
            field->size = PyBytes_GET_SIZE(value);
        } else {
            field->data = NULL;
        }
        if (field->data != NULL && field->size <= INT32_MAX) {
            return 1;
        }
        break;
    case TYPE_BOOL:
        if (PyBool_Check(value)) {
            field->number = value == Py_True;
            return 1;
        }
        break;
    case TYPE_DOUBLE:
        if (PyFloat_CheckExact(value)) {
            return 1;
        }
        break;
    case TYPE_BYTE: case TYPE_I16: case TYPE_I32: case TYPE_I64:
        if (PyLong_CheckExact(value)) {
            long long lowest = field->type == TYPE_BYTE ? INT8_MIN : field->type == TYPE_I16
                ? INT16_MIN : field->type == TYPE_I32 ? INT32_MIN : INT64_MIN;
            field->number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (!overflow && !PyErr_Occurred() && field->number >= lowest
                && field->number <= -(lowest + 1)) {
                return 1;
            }
        }
        break;
    }
    PyErr_Clear();
    Py_DECREF(value);
    return -1;
}

/* Write value's `width` low bytes big-endian at out; return what follows. */
static char *
bigEndian(char *out, unsigned long long value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)(value & 0xFF);
        value >>= 8;
    }
    return out + width;
}

/* Read body's fields, as spec lists them, into fields (each holding a new
 * reference; *count of them): 1 if every field set is flat, 0 if one is not
 * or there are more than MOST_FLAT, -1 if reading one raised (error set). */
static int
flatFields(PyObject *body, PyObject *spec, FlatField *fields, Py_ssize_t *count)
{
    Py_ssize_t i;

    for (i = 0; i < PyTuple_GET_SIZE(spec); i++) {
        PyObject *entry = PyTuple_GET_ITEM(spec, i);
        int found;
        if (entry == Py_None) {
            continue;
        }
        if (*count == MOST_FLAT) {
            return 0;
        }
        found = flatField(body, entry, &fields[*count]);
        if (found < 0) {
            return found == -2 ? -1 : 0;
        }
        *count += found;
    }
    return 1;
}

static PyObject *
binaryMessage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    FlatField fields[MOST_FLAT];
    Py_ssize_t count = 0, size, i;
    PyObject *message = NULL;
    long long seqid;
    int overflow, flat, failed, found;
    char *out;

    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "binaryMessage(head: bytes, seqid, body, spec: tuple)");
        return NULL;
    }
    seqid = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (seqid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || seqid < INT32_MIN || seqid > INT32_MAX) {
        Py_RETURN_NONE;
    }
    size = PyBytes_GET_SIZE(args[0]) + 4 + 1;
    found = flatFields(args[2], args[3], fields, &count);
    flat = found > 0;
    failed = found < 0;
    for (i = 0; i < count && flat; i++) {
        const FlatField *field = &fields[i];
        size += 3 + (field->type == TYPE_STRING ? 4 + field->size
                     : field->type == TYPE_BOOL || field->type == TYPE_BYTE ? 1
                     : field->type == TYPE_I16 ? 2 : field->type == TYPE_I32 ? 4 : 8);
    }
    if (flat) {
        message = PyBytes_FromStringAndSize(NULL, size);
    }
    if (message != NULL) {
        out = PyBytes_AS_STRING(message);
        memcpy(out, PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]));
        out = bigEndian(out + PyBytes_GET_SIZE(args[0]), (unsigned long long)seqid, 4);
        for (i = 0; i < count; i++) {
            FlatField *field = &fields[i];
            *out++ = (char)field->type;
            out = bigEndian(out, (unsigned long long)field->fid, 2);
            switch (field->type) {
            case TYPE_STRING:
                out = bigEndian(out, (unsigned long long)field->size, 4);
                memcpy(out, field->data, field->size);
                out += field->size;
                break;
            case TYPE_DOUBLE: {
                double number = PyFloat_AS_DOUBLE(field->value);
                uint64_t bits;
                memcpy(&bits, &number, 8);
                out = bigEndian(out, bits, 8);
                break;
            }
            default:
                out = bigEndian(out, (unsigned long long)field->number,
                                field->type == TYPE_BOOL || field->type == TYPE_BYTE ? 1
                                : field->type == TYPE_I16 ? 2 : field->type == TYPE_I32 ? 4 : 8);
            }
        }
        *out = 0; /* the struct's stop */
    }
    for (i = 0; i < count; i++) {
        Py_DECREF(fields[i].value);
    }
    if (failed || (message == NULL && flat)) {
        return NULL; /* no memory, or reading a field raised */
    }
    return message != NULL ? message : Py_NewRef(Py_None);
}

PyDoc_STRVAR(compactMessage_doc,
"compactMessage(mtype, seqid, named, body, spec) -> bytes or None\n\n"
"binaryMessage for the compact protocol: the protocol id, version and type\n"
"mtype, the seqid's 32-bit pattern as a varint, named (the name's varint\n"
"length and bytes), then body's flat fields as Apache's compact coder writes\n"
"them; None for any other body.");

/* Write value as a varint (7 bits a byte, low first) at out; return what follows. */
static char *
varintAt(char *out, uint64_t value)
{
    while (value > 0x7F) {
        *out++ = (char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *out++ = (char)value;
    return out;
}

/* The compact protocol's type of each binary protocol type written here. */
static int
compactType(const FlatField *field)
{
    switch (field->type) {
    case TYPE_BOOL: return field->number ? 1 : 2;
    case TYPE_BYTE: return 3;
    case TYPE_I16: return 4;
    case TYPE_I32: return 5;
    case TYPE_I64: return 6;
    case TYPE_DOUBLE: return 7;
    default: return 8; /* TYPE_STRING */
    }
}

static PyObject *
compactMessage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    FlatField fields[MOST_FLAT];
    Py_ssize_t count = 0, size, i;
    PyObject *message = NULL;
    long long seqid, mtype;
    int overflow, flat, last = 0, failed, found;
    char *start, *out;

    if (nargs != 5 || !PyBytes_Check(args[2]) || !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "compactMessage(mtype, seqid, named: bytes, body, spec: tuple)");
        return NULL;
    }
    mtype = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (mtype == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || mtype < 0 || mtype > 7) {
        Py_RETURN_NONE;
    }
    seqid = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (seqid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || seqid < INT32_MIN || seqid > INT32_MAX) {
        Py_RETURN_NONE;
    }
    /* At most: 2 bytes, a 5-byte seqid, the name, a stop byte; each field's
     * header 4 bytes and its value 10 (a varint), 8, or 5 and its bytes. */
    size = 2 + 5 + PyBytes_GET_SIZE(args[2]) + 1;
    found = flatFields(args[3], args[4], fields, &count);
    flat = found > 0;
    failed = found < 0;
    for (i = 0; i < count && flat; i++) {
        size += 4 + (fields[i].type == TYPE_STRING ? 5 + fields[i].size : 10);
    }
    if (flat) {
        message = PyBytes_FromStringAndSize(NULL, size);
    }
    if (message != NULL) {
        start = out = PyBytes_AS_STRING(message);
        *out++ = (char)0x82;
        *out++ = (char)((mtype << 5) | 1);
        out = varintAt(out, (uint32_t)seqid);
        memcpy(out, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]));
        out += PyBytes_GET_SIZE(args[2]);
        for (i = 0; i < count; i++) {
            FlatField *field = &fields[i];
            int type = compactType(field), step = field->fid - last;
            /* A field's id as a step from the last one's, in the type byte's
             * high 4 bits, when 1 to 15; else whole, a zigzag varint after. */
            if (step > 0 && step <= 15) {
                *out++ = (char)((step << 4) | type);
            } else {
                *out++ = (char)type;
                out = varintAt(out, ((uint32_t)field->fid << 1)
                                    ^ (field->fid < 0 ? UINT32_MAX : 0)); /* zigzag */
            }
            last = field->fid;
            switch (field->type) {
            case TYPE_BOOL:
                break; /* in the type */
            case TYPE_BYTE:
                *out++ = (char)field->number;
                break;
            case TYPE_STRING:
                out = varintAt(out, (uint64_t)field->size);
                memcpy(out, field->data, field->size);
                out += field->size;
                break;
            case TYPE_DOUBLE: {
                /* Little-endian, as Apache's compact protocol writes it. */
                double number = PyFloat_AS_DOUBLE(field->value);
                uint64_t bits;
                memcpy(&bits, &number, 8);
                for (int b = 0; b < 8; b++) {
                    *out++ = (char)(bits & 0xFF);
                    bits >>= 8;
                }
                break;
            }
            default: {
                /* zigzag: 0, -1, 1, -2... as 0, 1, 2, 3... */
                uint64_t n = (uint64_t)field->number;
                out = varintAt(out, (n << 1) ^ (field->number < 0 ? UINT64_MAX : 0));
            }
            }
        }
        *out++ = 0; /* the struct's stop */
        if (_PyBytes_Resize(&message, out - start) < 0) {
            message = NULL;
        }
    }
    for (i = 0; i < count; i++) {
        Py_DECREF(fields[i].value);
    }
    if (failed || (message == NULL && flat)) {
        return NULL;
    }
    return message != NULL ? message : Py_NewRef(Py_None);
}

static PyMethodDef methods[] = {
    {"skipFlat", (PyCFunction)(void (*)(void))skipFlat, METH_FASTCALL, skipFlat_doc},
    {"messageEnd", (PyCFunction)(void (*)(void))messageEndFunction, METH_FASTCALL,
     messageEnd_doc},
    {"cutMessages", (PyCFunction)(void (*)(void))cutMessages, METH_FASTCALL, cutMessages_doc},
    {"accessLines", (PyCFunction)(void (*)(void))accessLines, METH_FASTCALL, accessLines_doc},
    {"skipFlatPieces", (PyCFunction)(void (*)(void))skipFlatPieces, METH_FASTCALL,
     skipFlatPieces_doc},
    {"cutReplies", (PyCFunction)(void (*)(void))cutReplies, METH_FASTCALL, cutReplies_doc},
    {"cutFrames", (PyCFunction)(void (*)(void))cutFrames, METH_FASTCALL, cutFrames_doc},
    {"binaryStart", (PyCFunction)(void (*)(void))binaryStart, METH_FASTCALL, binaryStart_doc},
    {"joinFrames", (PyCFunction)(void (*)(void))joinFrames, METH_FASTCALL, joinFrames_doc},
    {"binaryMessage", (PyCFunction)(void (*)(void))binaryMessage, METH_FASTCALL,
     binaryMessage_doc},
    {"compactMessage", (PyCFunction)(void (*)(void))compactMessage, METH_FASTCALL,
     compactMessage_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "txthrift._speedups",
    "The walks of txthrift's unframed message scanners, and the counting of calls, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    fillKinds();
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    PyObject *tally = PyType_FromSpec(&tallySpec);
    if (tally == NULL || PyModule_AddObject(created, "Tally", tally) < 0) {
        Py_XDECREF(tally);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
