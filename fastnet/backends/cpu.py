"""Numba CPU kernels. Compiled code only: no Python objects, no validation.

Layout contract (shared with the CUDA backend): a network with layer sizes
``sizes`` (input first) stores, for each layer l, ``W_l`` (sizes[l] x
sizes[l+1], C order) then ``b_l`` in one flat vector. Per-unit work buffers
(pre-activations Z, activations A, deltas D) are flat too: layer l's block
for ``rows`` samples is a C-contiguous (rows x sizes[l+1]) slice starting at
``rows * sum(sizes[1:l+1])``.
"""
import numpy as np
from numba import get_thread_id, njit, prange

from fastnet.activations import SOFTMAX
from fastnet.losses import CROSS_ENTROPY, MSE
from fastnet.updates import (ADAM, H_BETA1, H_BETA2, H_CLIP_NORM, H_CLIP_VALUE, H_LR,
                             H_MOMENTUM, H_WEIGHT_DECAY, N_HYPER, RMSPROP, SGD)
from fastnet.backends._maths import compile_for
from fastnet.backends.blas import (gemm_nn, gemm_nt, gemm_tn, gemm_tn_add, get_thread_count,
                                   set_thread_count)
from fastnet.backends.fast_exp import (vectorisable_exp, vectorisable_expm1, vectorisable_log1p,
                                       vectorisable_tanh)
from fastnet.backends.views import contiguous_view, stack_vector


#: a switched-off setting in an optimiser rule, as a constant the compiler folds
NO = np.float32(0.0)
#: seed and step where no dropout is drawn: an int64, because a literal 0
#: would be typed Literal[int](0) and compile the kernel it is passed to again
#: (9 s for the forward pass)
NO_STEP = np.int64(0)
#: ``backward_rows``' learning rate when it only computes the gradient
NO_DESCENT = 0.0
#: the update rules' ids as int64 constants: as literals, each would compile
#: ``updated`` again (0.13 s each in a cold start); LLVM inlines it into the
#: loop and drops the other rules' branches either way
SGD_RULE, RMSPROP_RULE, ADAM_RULE = np.int64(SGD), np.int64(RMSPROP), np.int64(ADAM)

# No 'nnan'/'ninf': the NaN and inf checks on losses must survive.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# NumPy's error model: Python's tests every float division for a zero divisor
# (to raise ZeroDivisionError), and that branch stops a loop from vectorising
# (Adam's update of 26,122 floats: 61.5 us against 7.7 us, the same values).
# The arguments are checked in Python before any kernel runs; a zero divisor
# gives inf or NaN, as in NumPy.
OPTIONS = {"fastmath": FASTMATH, "error_model": "numpy"}
# Kernels run without Numba's reference counting (NRT) unless they allocate:
# each view of a buffer (a layer's W, its block of Z) otherwise costs an
# atomic increment and decrement of the buffer's count, a fifth of a 2-8-1
# training step (measured with perf). Arrays come from, and stay owned by,
# the Python caller.
kernel = njit(cache=True, nogil=True, no_cfunc_wrapper=True, _nrt=False, **OPTIONS)
allocating_kernel = njit(cache=True, nogil=True, no_cfunc_wrapper=True, **OPTIONS)
inline = njit(inline="always", **OPTIONS)

# The shared maths is compiled function by function and inlined by LLVM.
# Numba's own inlining copies a callee's IR into every call site before
# typing, and the copies (activate_row's eight loops, each with all of
# ``activate``'s branches) were a quarter of a cold compile: measured, the
# first fit took 20.6 s with them, 15.9 s without. The functions the loops
# below call once per row or per block stay inlined by Numba (as calls, they
# cost 0.3-0.6 us more per training step of a small network, 2-8-1 or
# 64-32-10), and so do the one-line activations those loops call per element
# (``_maths.INLINED_FUNCTIONS``).
_maths = compile_for(njit(no_cfunc_wrapper=True, **OPTIONS),
                     {"exp_nonpositive": vectorisable_exp, "tanh": vectorisable_tanh,
                      "expm1": vectorisable_expm1, "log1p_nonnegative": vectorisable_log1p},
                     loop_jit=inline)
activate = _maths.activate
activate_row = _maths.activate_row
derivative = _maths.derivative
scale_by_derivative_row = _maths.scale_by_derivative_row
denominator = _maths.denominator
softmax_row = _maths.softmax_row
row_loss = _maths.row_loss
softmax_row_loss = _maths.softmax_row_loss
row_delta = _maths.row_delta
dropout_keeps = _maths.dropout_keeps
row_correct = _maths.row_correct
update_rules = _maths.update_rules
updated = _maths.updated

#: A training run packs its integers into one ``layout`` vector: these
#: scalars, then sizes (n_layers + 1), then activation ids (n_layers).
#: Few arguments make a step a cheap call (Numba's dispatch costs per argument).
(S_LAYERS, S_KIND, S_LOSS, S_SEED, S_STEP, S_BATCH, S_SIZES) = range(7)


# ----------------------------------------------------------------- layout
@inline
def layer_params(params, sizes, l):
    """(W, b) views of layer l inside a flat parameter-shaped vector."""
    offset = 0
    for k in range(l):
        offset += sizes[k] * sizes[k + 1] + sizes[k + 1]
    n_in, n_out = sizes[l], sizes[l + 1]
    W = contiguous_view(params, offset, (n_in, n_out))
    b = params[offset + n_in * n_out:offset + n_in * n_out + n_out]
    return W, b


@inline
def layer_block(buffer, sizes, l, rows):
    """Layer l's (rows x sizes[l+1]) block inside a flat per-unit buffer."""
    offset = 0
    for k in range(1, l + 1):
        offset += sizes[k]
    start = rows * offset
    return contiguous_view(buffer, start, (rows, sizes[l + 1]))


@inline
def matrix_rows(buffer, rows, width):
    return contiguous_view(buffer, 0, (rows, width))


@inline
def flat(M):
    """The C-contiguous matrix M as a vector."""
    return contiguous_view(M, 0, (M.size,))


@inline
def copy_matrix(source, target):
    """target[:] = source element by element: a slice assignment of one array
    to another compiles Numba's shape-mismatch error message too (2 s)."""
    for i in range(target.shape[0]):
        for j in range(target.shape[1]):
            target[i, j] = source[i, j]


@inline
def row_range(M, start, rows):
    """M[start:start + rows] of a C-contiguous matrix, typed C-contiguous (Numba
    types the plain slice as any-layout, and every kernel it reaches would be
    compiled a second time for it: 9 s for the forward pass)."""
    width = M.shape[1]
    return contiguous_view(M, start * width, (rows, width))


# ------------------------------------------------------ forward / backward
@kernel
def forward_rows(params, sizes, acts, X, Z, A, rows, dropout, seed, step):
    """Forward pass of ``rows`` samples; fills Z and A. dropout[l] per hidden layer."""
    forward_from(params, sizes, acts, X, Z, A, rows, 0, True, dropout, seed, step)


@inline
def forward_from(params, sizes, acts, A_in, Z, A, rows, first, output_needed, dropout, seed,
                 step):
    """Layers ``first``.. of the forward pass, given the input ``A_in`` of layer ``first``.

    Without ``output_needed`` the output layer's activation is skipped (its A
    is left as it was): cross-entropy and BCE losses are computed from Z alone,
    and the softmax's exponentials are a large part of a small network's work.
    """
    n_layers = sizes.size - 1
    for l in range(first, n_layers):
        W, b = layer_params(params, sizes, l)
        Zl = layer_block(Z, sizes, l, rows)
        Al = layer_block(A, sizes, l, rows)
        gemm_nn(A_in, W, Zl)
        if output_needed or l < n_layers - 1:
            add_bias_activate(Zl, Zl, Al, b, acts[l])
        else:
            add_bias(Zl, Zl, b)
        if l < n_layers - 1 and dropout[l] > 0:
            apply_dropout(Al, seed, step, l, dropout[l])
        A_in = Al


@inline
def add_bias(product, Zl, b):
    """Z = product + b row by row; ``product`` may be Z itself."""
    for i in range(Zl.shape[0]):
        for j in range(Zl.shape[1]):
            Zl[i, j] = product[i, j] + b[j]


@inline
def add_bias_activate(product, Zl, Al, b, kind):
    """Z = product + b, then A = f(Z)."""
    add_bias(product, Zl, b)
    activate_block(Zl, Al, kind)


@inline
def activate_block(Zl, Al, kind):
    """A = f(Z): softmax row by row, element-wise activations as one loop over
    the whole block (a row of a few units is too short a loop to vectorise)."""
    if kind == SOFTMAX:
        for i in range(Zl.shape[0]):
            softmax_row(Zl[i], Al[i])
    else:
        activate_row(flat(Zl), flat(Al), kind)


@inline
def apply_dropout(Al, seed, step, layer, rate):
    """Inverted dropout: zero a unit with probability ``rate``, scale the rest."""
    scale = Al.dtype.type(1.0 / (1.0 - rate))
    width = Al.shape[1]
    for i in range(Al.shape[0]):
        for j in range(width):
            if dropout_keeps(seed, step, layer, i * width + j, rate):
                Al[i, j] *= scale
            else:
                Al[i, j] = 0


@kernel
def loss_rows(sizes, acts, loss, Y, Z, A, rows):
    """Summed loss of the ``rows`` samples whose output is in Z and A (the
    forward pass ran with ``output_needed``: cross-entropy reads the softmax)."""
    last = sizes.size - 2
    Zl = layer_block(Z, sizes, last, rows)
    Al = layer_block(A, sizes, last, rows)
    total = 0.0
    if loss == CROSS_ENTROPY:
        for i in range(rows):
            total += softmax_row_loss(Zl[i], Al[i], Y[i])
    else:
        for i in range(rows):
            total += row_loss(Zl[i], Al[i], Y[i], loss)
    return total


#: rows whose cross-entropies are computed side by side (16 float32 lanes),
#: for up to CE_MAX_CLASSES classes (a block is copied to the stack)
CE_BLOCK = 16
CE_MAX_CLASSES = 32
CE_STACK = CE_BLOCK * CE_MAX_CLASSES


@inline
def cross_entropy_rows(Z, Y):
    """Summed cross-entropy of the logit rows of Z against Y: ``row_loss``'s
    formula on each row (equal to it within rounding), summed in float64.

    A block of CE_BLOCK rows is transposed onto the stack, and the loops
    over classes then run down its columns: each step is one operation on
    the whole block, which vectorises (one 10-class row at a time took
    31-52 ns, a chain of dependent operations too short to vectorise). The
    rows after the last full block, and rows of many classes, go one by one.
    """
    rows, classes = Z.shape
    Zt, Yt = stack_vector(Z, CE_STACK), stack_vector(Z, CE_STACK)
    top, others, extra_ties = (stack_vector(Z, CE_BLOCK), stack_vector(Z, CE_BLOCK),
                               stack_vector(Z, CE_BLOCK))
    sum_y, cross = stack_vector(Z, CE_BLOCK), stack_vector(Z, CE_BLOCK)
    zero, one = Z.dtype.type(0.0), Z.dtype.type(1.0)
    total = 0.0
    full = rows - rows % CE_BLOCK if classes <= CE_MAX_CLASSES else 0
    for start in range(0, full, CE_BLOCK):
        for i in range(CE_BLOCK):
            for j in range(classes):
                Zt[j * CE_BLOCK + i] = Z[start + i, j]
                Yt[j * CE_BLOCK + i] = Y[start + i, j]
        for i in range(CE_BLOCK):
            top[i] = Zt[i]
            others[i] = sum_y[i] = cross[i] = zero
            # ties - 1, counted from -1: log1p(others + (ties - 1)) written out
            # would be regrouped ('reassoc') into (others + ties) - 1, which
            # rounds a small ``others`` away
            extra_ties[i] = -one
        for j in range(1, classes):
            for i in range(CE_BLOCK):
                top[i] = max(top[i], Zt[j * CE_BLOCK + i])
        for j in range(classes):
            for i in range(CE_BLOCK):
                # no branch, so that the loop vectorises: exp(0) = 1 is
                # computed for the maximum too, and masked out
                shifted = Zt[j * CE_BLOCK + i] - top[i]
                below = Z.dtype.type(shifted < zero)
                others[i] += vectorisable_exp(min(shifted, zero)) * below
                extra_ties[i] += one - below
                sum_y[i] += Yt[j * CE_BLOCK + i]
                cross[i] -= Yt[j * CE_BLOCK + i] * shifted
        for i in range(CE_BLOCK):
            total += cross[i] + vectorisable_log1p(others[i] + extra_ties[i]) * sum_y[i]
    for i in range(full, rows):
        total += row_loss(Z[i], Z[i], Y[i], CROSS_ENTROPY)
    return total


@kernel
def backward_rows(params, sizes, acts, loss, X, Y, Z, A, D, grad, rows, scale,
                  dropout, seed, step, descent):
    """Backward pass: grad = scale * dL/dparams for the rows forwarded into Z, A.

    With ``descent`` > 0, a plain SGD step with that learning rate instead:
    params -= descent * gradient, each layer's weights as BLAS computes their
    gradient (W += -descent A_in^T D, after D_in = D W^T has read them), so the
    weight gradient is never stored and read back: a step of 784-1024-1024-10
    on 256 rows took 14.4 against 15.4 ms (784-256-128-10 on 128: 815 against
    868 us). The biases' gradient still goes to grad.
    """
    last = sizes.size - 2
    Dl = output_delta(sizes, acts, loss, Y, Z, A, D, rows, scale)
    for l in range(last, -1, -1):
        W, b = layer_params(params, sizes, l)
        gW, gb = layer_params(grad, sizes, l)
        Dl = dense_backward(X, Z, A, D, Dl, W, b, gW, gb, sizes, acts, l, rows, dropout, seed,
                            step, descent)


@inline
def output_delta(sizes, acts, loss, Y, Z, A, D, rows, scale):
    """The output layer's delta, scale * dL/dz, into its block of D (returned)."""
    last = sizes.size - 2
    Dl = layer_block(D, sizes, last, rows)
    Zl = layer_block(Z, sizes, last, rows)
    Al = layer_block(A, sizes, last, rows)
    for i in range(rows):
        row_delta(Zl[i], Al[i], Y[i], loss, acts[last], scale, Dl[i])
    return Dl


@inline
def dense_backward(X, Z, A, D, Dl, W, b, gW, gb, sizes, acts, l, rows, dropout, seed, step,
                   descent):
    """From layer l's delta Dl (dL/d of its x W + b): gW = A_in^T Dl, gb = sum of Dl's
    rows, and the delta of layer l - 1 through its f' and dropout mask (returned;
    Dl itself at l = 0). With ``descent`` > 0, W and b take their SGD step
    instead of gW (see ``backward_rows``)."""
    A_in = X if l == 0 else layer_block(A, sizes, l - 1, rows)
    D_in = Dl
    if l > 0:
        D_in = layer_block(D, sizes, l - 1, rows)
        gemm_nt(Dl, W, D_in)
    gb[:] = 0
    for i in range(rows):
        for j in range(gb.size):
            gb[j] += Dl[i, j]
    if descent > 0:
        gemm_tn_add(A_in, Dl, W, -descent, 1.0)
        for j in range(b.size):
            b[j] -= descent * gb[j]
    else:
        gemm_tn(A_in, Dl, gW)
    if l > 0:
        hidden_delta(D_in, layer_block(Z, sizes, l - 1, rows), A_in, acts[l - 1],
                     dropout[l - 1], seed, step, l - 1)
    return D_in


@inline
def hidden_delta(D, Z, A, kind, rate, seed, step, layer):
    """D *= f'(Z), through the dropout mask when the layer has one.

    A holds the dropped-and-scaled activations; a kept unit's true
    activation is A / scale, a dropped unit passes no gradient.
    """
    width = D.shape[1]
    if rate > 0:
        scale = D.dtype.type(1.0 / (1.0 - rate))
        for i in range(D.shape[0]):
            for j in range(width):
                if dropout_keeps(seed, step, layer, i * width + j, rate):
                    D[i, j] *= scale * derivative(Z[i, j], A[i, j] / scale, kind)
                else:
                    D[i, j] = 0
    else:
        # one loop over the whole block, as in ``add_bias_activate``
        scale_by_derivative_row(flat(D), flat(Z), flat(A), kind)


# ------------------------------------------------------------- optimiser
@kernel
def optimizer_step(params, grad, m, v, t, kind, hyper):
    """One fused update of ``params`` in place, the t-th of the run.

    Clipping by global norm first (coefficient max_norm / (norm + 1e-6),
    capped at 1, as torch.nn.utils.clip_grad_norm_), then ``updated``.
    """
    one = params.dtype.type(1.0)
    lr = hyper[H_LR]
    coef = one
    if hyper[H_CLIP_NORM] > 0:
        squares = 0.0
        for i in range(grad.size):
            squares += grad[i] * grad[i]
        coef = params.dtype.type(min(hyper[H_CLIP_NORM] / (np.sqrt(squares) + 1e-6), 1.0))
    step_size = lr
    sqrt_bias2 = one
    if kind == ADAM:
        step_size = params.dtype.type(lr / (1.0 - hyper[H_BETA1] ** t))
        sqrt_bias2 = params.dtype.type(np.sqrt(1.0 - hyper[H_BETA2] ** t))
    rules = update_rules(hyper, lr, step_size, sqrt_bias2)
    if hyper[H_CLIP_VALUE] > 0 or hyper[H_WEIGHT_DECAY] > 0:
        update_loop(params, grad, m, v, coef, kind, rules, True, True)
        return
    # The common settings, each with its rule's switches as constants: the
    # compiler drops the branches and vectorises (measured 16x faster for
    # SGD on 26,122 parameters than one loop that tests them per element).
    lean = (lr, NO, NO, NO) + rules[4:]
    if kind == SGD and hyper[H_MOMENTUM] == 0:
        update_loop(params, grad, m, v, coef, SGD_RULE, lean[:4] + (NO, NO) + lean[6:], False,
                    False)
    elif kind == SGD:
        update_loop(params, grad, m, v, coef, SGD_RULE, lean, True, False)
    elif kind == ADAM:
        update_loop(params, grad, m, v, coef, ADAM_RULE, lean, True, True)
    else:
        update_loop(params, grad, m, v, coef, RMSPROP_RULE, lean, False, True)


@inline
def update_loop(params, grad, m, v, coef, kind, rules, writes_m, writes_v):
    """params, m, v = ``updated`` element by element; m and v are stored only
    where the rule changes them."""
    for i in range(params.size):
        p, m_i, v_i = updated(params[i], grad[i] * coef, m[i], v[i], kind, rules)
        params[i] = p
        if writes_m:
            m[i] = m_i
        if writes_v:
            v[i] = v_i


# --------------------------------------------------------------- drivers
@inline
def train_step(params, grad, m, v, t, kind, hyper, X, Y, sizes, acts, loss, dropout,
               seed, Z, A, D):
    """One mini-batch step on all rows of X, Y, the (t+1)-th of the run.

    Returns the batch's mean loss before the update; when it is not finite,
    nothing is updated.
    """
    rows = X.shape[0]
    forward_rows(params, sizes, acts, X, Z, A, rows, dropout, seed, t)
    denom = denominator(rows, Y.shape[1], loss)
    batch_loss = loss_rows(sizes, acts, loss, Y, Z, A, rows) / denom
    if np.isfinite(batch_loss):
        descent = plain_sgd_rate(kind, hyper)
        backward_rows(params, sizes, acts, loss, X, Y, Z, A, D, grad, rows,
                      params.dtype.type(1.0 / denom), dropout, seed, t, descent)
        if descent == 0:
            optimizer_step(params, grad, m, v, t + 1, kind, hyper)
    return batch_loss


@inline
def plain_sgd_rate(kind, hyper):
    """The learning rate when the update is plain SGD (no momentum, weight
    decay or clipping), which ``backward_rows`` applies itself; else 0."""
    if (kind == SGD and hyper[H_MOMENTUM] == 0 and hyper[H_WEIGHT_DECAY] == 0
            and hyper[H_CLIP_NORM] == 0 and hyper[H_CLIP_VALUE] == 0):
        return hyper[H_LR]
    return 0.0


@inline
def run_layout(layout):
    """(sizes, activation ids) views of a training run's ``layout`` vector."""
    n_layers = layout[S_LAYERS]
    sizes = layout[S_SIZES:S_SIZES + n_layers + 1]
    return sizes, layout[S_SIZES + n_layers + 1:S_SIZES + 2 * n_layers + 1]


@inline
def run_buffers(work, n_params, sizes, batch):
    """Views of a training run's ``work`` vector:
    grad, m, v (n_params each), then Z, A, D (batch x units), then Xb, Yb."""
    units = 0
    for k in range(1, sizes.size):
        units += sizes[k]
    grad = work[:n_params]
    m = work[n_params:2 * n_params]
    v = work[2 * n_params:3 * n_params]
    start = 3 * n_params
    Z = work[start:start + batch * units]
    A = work[start + batch * units:start + 2 * batch * units]
    D = work[start + 2 * batch * units:start + 3 * batch * units]
    start += 3 * batch * units
    Xb = work[start:start + batch * sizes[0]]
    Yb = work[start + batch * sizes[0]:start + batch * (sizes[0] + sizes[sizes.size - 1])]
    return grad, m, v, Z, A, D, Xb, Yb


@kernel
def fit_step(params, work, layout, hyper, X, Y):
    """One step of a packed training run on the batch X, Y; counts it in layout.

    X and Y come unchecked (StepTrainer's fast path), so NaN or inf in them
    returns NaN before anything is computed: a NaN does not always reach the
    loss (relu(NaN) is 0) but would reach the weights through X^T D.
    """
    if not (all_finite(X) and all_finite(Y)):
        return np.nan
    sizes, acts = run_layout(layout)
    grad, m, v, Z, A, D, _, _ = run_buffers(work, params.size, sizes, layout[S_BATCH])
    batch_loss = train_step(params, grad, m, v, layout[S_STEP], layout[S_KIND], hyper, X, Y,
                            sizes, acts, layout[S_LOSS], hyper[N_HYPER:], layout[S_SEED],
                            Z, A, D)
    if np.isfinite(batch_loss):
        layout[S_STEP] += 1
    return batch_loss


@inline
def all_finite(M):
    """No NaN or inf in the C-contiguous array M, without np.isfinite's
    temporary: x * 0 is NaN exactly when x is NaN or inf, and a sum with a NaN
    term is NaN in any order, so the loop vectorises (no early exit)."""
    values = flat(M)
    zero = M.dtype.type(0.0)
    check = zero
    for i in range(values.size):
        check += values[i] * zero
    return check == zero


@inline
def gather_batch(X, Y, order, start, rows, Xb, Yb):
    """Rows ``order[start:start + rows]`` of X and Y copied into the batch buffers
    Xb, Yb; returns the filled views."""
    Xr = matrix_rows(Xb, rows, X.shape[1])
    Yr = matrix_rows(Yb, rows, Y.shape[1])
    for i in range(rows):
        copy_matrix(X[order[start + i]:order[start + i] + 1], Xr[i:i + 1])
        copy_matrix(Y[order[start + i]:order[start + i] + 1], Yr[i:i + 1])
    return Xr, Yr


@inline
def serial_batch(params, grad, m, v, layout, hyper, X, Y, sizes, acts, Z, A, D, parts_work):
    """``train_step`` on the batch X, Y; returns (its loss, its correct
    predictions). ``parts_work`` is unused (``parallel_batch``'s)."""
    batch_loss = train_step(params, grad, m, v, layout[S_STEP], layout[S_KIND], hyper, X, Y,
                            sizes, acts, layout[S_LOSS], hyper[N_HYPER:], layout[S_SEED], Z, A, D)
    return batch_loss, count_correct(sizes, layout[S_LOSS], Y, A, X.shape[0])


@inline
def epoch_loop(take_batch, params, work, layout, hyper, X, Y, order, parts_work):
    """One epoch: gathers each batch (rows ``order[start:start+batch]``) and
    trains on it with ``take_batch`` (``serial_batch`` or ``parallel_batch``).
    Returns (mean batch loss weighted by batch size, correct predictions seen
    while training, finite). Stops at the first batch whose loss is not finite.
    """
    sizes, acts = run_layout(layout)
    batch = layout[S_BATCH]
    grad, m, v, Z, A, D, Xb, Yb = run_buffers(work, params.size, sizes, batch)
    n = order.size
    total = 0.0
    correct = 0
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        Xr, Yr = gather_batch(X, Y, order, start, rows, Xb, Yb)
        batch_loss, batch_correct = take_batch(params, grad, m, v, layout, hyper, Xr, Yr, sizes,
                                               acts, Z, A, D, parts_work)
        if not np.isfinite(batch_loss):
            return total / max(start, 1), correct, False
        layout[S_STEP] += 1
        correct += batch_correct
        total += batch_loss * rows
    # The last update is seen by no loss: check that it left finite parameters.
    return total / n, correct, all_finite(params)


@kernel
def fit_epoch(params, work, layout, hyper, X, Y, order):
    """One epoch of a packed training run in one call (``epoch_loop``)."""
    return epoch_loop(serial_batch, params, work, layout, hyper, X, Y, order, work)


@inline
def count_correct(sizes, loss, Y, A, rows):
    """Correct predictions among ``rows`` forwarded samples (0 for regression)."""
    out = layer_block(A, sizes, sizes.size - 2, rows)
    correct = 0
    for i in range(rows):
        correct += row_correct(out[i], Y[i], loss)
    return correct


# ------------------------------------------------------ data-parallel step
# A middle-sized network's training step (64-128-128-10 on 64 rows) gains
# little from BLAS' own threads: each product is split and joined again, and
# only the widest of them gain (1.3-1.45x on 2 threads). ``parallel_batch``
# (in ``fit_step_parallel`` and ``fit_epoch_parallel``) shares the batch's
# rows among threads instead; each runs its part's forward and backward
# passes on one BLAS thread, then the threads sum the parts' gradients and
# update one slice of the parameters each.
@njit(cache=True, nogil=True, parallel=True, **OPTIONS)
def fit_step_parallel(params, work, layout, hyper, X, Y, parts_work, blas_threads):
    """``fit_step``, its batch's rows shared among ``parts_work.shape[0]`` parts
    (``parallel_batch``).

    ``blas_threads`` holds the addresses of BLAS' get_num_threads and
    set_num_threads (``blas.thread_count_functions``): BLAS runs on one
    thread during the step, since two threads each calling a two-threaded
    BLAS made a step 300x slower. The thread count is global: two steps
    running at once in two Python threads could leave BLAS on one thread.
    """
    if not (all_finite(X) and all_finite(Y)):
        return np.nan
    sizes, acts = run_layout(layout)
    grad, m, v, Z, A, D, _, _ = run_buffers(work, params.size, sizes, layout[S_BATCH])
    blas = get_thread_count(blas_threads[0])
    set_thread_count(blas_threads[1], 1)
    batch_loss, _ = parallel_batch(params, grad, m, v, layout, hyper, X, Y, sizes, acts, Z, A, D,
                                   parts_work)
    set_thread_count(blas_threads[1], blas)
    if np.isfinite(batch_loss):
        layout[S_STEP] += 1
    return batch_loss


@njit(cache=True, nogil=True, parallel=True, **OPTIONS)
def fit_epoch_parallel(params, work, layout, hyper, X, Y, order, parts_work, blas_threads):
    """``fit_epoch`` with each batch's rows shared among ``parts_work.shape[0]``
    parts (``parallel_batch``), BLAS on one thread (``fit_step_parallel``)."""
    blas = get_thread_count(blas_threads[0])
    set_thread_count(blas_threads[1], 1)
    result = epoch_loop(parallel_batch, params, work, layout, hyper, X, Y, order, parts_work)
    set_thread_count(blas_threads[1], blas)
    return result


@inline
def parallel_batch(params, grad, m, v, layout, hyper, X, Y, sizes, acts, Z, A, D, parts_work):
    """``serial_batch`` with the batch's rows shared among parts; Z, A and D
    are unused (each part has its own, after its gradient, in
    ``parts_work[c]``: ``part_length``). The gradient is the parts' sum, so
    it differs from ``serial_batch``'s by rounding only. Without dropout
    only: a part would draw its masks for its own row numbers.
    """
    loss = layout[S_LOSS]
    rows, parts = X.shape[0], parts_work.shape[0]
    denom = denominator(rows, Y.shape[1], loss)
    scale = params.dtype.type(1.0 / denom)
    losses = np.empty(parts)
    corrects = np.empty(parts, np.int64)
    for c in prange(parts):
        start = c * rows // parts
        count = (c + 1) * rows // parts - start
        losses[c], corrects[c] = part_loss_and_grad(
            params, sizes, acts, loss, row_range(X, start, count), row_range(Y, start, count),
            parts_work[c], count, scale, hyper[N_HYPER:])
    batch_loss = 0.0
    correct = 0
    for c in range(parts):  # a fixed order: the loss does not depend on the threads' timing
        batch_loss += losses[c]
        correct += corrects[c]
    batch_loss /= denom
    if np.isfinite(batch_loss):
        n, t = params.size, layout[S_STEP] + 1
        by_slice = not hyper[H_CLIP_NORM] > 0  # clipping by norm needs the whole gradient
        for c in prange(parts):
            part_update(params, grad, m, v, parts_work, c * n // parts, (c + 1) * n // parts,
                        t, layout[S_KIND], hyper, by_slice)
        if not by_slice:
            optimizer_step(params, grad, m, v, t, layout[S_KIND], hyper)
    return batch_loss, correct


def part_length(n_params, units, rows):
    """Length of one part's work vector in ``fit_step_parallel`` for parts of
    up to ``rows`` rows: a gradient, then Z, A and D."""
    return n_params + 3 * rows * units


@kernel
def part_loss_and_grad(params, sizes, acts, loss, X, Y, work, rows, scale, dropout):
    """One part of a data-parallel step: the forward pass of the rows of X,
    ``scale`` times their loss' gradient into the head of ``work``
    (``part_length``); returns (their summed loss, their correct predictions)."""
    n = params.size
    block = (work.size - n) // 3
    grad = work[:n]
    Z, A, D = work[n:n + block], work[n + block:n + 2 * block], work[n + 2 * block:]
    forward_rows(params, sizes, acts, X, Z, A, rows, dropout, NO_STEP, NO_STEP)
    total = loss_rows(sizes, acts, loss, Y, Z, A, rows)
    backward_rows(params, sizes, acts, loss, X, Y, Z, A, D, grad, rows, scale, dropout,
                  NO_STEP, NO_STEP, NO_DESCENT)
    return total, count_correct(sizes, loss, Y, A, rows)


@kernel
def part_update(params, grad, m, v, parts_work, start, stop, t, kind, hyper, update):
    """grad[start:stop] = the sum of the parts' gradients there; with
    ``update``, the optimiser's t-th step of params[start:stop] too."""
    # Loops over views from 0: indexed from ``start``, an index could be
    # negative for all LLVM knows, and Numba's wraparound for negative
    # indices kept the loops scalar (6x slower).
    total = grad[start:stop]
    first = parts_work[0, start:stop]
    for i in range(total.size):
        total[i] = first[i]
    for c in range(1, parts_work.shape[0]):
        part = parts_work[c, start:stop]
        for i in range(total.size):
            total[i] += part[i]
    if update:
        optimizer_step(params[start:stop], grad[start:stop], m[start:stop], v[start:stop], t,
                       kind, hyper)


@allocating_kernel
def forward_all(params, sizes, acts, X, out, chunk, Z, A):
    """Outputs of every row of X into ``out``, ``chunk`` rows at a time."""
    n = X.shape[0]
    no_dropout = np.zeros(sizes.size, params.dtype)
    last = sizes.size - 2
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        forward_rows(params, sizes, acts, row_range(X, start, rows), Z, A, rows, no_dropout,
                     NO_STEP, NO_STEP)
        copy_matrix(layer_block(A, sizes, last, rows), out[start:start + rows])


@allocating_kernel
def loss_and_grad_all(params, sizes, acts, loss, X, Y, chunk, Z, A, D, grad, grad_chunk):
    """Mean loss and its gradient over all rows, accumulated chunk by chunk."""
    n = X.shape[0]
    no_dropout = np.zeros(sizes.size, params.dtype)
    scale = params.dtype.type(1.0 / denominator(n, Y.shape[1], loss))
    grad[:] = 0
    total = 0.0
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        Xc, Yc = row_range(X, start, rows), row_range(Y, start, rows)
        forward_rows(params, sizes, acts, Xc, Z, A, rows, no_dropout, NO_STEP, NO_STEP)
        total += loss_rows(sizes, acts, loss, Yc, Z, A, rows)
        backward_rows(params, sizes, acts, loss, Xc, Yc, Z, A, D, grad_chunk, rows, scale,
                      no_dropout, NO_STEP, NO_STEP, NO_DESCENT)
        grad += grad_chunk
    return total / denominator(n, Y.shape[1], loss)


@kernel
def chunk_losses(thetas, sizes, acts, loss, stacked, Y, Z, A, totals, no_dropout):
    """totals[p] = summed loss of member p on one chunk of rows, given the
    chunk's stacked first-layer product. A separate (not inlined) function:
    inside a parallel loop Numba would turn its array expressions into
    nested parallel loops, which made it 3x slower."""
    rows = Y.shape[0]
    h = sizes[1]
    output_needed = loss == MSE
    Z1 = layer_block(Z, sizes, 0, rows)
    A1 = layer_block(A, sizes, 0, rows)
    for p in range(thetas.shape[0]):
        params = thetas[p]
        product, b = stacked[:, p * h:(p + 1) * h], layer_params(params, sizes, 0)[1]
        if output_needed or sizes.size > 2:
            add_bias_activate(product, Z1, A1, b, acts[0])
        else:
            add_bias(product, Z1, b)
        forward_from(params, sizes, acts, A1, Z, A, rows, 1, output_needed, no_dropout, 0, 0)
        if output_needed:
            totals[p] = loss_rows(sizes, acts, loss, Y, Z, A, rows)
        else:
            totals[p] = chunk_loss_from_logits(sizes, loss, Y, Z, rows)


@inline
def chunk_loss_from_logits(sizes, loss, Y, Z, rows):
    """Summed cross-entropy or BCE of the rows whose output-layer logits are in Z."""
    Zl = layer_block(Z, sizes, sizes.size - 2, rows)
    if loss == CROSS_ENTROPY:
        return cross_entropy_rows(Zl, Y)
    total = 0.0
    for i in range(rows):
        total += row_loss(Zl[i], Zl[i], Y[i], loss)
    return total


@allocating_kernel
def population_loss_serial(thetas, sizes, acts, loss, X, Y, chunk, Z, A):
    """Mean loss over all rows of X of every row of ``thetas``, one member
    after another, ``chunk`` rows at a time: small populations, and the loss
    of one network (a population of one).

    Through ``forward_rows``, the training step's own forward pass, softmax
    included: compiled once for both (a second inlined forward pass took 9 s
    to compile), and with the vectorised exp the softmax costs little.
    """
    n = X.shape[0]
    no_dropout = np.zeros(sizes.size, thetas.dtype)
    denom = denominator(n, Y.shape[1], loss)
    losses = np.empty(thetas.shape[0], np.float64)
    for p in range(thetas.shape[0]):
        total = 0.0
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            forward_rows(thetas[p], sizes, acts, row_range(X, start, rows), Z, A, rows,
                         no_dropout, NO_STEP, NO_STEP)
            total += loss_rows(sizes, acts, loss, row_range(Y, start, rows), Z, A, rows)
        losses[p] = total / denom
    return losses


@njit(cache=True, nogil=True, parallel=True, **OPTIONS)
def population_loss(thetas, sizes, acts, loss, X, Y, n_chunks, W_stack, Z_stack, Z, A):
    """Mean loss of every row of ``thetas`` on all of X.

    Every member's first layer reads the same inputs, so the first layer of
    the whole population is one product, X @ [W_1 | W_2 | ... | W_P], which
    BLAS runs near the machine's peak (it is most of the arithmetic when
    the input is wider than the hidden layers). ``n_chunks`` chunks of rows
    (their lengths differ by at most one) run in parallel: each thread
    computes the stacked product of its chunk (BLAS on one thread: the
    caller limits it, two thread pools on the same cores stall each other),
    then every member's remaining layers. W_stack is (n_in, P * h); Z_stack
    (threads, rows * P * h) and Z, A (threads, rows * units), for the
    longest chunk's rows, are per-thread workspaces. Per-chunk losses are
    summed in a fixed order, so the result does not depend on the thread
    count.
    """
    P = thetas.shape[0]
    n, n_in = X.shape
    h = sizes[1]
    for p in prange(P):
        copy_matrix(contiguous_view(thetas, p * thetas.shape[1], (n_in, h)),
                    W_stack[:, p * h:(p + 1) * h])
    totals = np.zeros((n_chunks, P), np.float64)
    no_dropout = np.zeros(sizes.size, thetas.dtype)
    for c in prange(n_chunks):
        thread = get_thread_id()
        start = c * n // n_chunks
        rows = (c + 1) * n // n_chunks - start
        stacked = contiguous_view(Z_stack, thread * Z_stack.shape[1], (rows, P * h))
        gemm_nn(row_range(X, start, rows), W_stack, stacked)
        chunk_losses(thetas, sizes, acts, loss, stacked, Y[start:start + rows], Z[thread],
                     A[thread], totals[c], no_dropout)
    return totals.sum(axis=0) / denominator(n, Y.shape[1], loss)


# ------------------------------------------------------- batch normalisation
# Networks with batch normalisation (Ioffe & Szegedy 2015) train here; for
# inference they are folded into a plain network (``fastnet.batchnorm``) and
# run on the kernels above. ``bn[l]`` (one flag per layer, the output's 0)
# marks the hidden layers that normalise: their gamma then beta follow b_l in
# the parameter vector. Z holds y = gamma * xhat + beta, the activation's
# input, so ``hidden_delta`` reads it as it reads a plain layer's z; H holds
# xhat. ``mean`` and ``inv_std`` are per-unit buffers (layer l's block at
# ``layer_block(buffer, sizes, l, 1)``); ``stats`` holds, per normalising
# layer, its running mean then running variance.
BN_EPS = 1e-5


@inline
def bn_layer_params(params, sizes, bn, l):
    """(W, b, gamma, beta) views of layer l; gamma and beta are empty unless bn[l]."""
    offset = 0
    for k in range(l):
        offset += sizes[k] * sizes[k + 1] + sizes[k + 1] * (3 if bn[k] else 1)
    n_in, n_out = sizes[l], sizes[l + 1]
    W = contiguous_view(params, offset, (n_in, n_out))
    offset += n_in * n_out
    b = params[offset:offset + n_out]
    width = n_out if bn[l] else 0
    gamma = params[offset + n_out:offset + n_out + width]
    beta = params[offset + n_out + width:offset + n_out + 2 * width]
    return W, b, gamma, beta


@inline
def running_stats(stats, sizes, bn, l):
    """(running mean, running variance) views of normalising layer l."""
    offset = 0
    for k in range(l):
        if bn[k]:
            offset += 2 * sizes[k + 1]
    width = sizes[l + 1]
    return stats[offset:offset + width], stats[offset + width:offset + 2 * width]


@inline
def normalize(Zl, Hl, b, gamma, beta, mean, variance, inv_std):
    """Z = gamma * xhat + beta with xhat = (z - mean_B) / sqrt(var_B + eps) over
    the batch (Ioffe & Szegedy 2015, Algorithm 1; variance biased, 1/m).

    Zl holds x W without b on entry: b shifts every row alike, so it cancels
    in xhat, and leaving it out avoids a rounding; ``mean`` gets the mean of
    x W + b, the value the running mean tracks, and ``variance`` the batch's.
    """
    rows, width = Zl.shape
    eps = Zl.dtype.type(BN_EPS)
    for j in range(width):
        total = 0.0
        for i in range(rows):
            total += Zl[i, j]
        mu = total / rows
        squares = 0.0
        for i in range(rows):
            squares += (Zl[i, j] - mu) ** 2
        inv = Zl.dtype.type(1.0 / np.sqrt(squares / rows + eps))
        mean[j] = mu + b[j]
        variance[j] = squares / rows
        inv_std[j] = inv
        mu_cast = Zl.dtype.type(mu)
        for i in range(rows):
            Hl[i, j] = (Zl[i, j] - mu_cast) * inv
            Zl[i, j] = gamma[j] * Hl[i, j] + beta[j]


@inline
def normalize_backward(Dl, Hl, gamma, inv_std, g_gamma, g_beta):
    """Dl from dL/dy to dL/dz through the batch normalisation, and the gradients
    of gamma and beta (Ioffe & Szegedy 2015, section 3, simplified):
    dz = gamma / (m sigma) (m dy - sum dy - xhat sum(dy xhat))."""
    rows, width = Dl.shape
    for j in range(width):
        sum_d = 0.0
        sum_dh = 0.0
        for i in range(rows):
            sum_d += Dl[i, j]
            sum_dh += Dl[i, j] * Hl[i, j]
        g_beta[j] = sum_d
        g_gamma[j] = sum_dh
        coef = gamma[j] * inv_std[j] / rows
        for i in range(rows):
            Dl[i, j] = coef * (rows * Dl[i, j] - sum_d - Hl[i, j] * sum_dh)


@inline
def bn_forward_rows(params, sizes, acts, bn, X, Z, A, H, mean, variance, inv_std, rows,
                    dropout, seed, step):
    """Training-mode forward pass (batch statistics) of the ``rows`` rows of X."""
    n_layers = sizes.size - 1
    A_in = X
    for l in range(n_layers):
        W, b, gamma, beta = bn_layer_params(params, sizes, bn, l)
        Zl = layer_block(Z, sizes, l, rows)
        Al = layer_block(A, sizes, l, rows)
        gemm_nn(A_in, W, Zl)
        if bn[l]:
            normalize(Zl, layer_block(H, sizes, l, rows), b, gamma, beta,
                      layer_block(mean, sizes, l, 1)[0], layer_block(variance, sizes, l, 1)[0],
                      layer_block(inv_std, sizes, l, 1)[0])
            activate_block(Zl, Al, acts[l])
        else:
            add_bias_activate(Zl, Zl, Al, b, acts[l])
        if l < n_layers - 1 and dropout[l] > 0:
            apply_dropout(Al, seed, step, l, dropout[l])
        A_in = Al


@inline
def bn_backward_rows(params, sizes, acts, bn, loss, X, Y, Z, A, D, H, inv_std, grad, rows,
                     scale, dropout, seed, step):
    """grad = scale * dL/dparams of the batch forwarded by ``bn_forward_rows``."""
    last = sizes.size - 2
    Dl = output_delta(sizes, acts, loss, Y, Z, A, D, rows, scale)
    for l in range(last, -1, -1):
        W, b, gamma, beta = bn_layer_params(params, sizes, bn, l)
        gW, gb, g_gamma, g_beta = bn_layer_params(grad, sizes, bn, l)
        if bn[l]:
            normalize_backward(Dl, layer_block(H, sizes, l, rows), gamma,
                               layer_block(inv_std, sizes, l, 1)[0], g_gamma, g_beta)
        Dl = dense_backward(X, Z, A, D, Dl, W, b, gW, gb, sizes, acts, l, rows, dropout, seed,
                            step, NO_DESCENT)


@allocating_kernel
def bn_loss_and_grad(params, sizes, acts, bn, loss, X, Y, Z, A, D, H, stats_work, grad,
                     with_grad):
    """Mean loss of all rows of X as one batch (batch statistics), and its
    gradient into ``grad`` when ``with_grad``. Nothing else changes.
    ``stats_work``: 3 x units, the batch's mean, variance and 1 / sigma."""
    rows = X.shape[0]
    no_dropout = np.zeros(sizes.size, params.dtype)
    units = stats_work.size // 3
    mean, variance = stats_work[:units], stats_work[units:2 * units]
    inv_std = stats_work[2 * units:]
    bn_forward_rows(params, sizes, acts, bn, X, Z, A, H, mean, variance, inv_std, rows,
                    no_dropout, 0, 0)
    denom = denominator(rows, Y.shape[1], loss)
    value = loss_rows(sizes, acts, loss, Y, Z, A, rows) / denom
    if with_grad:
        bn_backward_rows(params, sizes, acts, bn, loss, X, Y, Z, A, D, H, inv_std, grad, rows,
                         params.dtype.type(1.0 / denom), no_dropout, 0, 0)
    return value


@inline
def update_running_stats(stats, sizes, bn, mean, variance, rows, momentum):
    """running = (1 - momentum) running + momentum batch, with the batch variance
    unbiased (m / (m - 1)), as PyTorch's BatchNorm1d."""
    keep = stats.dtype.type(1.0 - momentum)
    new = stats.dtype.type(momentum)
    unbias = stats.dtype.type(rows / (rows - 1.0))
    for l in range(sizes.size - 2):
        if bn[l]:
            running_mean, running_var = running_stats(stats, sizes, bn, l)
            mu = layer_block(mean, sizes, l, 1)[0]
            var = layer_block(variance, sizes, l, 1)[0]
            for j in range(running_mean.size):
                running_mean[j] = keep * running_mean[j] + new * mu[j]
                running_var[j] = keep * running_var[j] + new * var[j] * unbias


@inline
def bn_layout(layout):
    """(sizes, activation ids, bn flags) views of a batch-norm run's ``layout``:
    the plain run's layout followed by one flag per layer."""
    sizes, acts = run_layout(layout)
    start = S_SIZES + 2 * acts.size + 1
    return sizes, acts, layout[start:start + acts.size]


@inline
def bn_buffers(work, n_params, sizes, batch):
    """The plain run's ``run_buffers``, then H (batch x units), and the batch's
    mean, variance and 1 / sigma (units each)."""
    units = 0
    for k in range(1, sizes.size):
        units += sizes[k]
    start = 3 * n_params + batch * (3 * units + sizes[0] + sizes[sizes.size - 1])
    H = work[start:start + batch * units]
    start += batch * units
    mean = work[start:start + units]
    variance = work[start + units:start + 2 * units]
    inv_std = work[start + 2 * units:start + 3 * units]
    return run_buffers(work, n_params, sizes, batch) + (H, mean, variance, inv_std)


@inline
def bn_train_step(params, stats, work, layout, hyper, X, Y, momentum):
    """One step on all rows of X, Y: forward with batch statistics, backward,
    update, then the running statistics. Returns the batch's mean loss before
    the update; when it is not finite, nothing is updated."""
    sizes, acts, bn = bn_layout(layout)
    grad, m, v, Z, A, D, _, _, H, mean, variance, inv_std = bn_buffers(
        work, params.size, sizes, layout[S_BATCH])
    rows = X.shape[0]
    t = layout[S_STEP]
    dropout = hyper[N_HYPER:]
    bn_forward_rows(params, sizes, acts, bn, X, Z, A, H, mean, variance, inv_std, rows,
                    dropout, layout[S_SEED], t)
    denom = denominator(rows, Y.shape[1], layout[S_LOSS])
    batch_loss = loss_rows(sizes, acts, layout[S_LOSS], Y, Z, A, rows) / denom
    if np.isfinite(batch_loss):
        bn_backward_rows(params, sizes, acts, bn, layout[S_LOSS], X, Y, Z, A, D, H, inv_std,
                         grad, rows, params.dtype.type(1.0 / denom), dropout, layout[S_SEED], t)
        optimizer_step(params, grad, m, v, t + 1, layout[S_KIND], hyper)
        update_running_stats(stats, sizes, bn, mean, variance, rows, momentum)
        layout[S_STEP] += 1
    return batch_loss


@kernel
def bn_fit_step(params, stats, work, layout, hyper, X, Y, momentum):
    """``fit_step`` for a network with batch normalisation."""
    if not (all_finite(X) and all_finite(Y)):
        return np.nan
    return bn_train_step(params, stats, work, layout, hyper, X, Y, momentum)


@kernel
def bn_fit_epoch(params, stats, work, layout, hyper, X, Y, order, momentum):
    """``fit_epoch`` for a network with batch normalisation (no batch of 1 row:
    the caller checks)."""
    sizes, acts, bn = bn_layout(layout)
    batch = layout[S_BATCH]
    _, _, _, _, A, _, Xb, Yb, _, _, _, _ = bn_buffers(work, params.size, sizes, batch)
    n = order.size
    total = 0.0
    correct = 0
    for start in range(0, n, batch):
        rows = min(batch, n - start)
        Xr, Yr = gather_batch(X, Y, order, start, rows, Xb, Yb)
        batch_loss = bn_train_step(params, stats, work, layout, hyper, Xr, Yr, momentum)
        if not np.isfinite(batch_loss):
            return total / max(start, 1), correct, False
        correct += count_correct(sizes, layout[S_LOSS], Yr, A, rows)
        total += batch_loss * rows
    return total / n, correct, all_finite(params) and all_finite(stats)
