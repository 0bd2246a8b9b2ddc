"""The CUDA engine: ``CudaEngine`` and its epoch runner, on ``backends.cuda``'s kernels.

Same contract as ``engine.CpuEngine`` and ``engine.CpuEpochRunner``; the
parameter vector has the same layout, so a network moves between backends
with ``net.copy(backend=...)``.

During a ``fit`` the data, the parameters, the gradient and the optimiser's
moments stay on the device. A step is a handful of launches whose
arguments are scalars; the host learns the losses once per epoch, from a
device array holding every batch's summed loss, and a device flag stops
the updates at the first non-finite loss, as the CPU epoch does. The
shuffled order is drawn on the host by ``train.fit`` (so both backends
visit the batches in the same order and their trajectories can be
compared) and copied once per epoch: n integers, against an epoch of
launches.

Every method also accepts device arrays for its data. ``population_loss``,
which a gradient-free run calls every generation on the same data, copies a
host X and Y once and reuses the copies while the same array objects come
back (``DeviceData``); the validation data of a fit is copied once per fit.
"""
import importlib.util
import math
from typing import NamedTuple

import numpy as np
from numba import njit

from fastnet.activations import SOFTMAX
from fastnet.backends.cpu import ADAM, H_BETA1, H_BETA2, H_CLIP_NORM
from fastnet.losses import denominator

#: rows per chunk when a whole data set goes through the network
CHUNK_ROWS = 4096
#: most members per population launch (the grid's third dimension)
MAX_GRID_Z = 65535
#: dynamic shared memory one population block may use (two activation buffers)
POPULATION_SHARED_BYTES = 32 * 1024

HOW_TO_ENABLE = (
    'backend="cuda" needs numba-cuda (pip install "fastnet[cuda]") and an NVIDIA GPU with its '
    "driver. To run the CUDA kernels without a GPU, slowly, in Numba's simulator, set "
    "NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts.")


class CudaUnavailableError(RuntimeError):
    """backend="cuda" cannot run here; the message says how to enable it."""


def numba_cuda_installed():
    return importlib.util.find_spec("numba_cuda") is not None


def load_kernels():
    """``fastnet.backends.cuda``, or a CudaUnavailableError saying what is missing."""
    if not numba_cuda_installed():
        raise CudaUnavailableError(f"numba-cuda is not installed. {HOW_TO_ENABLE}")
    try:
        from fastnet.backends import cuda as kernels
    except ImportError as error:
        raise CudaUnavailableError(f"numba.cuda cannot be imported ({error}). "
                                   f"{HOW_TO_ENABLE}") from error
    if not kernels.cuda.is_available():
        raise CudaUnavailableError(f"no CUDA GPU is usable here. {HOW_TO_ENABLE}")
    return kernels


@njit(cache=True)
def adam_corrections(lr, beta1, beta2, t):
    """Adam's lr / (1 - beta1^t) and sqrt(1 - beta2^t), computed with the very
    types and operations of the CPU's ``optimizer_step`` (beta^t in the
    network's dtype): near t = 1, 1 - beta2^t magnifies any last-bit difference."""
    return lr / (1.0 - beta1 ** t), np.sqrt(1.0 - beta2 ** t)


class Dropout(NamedTuple):
    """Per layer: the dropout rate (0 for none) and 1 / (1 - rate), in the dtype."""
    rates: tuple
    scales: tuple
    seed: int


def _blocks(n, line, cap):
    return max(1, min(cap, -(-n // line)))


def on_device(cuda, array):
    """A device array as it is (anything with ``__cuda_array_interface__``), a host array copied."""
    if cuda.devicearray.is_cuda_ndarray(array):
        return array
    if hasattr(array, "__cuda_array_interface__"):
        return cuda.as_cuda_array(array)
    return cuda.to_device(array)


class DeviceData:
    """Device copies of host arrays, keyed by identity.

    ``get(array)`` copies a host array the first time it is seen and returns
    the same device copy while that very object is passed again, so a
    gradient-free run that evaluates every generation on one data set copies
    it once. The ``size`` most recent arrays are kept, each with a strong
    reference so that its id is not reused. Changing a cached array in place
    is not noticed: pass a new array, or ``clear()`` the cache.
    """

    def __init__(self, cuda, size=4):
        self.cuda = cuda
        self.size = size
        self.entries = []

    def get(self, array):
        if not isinstance(array, np.ndarray):
            return on_device(self.cuda, array)
        for host, copy in self.entries:
            if host is array:
                return copy
        copy = self.cuda.to_device(array)
        self.entries = [(array, copy)] + self.entries[:self.size - 1]
        return copy

    def clear(self):
        self.entries = []


class CudaEngine:
    name = "cuda"

    def __init__(self, sizes, acts, loss, dtype):
        self.k = load_kernels()
        self.sizes = tuple(int(s) for s in sizes)
        self.acts = tuple(int(a) for a in acts)
        self.loss_id = int(loss)
        self.dtype = np.dtype(dtype)
        self.n_params = sum((a + 1) * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.no_dropout = self.dropout((), 0)
        self.data = DeviceData(self.k.cuda)
        self.d_sizes = self.k.cuda.to_device(np.array(self.sizes, np.int64))
        self.d_acts = self.k.cuda.to_device(np.array(self.acts, np.int64))
        self._workspace = None

    # ------------------------------------------------------------ helpers
    def layers(self, vector):
        """Per-layer (n_in + 1) x n_out ``[W; b]`` views of a device vector."""
        views, offset = [], 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            size = (n_in + 1) * n_out
            views.append(vector[offset:offset + size].reshape(n_in + 1, n_out))
            offset += size
        return views

    def dropout(self, rates, seed):
        """Rates in the dtype, as the CPU's training run keeps them (so the masks
        and the scales 1 / (1 - rate) are the CPU's to the last bit)."""
        dtype = self.dtype.type
        rates = tuple(dtype(r) for r in rates) + (dtype(0),) * (len(self.acts) - len(rates))
        return Dropout(rates, tuple(dtype(1.0 / (1.0 - float(r))) for r in rates), int(seed))

    def workspace(self, rows):
        """Work buffers for at least ``rows`` rows (grown, never shrunk)."""
        if self._workspace is None or self._workspace.capacity < rows:
            self._workspace = Workspace(self, rows)
        return self._workspace

    def _device(self, array):
        return on_device(self.k.cuda, array)

    # ---------------------------------------------------------- contract
    def forward(self, params, X):
        d_X = self._device(X)
        layers = self.layers(self._device(params))
        out = np.empty((X.shape[0], self.sizes[-1]), self.dtype)
        for start, rows in self._chunks(X.shape[0]):
            ws = self.workspace(rows)
            ws.forward(layers, d_X[start:start + rows], rows, self.no_dropout, 0)
            if self.acts[-1] == SOFTMAX:
                self.k.softmax_rows[_blocks(rows, self.k.LINE, 1024), self.k.LINE](
                    ws.Z[-1], ws.A[-1], rows)
            ws.A[-1][:rows].copy_to_host(out[start:start + rows])
        return out

    def loss(self, params, X, Y):
        return self.evaluate(self._device(params), self._device(X), self._device(Y))[0]

    def loss_and_grad(self, params, X, Y):
        d_grad = self.k.cuda.device_array(self.n_params, self.dtype)
        value = self.evaluate(self._device(params), self._device(X), self._device(Y), d_grad)[0]
        return value, d_grad.copy_to_host()

    def evaluate(self, d_params, d_X, d_Y, d_grad=None, outputs=None):
        """(mean loss, outputs) of device parameters on device data, chunk by chunk.

        With ``d_grad``, also the gradient of the mean loss, accumulated over
        the chunks; with ``outputs`` (a host array), the output activations.
        """
        k = self.k
        n = d_X.shape[0]
        chunks = list(self._chunks(n))
        layers = self.layers(d_params)
        grads = None if d_grad is None else self.layers(d_grad)
        sums = k.cuda.device_array(len(chunks), self.dtype)
        corrects = k.cuda.device_array(len(chunks), np.int32)
        flag = k.cuda.device_array(1, np.int32)
        scale = self.dtype.type(1.0 / denominator(n, self.sizes[-1], self.loss_id))
        for slot, (start, rows) in enumerate(chunks):
            ws = self.workspace(rows)
            X_rows, Y_rows = d_X[start:start + rows], d_Y[start:start + rows]
            ws.forward(layers, X_rows, rows, self.no_dropout, 0)
            ws.loss_rows(Y_rows, rows, d_grad is not None, scale, sums, corrects, slot, flag)
            if grads is not None:
                ws.backward(layers, grads, X_rows, rows, slot > 0, self.no_dropout, 0)
            if outputs is not None:
                ws.A[-1][:rows].copy_to_host(outputs[start:start + rows])
        total = sums.copy_to_host().astype(np.float64).sum()
        return float(total / denominator(n, self.sizes[-1], self.loss_id)), outputs

    def population_loss(self, thetas, X, Y):
        """Mean loss of every row of ``thetas``; members run along the grid's z axis.

        ``thetas``, X and Y may be host arrays (X and Y are cached, see
        ``DeviceData``) or device arrays, e.g. candidates sampled on the device.
        """
        k = self.k
        d_thetas, d_X, d_Y = self._device(thetas), self.data.get(X), self.data.get(Y)
        P, n = d_thetas.shape[0], d_X.shape[0]
        denom = denominator(n, self.sizes[-1], self.loss_id)
        width = max(self.sizes[1:])
        chunk = min(k.POPULATION_ROWS, n,
                    POPULATION_SHARED_BYTES // (2 * width * self.dtype.itemsize))
        if chunk == 0:  # too wide for shared memory: one member at a time
            return np.array([self.evaluate(d_thetas[p], d_X, d_Y)[0] for p in range(P)])
        n_chunks = -(-n // chunk)
        partials = k.cuda.device_array((P, n_chunks), self.dtype)
        totals = k.cuda.device_array(P, self.dtype)
        shared = 2 * chunk * width * self.dtype.itemsize
        for first in range(0, P, MAX_GRID_Z):
            members = min(MAX_GRID_Z, P - first)
            k.population_chunks[(n_chunks, 1, members), k.LINE, 0, shared](
                d_thetas[first:first + members], self.d_sizes, self.d_acts, self.loss_id,
                d_X.reshape(d_X.size), d_Y, chunk, width, partials[first:first + members])
        k.member_totals[_blocks(P, k.LINE, 1024), k.LINE](partials, totals)
        return totals.copy_to_host().astype(np.float64) / denom

    def trainer(self, params, X, Y, batch_size, optimizer, dropout, seed):
        return CudaEpochRunner(self, params, X, Y, batch_size, optimizer, dropout, seed)

    @staticmethod
    def _chunks(n):
        for start in range(0, n, CHUNK_ROWS):
            yield start, min(CHUNK_ROWS, n - start)


class Workspace:
    """Per-layer device buffers Z, A, D for up to ``capacity`` rows, and the
    launches of a forward pass, the loss rows and a backward pass through them."""

    def __init__(self, engine, capacity):
        cuda = engine.k.cuda
        self.engine, self.k, self.capacity = engine, engine.k, capacity
        widths = engine.sizes[1:]
        self.Z = [cuda.device_array((capacity, w), engine.dtype) for w in widths]
        self.A = [cuda.device_array((capacity, w), engine.dtype) for w in widths]
        self.D = [cuda.device_array((capacity, w), engine.dtype) for w in widths]

    def grid(self, m, n):
        """(blocks, threads) of a product with an m x n output."""
        k = self.k
        return (-(-n // k.TILE), -(-m // k.TILE)), (k.THREADS, k.THREADS)

    def forward(self, layers, X, rows, dropout, step):
        A_in = X
        for l, WB in enumerate(layers):
            self.k.forward_layer[self.grid(rows, WB.shape[1])](
                A_in, WB, self.Z[l], self.A[l], rows, self.engine.acts[l], dropout.rates[l],
                dropout.scales[l], dropout.seed, step, l)
            A_in = self.A[l]

    def loss_rows(self, Y, rows, with_delta, scale, sums, corrects, slot, flag):
        self.k.loss_rows[1, self.k.LINE](
            self.Z[-1], self.A[-1], Y, rows, self.engine.loss_id, self.engine.acts[-1],
            with_delta, scale, self.D[-1], sums, corrects, slot, flag)

    def backward(self, layers, grads, X, rows, accumulate, dropout, step):
        acts = self.engine.acts
        for l in range(len(layers) - 1, -1, -1):
            A_in = X if l == 0 else self.A[l - 1]
            self.k.weight_grad[self.grid(*grads[l].shape)](A_in, self.D[l], grads[l], rows,
                                                           accumulate)
            if l > 0:
                self.k.delta_back[self.grid(rows, A_in.shape[1])](
                    self.D[l], layers[l], self.Z[l - 1], A_in, self.D[l - 1], rows, acts[l - 1],
                    dropout.rates[l - 1], dropout.scales[l - 1], dropout.seed, step, l - 1)


class CudaEpochRunner:
    """Everything one ``fit`` needs, on the device; the contract of ``CpuEpochRunner``.

    ``params`` is the network's host vector: ``sync`` copies the device
    parameters into it.
    """

    def __init__(self, engine, params, X, Y, batch_size, optimizer, dropout, seed):
        cuda, k = engine.k.cuda, engine.k
        self.engine, self.k, self.params = engine, k, params
        self.dtype = params.dtype.type
        self.d_params = cuda.to_device(params)
        self.d_grad = cuda.device_array_like(params)
        self.d_m = cuda.to_device(np.zeros_like(params))
        self.d_v = cuda.to_device(np.zeros_like(params))
        self.t = 0
        self.kind = optimizer.kind
        self.hyper = optimizer.hyper(params.dtype)
        self.d_hyper = cuda.to_device(self.hyper)
        self.layers, self.grads = engine.layers(self.d_params), engine.layers(self.d_grad)
        self.dropout = engine.dropout(dropout, seed)
        self.workspace = Workspace(engine, min(batch_size, max(X.shape[0], 1)))
        self.diverged = cuda.device_array(1, np.int32)
        self.partials = cuda.device_array(_blocks(params.size, k.LINE, k.REDUCE_BLOCKS),
                                          params.dtype)
        self.squares = cuda.to_device(np.zeros(1, params.dtype))
        self.validation = DeviceData(cuda, size=2)
        self.step_sum = cuda.device_array(1, params.dtype)
        self.step_correct = cuda.device_array(1, np.int32)
        self.batches = []
        if X.shape[0]:  # a StepTrainer's runner gets no data set
            self._epoch_buffers(X, Y, batch_size)

    def _epoch_buffers(self, X, Y, batch_size):
        """The data, its shuffled copy cut into batches, and a slot per batch for its results."""
        cuda, n = self.k.cuda, X.shape[0]
        self.X, self.Y = cuda.to_device(X), cuda.to_device(Y)
        self.X_order, self.Y_order = cuda.device_array_like(X), cuda.device_array_like(Y)
        self.batches = [(min(batch_size, n - s), self.X_order[s:s + batch_size],
                         self.Y_order[s:s + batch_size]) for s in range(0, n, batch_size)]
        self.batch_rows = np.array([rows for rows, _, _ in self.batches])
        self.sums = cuda.device_array(len(self.batches), X.dtype)
        self.corrects = cuda.device_array(len(self.batches), np.int32)

    def run_epoch(self, order, lr):
        """Train on the rows in ``order``; return (mean loss, correct predictions, finite)."""
        k = self.k
        d_order = k.cuda.to_device(np.ascontiguousarray(order, np.int64))
        for source, target in ((self.X, self.X_order), (self.Y, self.Y_order)):
            k.gather_rows[_blocks(target.size, k.LINE, k.GRID_BLOCKS), k.LINE](
                source, d_order, target)
        self.diverged.copy_to_device(np.zeros(1, np.int32))
        lr = self.dtype(lr)
        for b, (rows, X_rows, Y_rows) in enumerate(self.batches):
            self._train(X_rows, Y_rows, rows, lr, self.t + b, self.sums, self.corrects, b)
        return self._epoch_result(self.sums.copy_to_host(), self.corrects.copy_to_host())

    def step(self, X, Y, lr):
        """One step on the batch X, Y (host or device arrays); returns its mean loss.

        A loss that is not finite updates nothing. The loss is the one value
        copied back per step.
        """
        cuda, rows = self.k.cuda, X.shape[0]
        if rows > self.workspace.capacity:  # a larger batch than announced
            self.workspace = Workspace(self.engine, rows)
        self.diverged.copy_to_device(np.zeros(1, np.int32))
        self._train(on_device(cuda, X), on_device(cuda, Y), rows, self.dtype(lr), self.t,
                    self.step_sum, self.step_correct, 0)
        e = self.engine
        loss = float(self.step_sum.copy_to_host()[0]) / denominator(rows, e.sizes[-1], e.loss_id)
        self.t += math.isfinite(loss)
        return loss

    def _train(self, X, Y, rows, lr, step, sums, corrects, slot):
        """Forward, loss, backward and update on one batch, the (step + 1)-th of the run;
        the batch's summed loss and correct predictions go to sums[slot], corrects[slot]."""
        e, ws = self.engine, self.workspace
        scale = self.dtype(1.0 / denominator(rows, e.sizes[-1], e.loss_id))
        ws.forward(self.layers, X, rows, self.dropout, step)
        ws.loss_rows(Y, rows, True, scale, sums, corrects, slot, self.diverged)
        ws.backward(self.layers, self.grads, X, rows, False, self.dropout, step)
        self._update(lr, step + 1)

    def _update(self, lr, t):
        k = self.k
        if self.hyper[H_CLIP_NORM] > 0:
            k.block_sums[self.partials.size, k.LINE](self.d_grad, True, self.partials)
            k.block_sums[1, k.LINE](self.partials, False, self.squares)
        step_size, sqrt_bias2 = lr, self.dtype(1)
        if self.kind == ADAM:
            step_size, sqrt_bias2 = (self.dtype(x) for x in adam_corrections(
                lr, self.hyper[H_BETA1], self.hyper[H_BETA2], t))
        k.optimizer_update[_blocks(self.d_params.size, k.LINE, k.GRID_BLOCKS), k.LINE](
            self.d_params, self.d_grad, self.d_m, self.d_v, self.kind, self.d_hyper, lr,
            step_size, sqrt_bias2, self.squares, self.diverged)

    def _epoch_result(self, sums, corrects):
        """As the CPU epoch: the loss of the batches trained before the first
        non-finite one, weighted by batch size, and the steps actually taken."""
        e = self.engine
        denoms = np.array([denominator(int(rows), e.sizes[-1], e.loss_id)
                           for rows in self.batch_rows])
        losses = sums.astype(np.float64) / denoms
        finite = np.isfinite(losses)
        done = len(losses) if finite.all() else int(np.argmin(finite))
        self.t += done
        total = float(np.dot(losses[:done], self.batch_rows[:done]))
        seen = int(self.batch_rows[:done].sum())
        return total / max(seen, 1), int(corrects[:done].sum()), bool(finite.all())

    def snapshot(self):
        copy = self.k.cuda.device_array_like(self.d_params)
        copy.copy_to_device(self.d_params)
        return copy

    def restore(self, snapshot):
        self.d_params.copy_to_device(snapshot)

    def evaluate(self, X, Y):
        """(mean loss, outputs) of the current parameters on X, Y."""
        outputs = np.empty((X.shape[0], self.engine.sizes[-1]), self.engine.dtype)
        return self.engine.evaluate(self.d_params, self.validation.get(X),
                                    self.validation.get(Y), outputs=outputs)

    def sync(self):
        """Copy the device parameters into the network's host vector."""
        self.d_params.copy_to_host(self.params)
