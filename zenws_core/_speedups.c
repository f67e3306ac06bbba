/*
 * zenws_core._speedups: optional C accelerator for the WebSocket masking XOR.
 *
 * RFC 6455 section 5.3: every byte of a client-to-server payload is XORed with the
 * 4-byte masking key, repeated.  In pure Python this is the dominant cost of large
 * messages; here it runs 8 bytes at a time.  mask_frame builds a whole masked client
 * frame (header + masked payload) in one allocation.  zenws_core._mask falls back to
 * pure Python when this module is not built, with identical results.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* dst[i] = src[i] ^ k[i & 3] for i < n, 8 bytes at a time. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *k)
{
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

/* head (may be NULL) followed by data XORed with key, in one new bytes object. */
static PyObject *
masked_bytes(PyObject *head_obj, PyObject *data_obj, PyObject *key_obj)
{
    Py_buffer head = {0}, data, key;
    PyObject *result = NULL;

    if (head_obj != NULL && PyObject_GetBuffer(head_obj, &head, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_SIMPLE) < 0) {
        goto release_head;
    }
    if (PyObject_GetBuffer(key_obj, &key, PyBUF_SIMPLE) < 0) {
        goto release_data;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be exactly 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, head.len + data.len);
    if (result == NULL) {
        goto done;
    }
    {
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        if (head.len) {
            memcpy(dst, head.buf, head.len);
        }
        xor_mask(dst + head.len, (const unsigned char *)data.buf, data.len,
                 (const unsigned char *)key.buf);
    }

done:
    PyBuffer_Release(&key);
release_data:
    PyBuffer_Release(&data);
release_head:
    if (head_obj != NULL) {
        PyBuffer_Release(&head);
    }
    return result;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, key, /) -> bytes\n"
"\n"
"XOR data (any bytes-like object) with the 4-byte key repeated\n"
"(RFC 6455 section 5.3).  Masking and unmasking are the same operation.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return masked_bytes(NULL, args[0], args[1]);
}

PyDoc_STRVAR(mask_frame_doc,
"mask_frame(head, data, key, /) -> bytes\n"
"\n"
"head followed by data XORed with the 4-byte key repeated, in one new bytes\n"
"object: a whole masked client frame (RFC 6455 sections 5.2, 5.3) built with\n"
"one allocation and one pass instead of a masked copy and a join.");

static PyObject *
mask_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "mask_frame() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    return masked_bytes(args[0], args[1], args[2]);
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"mask_frame", (PyCFunction)(void (*)(void))mask_frame, METH_FASTCALL, mask_frame_doc},
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
