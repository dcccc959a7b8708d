/*
 * txthrift._speedups: the loops of txthrift's unframed message scanners that
 * Python makes slow.
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
 *
 * This module is optional: txthrift/_scanning.py does all of it in Python
 * when it was not compiled; the kinds below are its _I32_STRING, _VARINT,
 * _VARINT_STRING, _NESTS_STRUCT, _NESTS_LIST, _NESTS_MAP and _UNKNOWN, and
 * the tables its _BinaryScanner._KINDS and _CompactScanner._KINDS.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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

static PyObject *
skipFlat(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, remaining, evenKind, oddKind, maxString, size;
    const unsigned char *data;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "skipFlat takes exactly 6 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    remaining = PyLong_AsSsize_t(args[2]);
    evenKind = PyLong_AsSsize_t(args[3]);
    oddKind = PyLong_AsSsize_t(args[4]);
    maxString = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) {
        return NULL;
    }
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

static PyMethodDef methods[] = {
    {"skipFlat", (PyCFunction)(void (*)(void))skipFlat, METH_FASTCALL, skipFlat_doc},
    {"messageEnd", (PyCFunction)(void (*)(void))messageEndFunction, METH_FASTCALL,
     messageEnd_doc},
    {"cutMessages", (PyCFunction)(void (*)(void))cutMessages, METH_FASTCALL, cutMessages_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "txthrift._speedups",
    "The walks of txthrift's unframed message scanners, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    fillKinds();
    return PyModule_Create(&module);
}
