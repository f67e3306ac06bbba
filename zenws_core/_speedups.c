/*
 * zenws_core._speedups: optional C accelerator for the WebSocket masking XOR.
 *
 * RFC 6455 section 5.3: every byte of a client-to-server payload is XORed with the
 * 4-byte masking key, repeated.  In pure Python this is the dominant cost of large
 * messages; here it runs 8 bytes at a time.  zenws_core._mask falls back to pure
 * Python when this module is not built, with identical results.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, key, /) -> bytes\n"
"\n"
"XOR data (any bytes-like object) with the 4-byte key repeated\n"
"(RFC 6455 section 5.3).  Masking and unmasking are the same operation.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result = NULL;

    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be exactly 4 bytes");
        goto done;
    }

    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    {
        const unsigned char *src = (const unsigned char *)data.buf;
        const unsigned char *k = (const unsigned char *)key.buf;
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        Py_ssize_t n = data.len;
        Py_ssize_t i = 0;
        unsigned char k8[8];
        uint64_t mask8, word;

        /* The key repeated twice, read as a native word: byte j of the word XORs
           byte j of each 8-byte block, which starts at a multiple of 4. */
        memcpy(k8, k, 4);
        memcpy(k8 + 4, k, 4);
        memcpy(&mask8, k8, 8);
        /* memcpy keeps unaligned loads and stores legal on every platform; compilers
           turn it into a single move where the CPU allows one. */
        for (; i + 8 <= n; i += 8) {
            memcpy(&word, src + i, 8);
            word ^= mask8;
            memcpy(dst + i, &word, 8);
        }
        for (; i < n; i++) {
            dst[i] = src[i] ^ k[i & 3];
        }
    }

done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "zenws_core._speedups",
    "Optional C helpers for zenws_core (masking, RFC 6455 section 5.3).",
    0,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
