"""Matrix products for the CPU kernels, straight to BLAS.

Numba's ``np.dot(A, B, out)`` checks shapes and layouts on every call and,
inside a kernel compiled without reference counting, refuses to type at all.
The kernels know their shapes, so they call BLAS's gemm themselves, through
the entry point Numba's own ``np.dot`` uses (``numba_xxgemm``, which finds
SciPy's BLAS once and caches it).

All arrays are C-contiguous (row-major) matrices. BLAS is column-major: a
row-major (r x c) matrix is the column-major (c x r) matrix of its transpose,
so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with the operands
swapped.

Every product goes to BLAS, however small: OpenBLAS's small-matrix paths
beat explicit loops compiled by Numba even at 4 x 2 @ 2 x 8 (measured 48 ns
against 73 ns; 32 x 32 @ 32 x 10: 355 ns against 1,509 ns).
"""
import ctypes
import functools

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
# numba_xxgemm finds BLAS in SciPy when first called, and a kernel could not
# report its absence: fail here instead.
import scipy.linalg.cython_blas

NO_TRANSPOSE = ord("n")
TRANSPOSE = ord("t")

_char = ir.IntType(8)
_void_p = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major C = alpha op(a) op(b) + beta C for float32 or float64."""
    if not all(isinstance(x, types.Array) for x in (a, b, c)) or a.dtype not in (
            types.float32, types.float64) or not a.dtype == b.dtype == c.dtype:
        return None
    dtype = a.dtype
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [_char, _char, _char, intp, intp, intp,
                                                _void_p, _void_p, intp, _void_p, intp,
                                                _void_p, _void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def integer(i):
            return context.cast(builder, args[i], signature.args[i], types.intp)

        def data(i):
            array = context.make_array(signature.args[i])(context, builder, args[i])
            return builder.bitcast(array.data, _void_p)

        def trans(i):
            return builder.trunc(integer(i), _char)

        def scalar(i):  # BLAS takes alpha and beta by address
            value = context.cast(builder, args[i], signature.args[i], dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, value), _void_p)

        kind = ir.Constant(_char, ord("s" if dtype == types.float32 else "d"))
        builder.call(fn, (kind, trans(0), trans(1), integer(2), integer(3), integer(4),
                          scalar(5), data(6), integer(7), data(8), integer(9), scalar(10),
                          data(11), integer(12)))
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def gemm_nn(A, B, out):
    """out = A @ B."""
    m, k = A.shape
    n = B.shape[1]
    _xxgemm(NO_TRANSPOSE, NO_TRANSPOSE, n, m, k, 1.0, B, n, A, k, 0.0, out, n)


@njit(inline="always")
def gemm_tn(A, B, out):
    """out = A.T @ B."""
    gemm_tn_add(A, B, out, 1.0, 0.0)


@njit(inline="always")
def gemm_tn_add(A, B, out, alpha, beta):
    """out = alpha A.T @ B + beta out."""
    k, m = A.shape
    n = B.shape[1]
    _xxgemm(NO_TRANSPOSE, TRANSPOSE, n, m, k, alpha, B, n, A, m, beta, out, n)


@njit(inline="always")
def gemm_nt(A, B, out):
    """out = A @ B.T."""
    m, k = A.shape
    n = B.shape[0]
    _xxgemm(TRANSPOSE, NO_TRANSPOSE, n, m, k, 1.0, B, k, A, k, 0.0, out, n)


# ------------------------------------------------------------ thread count
#: the names OpenBLAS builds give their thread-count functions: plain, and
#: SciPy's and NumPy's wheels' prefixed ones (the 64-bit-integer build adds a suffix)
_OPENBLAS_PREFIXES = ("openblas", "scipy_openblas")
_OPENBLAS_SUFFIXES = ("", "64_")


@functools.cache
def thread_count_functions():
    """Addresses (get, set) of OpenBLAS' ``get_num_threads`` and
    ``set_num_threads`` in the BLAS the kernels' products run on, or None
    where that BLAS is not OpenBLAS.

    NumPy's and SciPy's wheels each bring an OpenBLAS, with clashing names.
    The symbols are looked up from SciPy's ``cython_blas`` module, whose
    products ``numba_xxgemm`` calls: dlsym on a library's handle searches it
    and the libraries it was linked against, so the lookup finds that BLAS.
    """
    module = ctypes.CDLL(scipy.linalg.cython_blas.__file__)
    for prefix in _OPENBLAS_PREFIXES:
        for suffix in _OPENBLAS_SUFFIXES:
            try:
                get = getattr(module, f"{prefix}_get_num_threads{suffix}")
                set_ = getattr(module, f"{prefix}_set_num_threads{suffix}")
            except AttributeError:
                continue
            return (ctypes.cast(get, ctypes.c_void_p).value,
                    ctypes.cast(set_, ctypes.c_void_p).value)
    return None


_int32 = ir.IntType(32)


@intrinsic
def get_thread_count(typingctx, address):
    """BLAS' thread count, from the ``get_num_threads`` at ``address``."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        function = builder.inttoptr(args[0], ir.FunctionType(_int32, []).as_pointer())
        return builder.sext(builder.call(function, []), context.get_value_type(types.int64))

    return types.int64(address), codegen


@intrinsic
def set_thread_count(typingctx, address, count):
    """Sets BLAS' thread count through the ``set_num_threads`` at ``address``."""
    if not (isinstance(address, types.Integer) and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        function = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [_int32])
                                    .as_pointer())
        builder.call(function, [builder.trunc(args[1], _int32)])
        return context.get_dummy_value()

    return types.void(address, count), codegen
