"""A vectorisable exp(x) for x <= 0, and tanh, expm1 and log1p in float32, for the
CPU kernels.

``math.exp`` compiles to a call into the C library, one element at a time,
which no loop around it can vectorise: the softmax's and the log-sum-exp's
exponentials were a third of a population evaluation of the digits network
(measured 102 of 281 us per member). This version is plain arithmetic, so
the compiler vectorises the loops that call it (0.25 ns per float32 element
against 3.4 ns for the library call).

Method (Cody & Waite range reduction, as in Cephes' expf): n = round(x / ln 2),
r = x - n ln 2 with ln 2 split in two so that n * LN2_HI is exact, then
e^x = 2^n e^r with |r| <= ln 2 / 2, e^r from its Taylor polynomial and 2^n
written straight into the exponent bits. Degree 6 (float32) and 13 (float64)
put the truncation error below half an ulp; measured over x in [-87, 0]:
at most 2.3e-7 relative in float32 (2 ulp), 2.2e-16 in float64. Results that
would be subnormal are flushed to 0 (x < -87 in float32, x < -708 in float64):
next to the softmax's largest term, 1, they change nothing.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastnet.activations import exp_nonpositive, expm1, log1p_nonnegative, tanh

FASTMATH = {"contract", "nsz", "arcp"}
LOG2E = 1.4426950408889634

# float32: Cephes' split of ln 2 and the flush threshold just above exp's
# smallest normal result (2^-126 = e^-87.34)
LN2_HI_32 = np.float32(0.693359375)
LN2_LO_32 = np.float32(-2.12194440e-4)
FLUSH_32 = np.float32(-87.0)
INVERSE_FACTORIALS_32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(7))

# float64: fdlibm's split (n * LN2_HI_64 exact for |n| < 2^20); 2^-1022 = e^-708.4
LN2_HI_64 = 6.93147180369123816490e-01
LN2_LO_64 = 1.90821492927058770002e-10
FLUSH_64 = -708.0
INVERSE_FACTORIALS_64 = tuple(1.0 / math.factorial(k) for k in range(14))


@njit(inline="always")
def taylor(r, coefficients):
    """sum_k coefficients[k] r^k by Horner's rule (the compiler unrolls it)."""
    total = coefficients[-1]
    for k in range(len(coefficients) - 2, -1, -1):
        total = total * r + coefficients[k]
    return total


def _exp_float32(x):
    if x < FLUSH_32:
        return np.float32(0.0)
    n = np.int32(np.floor(x * np.float32(LOG2E) + np.float32(0.5)))
    r = (x - np.float32(n) * LN2_HI_32) - np.float32(n) * LN2_LO_32
    return taylor(r, INVERSE_FACTORIALS_32) * np.int32((n + 127) << 23).view(np.float32)


def _exp_float64(x):
    x = np.float64(x)
    if x < FLUSH_64:
        return 0.0
    n = np.int32(np.floor(x * LOG2E + 0.5))
    r = (x - n * LN2_HI_64) - n * LN2_LO_64
    return taylor(r, INVERSE_FACTORIALS_64) * np.int64((np.int64(n) + 1023) << 52).view(np.float64)


def vectorisable_exp(x):
    """exp(x) for x <= 0 (see the module's docstring); NaN gives NaN."""
    return exp_nonpositive(x)


def by_dtype(stub, float32_version, float64_version):
    """Compile calls to ``stub`` as ``float32_version`` or ``float64_version``
    after the argument's type.

    Not inlined by Numba: inlined code would take the caller's flags, and
    'reassoc' lets the compiler regroup (x - n LN2_HI) - n LN2_LO, which undoes
    the exact reduction (measured 2.4e-14 instead of 2.2e-16 in float64). LLVM
    still inlines the compiled function, keeping these flags.
    """
    @overload(stub, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
    def _by_dtype(x):
        return float32_version if x == types.float32 else float64_version


by_dtype(vectorisable_exp, _exp_float32, _exp_float64)


#: below this |x|, tanh(x) rounds to x in float32: x - tanh(x) ~ x^3 / 3, under
#: a third of an ulp of x
TANH_SMALL = 2.0 ** -12


def _tanh_float32(x):
    magnitude = abs(np.float64(x))
    e = vectorisable_exp(-2.0 * magnitude)
    t = (1.0 - e) / (1.0 + e) if magnitude >= TANH_SMALL else magnitude
    return np.float32(-t if x < 0 else t)


def vectorisable_tanh(x):
    """tanh(x); NaN gives NaN.

    float32: (1 - e) / (1 + e) with e = e^(-2|x|) from the exp above, in
    float64, where the cancellation in 1 - e costs at most 2.2e-16 / (2|x|)
    relative: nothing once rounded to float32 (measured: every float32 result
    equal to np.tanh's in float64, rounded). The C library's tanhf, one call
    per element, took 18 ns an element, this 1.4 ns. float64 keeps the C
    library's (the shared ``tanh``).
    """
    return tanh(x)


by_dtype(vectorisable_tanh, _tanh_float32, tanh)


#: expm1(x) / x = sum_k x^k / (k + 1)!, to degree 5: truncation ~ x^6 / 5040
EXPM1_OVER_X_64 = tuple(1.0 / math.factorial(k + 1) for k in range(6))
#: below this |x|, float32 expm1 comes from that series (cancellation in
#: e^x - 1 would cost 2.2e-16 / |x| relative), above from e^x - 1
EXPM1_SERIES = 2.0 ** -9


def _expm1_float32(x):
    wide = np.float64(x)
    series = wide * taylor(wide, EXPM1_OVER_X_64)
    return np.float32(vectorisable_exp(wide) - 1.0 if abs(wide) >= EXPM1_SERIES else series)


def vectorisable_expm1(x):
    """e^x - 1 for x <= 0 (ELU's negative side); float32 computed in float64
    as tanh above (measured: equal to np.expm1 rounded to float32 on every
    value tested), float64 keeps math.expm1."""
    return expm1(x)


by_dtype(vectorisable_expm1, _expm1_float32, expm1)


LN2_64 = math.log(2.0)
SQRT2_64 = math.sqrt(2.0)
#: log(m) = 2 atanh(s) = sum_k 2 s^(2k+1) / (2k+1), s = (m - 1) / (m + 1): for
#: m in [sqrt(1/2), sqrt(2)], s^2 <= 0.03, and 8 terms leave ~1e-14 relative
ATANH_SERIES_64 = tuple(2.0 / (2 * k + 1) for k in range(8))
MANTISSA_BITS_64 = np.int64(0x000FFFFFFFFFFFFF)
EXPONENT_OF_ONE_64 = np.int64(1023 << 52)


def _log1p_float32(x):
    wide = np.float64(x)
    u = 1.0 + wide
    # u = 2^k m, m in [sqrt(1/2), sqrt(2)), read off u's bits
    bits = np.float64(u).view(np.int64)
    k = np.float64((bits >> 52) - 1023)
    m = np.int64((bits & MANTISSA_BITS_64) | EXPONENT_OF_ONE_64).view(np.float64)
    high = m > SQRT2_64
    m = m * 0.5 if high else m
    k = k + 1.0 if high else k
    s = (m - 1.0) / (m + 1.0)
    log_u = k * LN2_64 + s * taylor(s * s, ATANH_SERIES_64)
    # log1p(x) = log(u) - (u - 1 - x) / u: the rounding of 1 + x taken back
    result = log_u - ((u - 1.0) - wide) / u
    return np.float32(result if u < np.inf else u)


def vectorisable_log1p(x):
    """log(1 + x) for x >= 0; float32 in float64 arithmetic (measured: equal to
    np.log1p rounded to float32 on every value tested; 0.9 ns an element
    against 6 ns for log1pf), float64 keeps math.log1p."""
    return log1p_nonnegative(x)


by_dtype(vectorisable_log1p, _log1p_float32, log1p_nonnegative)
