/*
 * txthrift._speedups: the one loop of txthrift that Python makes slow.
 *
 * An unframed ("buffered") Thrift message has no length prefix, so its end is
 * found by walking its encoding.  Most of it is walked a value at a time in
 * Python (txthrift/_scanning.py), which is fine for structs; a container of a
 * million strings is not fine.  skipFlat walks the elements of one container
 * whose elements are all "flat" (fixed width, varints or strings), and stops
 * at the first element that is not whole in the buffer, or that is not a
 * valid one: the Python scanner then looks at that element itself, to wait
 * for more bytes or to say what is wrong with it.
 *
 * This module is optional: txthrift/_scanning.py has the same loop in Python
 * (_skipFlatInPython) for when it was not compiled; the kinds below are its
 * _I32_STRING, _VARINT and _VARINT_STRING.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Element kinds other than a fixed width (a width is >= 0). */
#define BINARY_STRING (-1)  /* i32 big-endian length, then the bytes */
#define VARINT (-2)         /* 1 to 10 bytes, the last without its top bit */
#define COMPACT_STRING (-3) /* a varint length, then the bytes */

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

static PyMethodDef methods[] = {
    {"skipFlat", (PyCFunction)(void (*)(void))skipFlat, METH_FASTCALL, skipFlat_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "txthrift._speedups",
    "The element walk of txthrift's unframed message scanners, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
