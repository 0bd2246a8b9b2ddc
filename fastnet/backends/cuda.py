"""Numba CUDA kernels. Compiled code only: no Python objects, no validation.

The only module of fastnet that imports ``numba.cuda``; ``fastnet.cuda_engine``
imports it on demand, so ``import fastnet`` never does. Kernels are compiled
lazily on first launch (no eager signatures: they would fail at import on a
machine without a GPU) and cached on disk.

Layout contract (shared with the CPU backend): layer l of a flat parameter
vector is W_l (n_in x n_out) followed by b_l, i.e. one C-order
(n_in + 1) x n_out matrix ``[W; b]``. The products below use that: the
forward pass is ``[A, 1] @ [W; b]`` and the weight gradient
``[A, 1].T @ D`` fills dW and db in one launch.

float32 kernels stay float32: constants are float32 scalars (``constant``),
comparisons are against ``ZERO``, never against a Python number.

Dropout uses ``dropout.dropout_keeps``, the counter-based hash the CPU uses,
rather than ``numba.cuda.random``'s xoroshiro128p: a unit's fate depends only
on (seed, step, layer, index), so the GPU draws the very masks the CPU draws
(a dropout fit follows the CPU trajectory) without keeping one generator
state per thread, and a run resumes bit for bit from a checkpoint.
"""
import math
import types

import numpy as np
from numba import config, cuda, int32

from fastnet.activations import IDENTITY, SOFTMAX
from fastnet.backends._maths import compile_for
from fastnet.updates import H_CLIP_NORM

#: the simulator runs one Python thread per CUDA thread: it gets small blocks
SIMULATOR = bool(config.ENABLE_CUDASIM)
device = cuda.jit(device=True, inline="always")


def constant(value):
    """A float32 constant, or a Python float under the simulator.

    The simulator runs kernels as Python under NumPy's promotion rules, where
    a float32 scalar plus a Python float (what ``math.exp`` returns) gives
    float32, so a float64 kernel would lose precision that compiled code
    keeps. A Python float lets the other operand decide, as compiled code does.
    """
    return float(value) if SIMULATOR else np.float32(value)


def simulated_device(function):
    """``device`` for the simulator, with the float32 constants of ``function``'s
    module replaced as ``constant`` replaces them."""
    namespace = {name: float(value) if isinstance(value, np.float32) else value
                 for name, value in function.__globals__.items()}
    return device(types.FunctionType(function.__code__, namespace, function.__name__,
                                     function.__defaults__, function.__closure__))


_maths = compile_for(simulated_device if SIMULATOR else device)
activate = _maths.activate
derivative = _maths.derivative
output_activate = _maths.output_activate
row_loss = _maths.row_loss
row_delta = _maths.row_delta
dropout_keeps = _maths.dropout_keeps
row_correct = _maths.row_correct
update_rules = _maths.update_rules
updated = _maths.updated

#: products: a block of THREADS x THREADS threads computes a TILE x TILE block
#: of the output, each thread WORK x WORK of it, DEPTH terms per shared stage
THREADS, WORK, DEPTH = (2, 2, 3) if SIMULATOR else (16, 4, 16)
TILE = THREADS * WORK
PADDED_DEPTH, PADDED_TILE = DEPTH + 1, TILE + 1  # +1: no bank conflicts on transposed loads
#: threads per block of the row, reduction and population kernels (a power of two)
LINE = 4 if SIMULATOR else 128
#: population: rows per block, and rows per thread in a layer (``dense_rows``)
POPULATION_ROWS, STRIPE = (5, 2) if SIMULATOR else (64, 4)
#: blocks of the grid-strided kernels
GRID_BLOCKS, REDUCE_BLOCKS = (4, 2) if SIMULATOR else (4096, 256)
ZERO, ONE, HALF = constant(0.0), constant(1.0), constant(0.5)
NORM_EPS = constant(1e-6)  # torch.nn.utils.clip_grad_norm_'s epsilon


# --------------------------------------------------------------- products
@device
def stored(M, r, c, n_rows, n_cols, ones):
    """M[r, c], zero outside M; with ``ones``, M has an implicit column of ones at n_cols."""
    if r >= n_rows:
        return ZERO
    if c < n_cols:
        return M[r, c]
    if ones and c == n_cols:
        return ONE
    return ZERO


@device
def load_tile(M, trans, n_rows, n_cols, ones, r0, c0, tile_rows, tile_cols, S):
    """S[i, j] = op(M)[r0 + i, c0 + j] with op(M) = M.T if trans else M.

    Neighbouring threads read along M's contiguous axis, so the global reads
    coalesce whichever way the tile is transposed.
    """
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    if trans:
        for j in range(ty, tile_cols, THREADS):
            for i in range(tx, tile_rows, THREADS):
                S[i, j] = stored(M, c0 + j, r0 + i, n_rows, n_cols, ones)
    else:
        for i in range(ty, tile_rows, THREADS):
            for j in range(tx, tile_cols, THREADS):
                S[i, j] = stored(M, r0 + i, c0 + j, n_rows, n_cols, ones)


@device
def tile_product(A, trans_a, a_rows, a_cols, a_ones, B, trans_b, b_rows, b_cols, depth, acc):
    """acc[i, j] = sum over p < depth of op(A)[row(i), p] * op(B)[p, col(j)].

    (a_rows, a_cols), (b_rows, b_cols): the stored shapes of A and B (see
    ``stored``); this thread's outputs are ``output_cell(i, j)``. Terms are
    added in order of p, as the CPU's loops add them.
    """
    As = cuda.shared.array((TILE, PADDED_DEPTH), A.dtype)
    Bs = cuda.shared.array((DEPTH, PADDED_TILE), A.dtype)
    b = cuda.local.array(WORK, A.dtype)
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    row0, col0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
    for i in range(WORK):
        for j in range(WORK):
            acc[i, j] = ZERO
    for p0 in range(0, depth, DEPTH):
        load_tile(A, trans_a, a_rows, a_cols, a_ones, row0, p0, TILE, DEPTH, As)
        load_tile(B, trans_b, b_rows, b_cols, False, p0, col0, DEPTH, TILE, Bs)
        cuda.syncthreads()
        for p in range(DEPTH):
            for j in range(WORK):
                b[j] = Bs[p, tx + THREADS * j]
            for i in range(WORK):
                a = As[ty + THREADS * i, p]
                for j in range(WORK):
                    acc[i, j] += a * b[j]
        cuda.syncthreads()


@device
def output_cell(i, j):
    """(row, column) of this thread's output (i, j): strided, so stores coalesce."""
    return (cuda.blockIdx.y * TILE + cuda.threadIdx.y + THREADS * i,
            cuda.blockIdx.x * TILE + cuda.threadIdx.x + THREADS * j)


@cuda.jit(cache=True)
def forward_layer(A_in, WB, Z, A_out, rows, kind, rate, scale, seed, step, layer):
    """Z = [A_in, 1] @ [W; b] and A_out = f(Z) for the first ``rows`` rows.

    With rate > 0 (a hidden layer in training), inverted dropout: a unit is
    zeroed with probability ``rate`` and the survivors scaled by ``scale``.
    A softmax output is finished by ``loss_rows`` / ``softmax_rows``.
    """
    n_in, n_out = A_in.shape[1], Z.shape[1]
    acc = cuda.local.array((WORK, WORK), A_in.dtype)
    tile_product(A_in, False, rows, n_in, True, WB, False, n_in + 1, n_out, n_in + 1, acc)
    for i in range(WORK):
        for j in range(WORK):
            r, c = output_cell(i, j)
            if r < rows and c < n_out:
                z = acc[i, j]
                a = activate(z, kind)
                if rate > ZERO:
                    a = a * scale if dropout_keeps(seed, step, layer, r * n_out + c, rate) else ZERO
                Z[r, c] = z
                A_out[r, c] = a


@cuda.jit(cache=True)
def weight_grad(A_in, D, G, rows, accumulate):
    """G = [A_in, 1].T @ D over the first ``rows`` rows (+ G when accumulating).

    G is layer l's (n_in + 1) x n_out block of the gradient: dW, then db.
    """
    n_in, n_out = A_in.shape[1], D.shape[1]
    acc = cuda.local.array((WORK, WORK), A_in.dtype)
    tile_product(A_in, True, rows, n_in, True, D, False, rows, n_out, rows, acc)
    for i in range(WORK):
        for j in range(WORK):
            r, c = output_cell(i, j)
            if r <= n_in and c < n_out:
                G[r, c] = G[r, c] + acc[i, j] if accumulate else acc[i, j]


@cuda.jit(cache=True)
def delta_back(D, WB, Z_prev, A_prev, D_prev, rows, kind, rate, scale, seed, step, layer):
    """D_prev = (D @ W.T) * f'(Z_prev) for the first ``rows`` rows.

    With dropout on the previous layer (rate > 0), A_prev holds the dropped
    and scaled activations: a kept unit's own activation is A_prev / scale,
    a dropped unit passes no gradient (as the CPU's ``hidden_delta``).
    """
    n_in, n_out = D_prev.shape[1], D.shape[1]
    acc = cuda.local.array((WORK, WORK), D.dtype)
    tile_product(D, False, rows, n_out, False, WB, True, n_in, n_out, n_out, acc)
    for i in range(WORK):
        for j in range(WORK):
            r, c = output_cell(i, j)
            if r < rows and c < n_in:
                g = acc[i, j]
                if rate > ZERO:
                    if dropout_keeps(seed, step, layer, r * n_in + c, rate):
                        g *= scale * derivative(Z_prev[r, c], A_prev[r, c] / scale, kind)
                    else:
                        g = ZERO
                else:
                    g *= derivative(Z_prev[r, c], A_prev[r, c], kind)
                D_prev[r, c] = g


# ------------------------------------------------------------------- rows
@device
def block_total(values):
    """Sum of ``values`` (one shared slot per thread of the block), by halving."""
    t = cuda.threadIdx.x
    half = LINE // 2
    while half > 0:
        cuda.syncthreads()
        if t < half:
            values[t] += values[t + half]
        half //= 2
    cuda.syncthreads()
    return values[0]


@cuda.jit(cache=True)
def loss_rows(Z, A, Y, rows, loss, kind, with_delta, scale, D, sums, corrects, slot, diverged):
    """One block over the first ``rows`` output rows: finishes a softmax output,
    sums[slot] = summed loss, corrects[slot] = correct predictions, and with
    ``with_delta`` D = scale * dL/dZ. A non-finite sum sets ``diverged[0]``.
    """
    losses = cuda.shared.array(LINE, Z.dtype)
    hits = cuda.shared.array(LINE, int32)
    t = cuda.threadIdx.x
    total = ZERO
    count = 0
    for i in range(t, rows, LINE):
        if kind == SOFTMAX:
            output_activate(Z[i], A[i], kind)
        total += row_loss(Z[i], A[i], Y[i], loss)
        count += row_correct(A[i], Y[i], loss)
        if with_delta:
            row_delta(Z[i], A[i], Y[i], loss, kind, scale, D[i])
    losses[t] = total
    hits[t] = count
    total = block_total(losses)
    count = block_total(hits)
    if t == 0:
        sums[slot] = total
        corrects[slot] = count
        if not math.isfinite(total):
            diverged[0] = 1


@cuda.jit(cache=True)
def softmax_rows(Z, A, rows):
    """A = softmax(Z) row by row, for the first ``rows`` rows."""
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        output_activate(Z[i], A[i], SOFTMAX)


@cuda.jit(cache=True)
def gather_rows(source, order, target):
    """target[i] = source[order[i]]: the epoch's shuffled copy of the data."""
    width = source.shape[1]
    for k in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        i = k // width
        j = k - i * width
        target[i, j] = source[order[i], j]


# -------------------------------------------------------------- optimiser
@cuda.jit(cache=True)
def block_sums(values, squared, out):
    """out[block] = this block's grid-strided share of sum(values) (of values**2
    when ``squared``). Launched twice (many blocks, then one) it is a
    deterministic two-pass reduction."""
    partial = cuda.shared.array(LINE, values.dtype)
    total = ZERO
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        x = values[i]
        total += x * x if squared else x
    partial[cuda.threadIdx.x] = total
    total = block_total(partial)
    if cuda.threadIdx.x == 0:
        out[cuda.blockIdx.x] = total


@device
def clip_coefficient(squares, clip_norm):
    """min(clip_norm / (||g|| + eps), 1), as torch.nn.utils.clip_grad_norm_; 1 when off."""
    if clip_norm > ZERO:
        coef = clip_norm / (math.sqrt(squares) + NORM_EPS)
        return coef if coef < ONE else ONE
    return ONE


@cuda.jit(cache=True)
def optimizer_update(params, grad, m, v, kind, hyper, lr, step_size, sqrt_bias2, squares,
                     diverged):
    """One fused update of every element; ``squares`` = ||grad||^2 (for clip_norm).

    Does nothing once ``diverged[0]`` is set: the step that saw a non-finite
    loss, and every later one of the epoch, leave the parameters alone.
    """
    if diverged[0] != 0:
        return
    coef = clip_coefficient(squares[0], hyper[H_CLIP_NORM])
    rules = update_rules(hyper, lr, step_size, sqrt_bias2)
    for i in range(cuda.grid(1), params.size, cuda.gridsize(1)):
        params[i], m[i], v[i] = updated(params[i], grad[i] * coef, m[i], v[i], kind, rules)


# ------------------------------------------------------------- population
@device
def dense_rows(theta, offset, source, n_in, n_out, rows, kind, target):
    """target = f(source @ W + b) for ``rows`` rows, row-major with widths n_in, n_out;
    W and b read from ``theta`` at ``offset``. A thread computes one column for
    STRIPE rows at once, so that each weight it loads serves STRIPE products."""
    bias = offset + n_in * n_out
    acc = cuda.local.array(STRIPE, theta.dtype)
    for k in range(cuda.threadIdx.x, (rows + STRIPE - 1) // STRIPE * n_out, LINE):
        first = k // n_out * STRIPE
        j = k % n_out
        for r in range(STRIPE):
            acc[r] = ZERO
        for p in range(n_in):
            w = theta[offset + p * n_out + j]
            for r in range(STRIPE):
                i = min(first + r, rows - 1)  # past the last row: redo it, store nothing
                acc[r] += source[i * n_in + p] * w
        for r in range(STRIPE):
            if first + r < rows:
                target[(first + r) * n_out + j] = activate(acc[r] + theta[bias + j], kind)


@cuda.jit(cache=True)
def population_chunks(thetas, sizes, acts, loss, X, Y, chunk, width, partials):
    """partials[p, c] = summed loss of member p = blockIdx.z on rows chunk c = blockIdx.x.

    X is the data flattened row by row (a reshape inside a kernel would
    compare sizes in float64). A block carries its ``chunk`` rows through
    every layer inside the dynamic shared memory, two (chunk x width) halves
    used in turn, so a whole population is one launch however deep the network.
    """
    buffers = cuda.shared.array(0, thetas.dtype)
    losses = cuda.shared.array(LINE, thetas.dtype)
    p, c, t = cuda.blockIdx.z, cuda.blockIdx.x, cuda.threadIdx.x
    first = c * chunk
    rows = min(chunk, Y.shape[0] - first)
    theta = thetas[p]
    source = X[first * sizes[0]:(first + rows) * sizes[0]]
    half, offset = 0, 0
    n_layers = sizes.size - 1
    for l in range(n_layers):
        n_in, n_out = sizes[l], sizes[l + 1]
        target = buffers[half * chunk * width:half * chunk * width + rows * n_out]
        # the output layer keeps its pre-activations: the loss reads them
        kind = acts[l] if l < n_layers - 1 else IDENTITY
        dense_rows(theta, offset, source, n_in, n_out, rows, kind, target)
        cuda.syncthreads()
        offset += (n_in + 1) * n_out
        if l < n_layers - 1:
            source, half = target, 1 - half
    n_out = sizes[n_layers]
    Z = buffers[half * chunk * width:half * chunk * width + rows * n_out]
    A = buffers[(1 - half) * chunk * width:(1 - half) * chunk * width + rows * n_out]
    total = ZERO
    for i in range(t, rows, LINE):
        z, a = Z[i * n_out:(i + 1) * n_out], A[i * n_out:(i + 1) * n_out]
        output_activate(z, a, acts[n_layers - 1])
        total += row_loss(z, a, Y[first + i], loss)
    losses[t] = total
    total = block_total(losses)
    if t == 0:
        partials[p, c] = total


@cuda.jit(cache=True)
def member_totals(partials, totals):
    """totals[p] = sum of row p of ``partials``, in order."""
    for p in range(cuda.grid(1), partials.shape[0], cuda.gridsize(1)):
        total = ZERO
        for c in range(partials.shape[1]):
            total += partials[p, c]
        totals[p] = total
