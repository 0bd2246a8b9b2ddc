"""The CPU engine: owns the work buffers and calls the compiled kernels.

An engine knows a topology (``sizes``, activation ids, loss id) and works on
validated, C-contiguous arrays of the network's dtype. It is the contract a
backend fulfils; ``Network`` never calls a kernel directly.
"""
import math

import numba
import numpy as np

from fastnet import updates
from fastnet.backends import blas, compile_helper, cpu

compile_helper.install()   # a first fit compiles its kernels on two cores

#: rows per chunk when a whole data set is forwarded (bounds the work buffers)
CHUNK_ROWS = 256
#: at most this many rows per chunk in the population kernel (the stacked
#: first-layer product of a chunk is rows x P*h)
POPULATION_CHUNK_ROWS = 192


#: Below this many multiply-adds per call, populations are evaluated serially:
#: entering a parallel region costs ~15 us even on one thread, and on a busy
#: machine far more (GNU OpenMP's idle threads spin before they sleep, and
#: steal the core from the thread that has the work: measured 2,000 us
#: instead of 20 us for a population of 12 on XOR under load).
PARALLEL_MIN_WORK = 1_000_000


#: A step shares its rows among Numba's threads (``cpu.parallel_batch``)
#: when its forward pass makes this many multiply-adds (rows x multiply-adds
#: per row) or more, and the network has no more parameters than the
#: second. With less work, starting the threads costs more than they save
#: (64-128-128-10 on 16 rows: 0.91x); with more parameters, summing the
#: parts' gradients does, and BLAS' own threads use the cores well
#: (64-256-256-10, 85,002 parameters, on 64 rows: 0.91x; 784-256-128-10:
#: 0.83-1.00x). Gains, measured with ``benchmarks/parallel_step.py`` on 2
#: cores: 1.07-1.38x for 64-128-128-10 on 32 to 512 rows, 1.55x for
#: 64-32-10 on 256.
PARALLEL_STEP_MIN_WORK = 500_000
PARALLEL_STEP_MAX_PARAMS = 50_000

_blas = None


def one_blas_thread():
    """BLAS limited to one thread while Numba's threads run: two thread pools
    spinning on the same cores stall each other (measured on 2 cores: 400
    population evaluations per second instead of 2,300)."""
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401 -- the BLAS Numba's np.dot calls
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def balanced_chunks(n_rows, threads):
    """How many chunks the population kernel cuts ``n_rows`` into: a multiple
    of ``threads`` (every thread gets the same work; 29 chunks of 64 digits
    rows on 2 threads left one thread idle for a chunk: measured 8,600
    evaluations/s, against 9,400 for 10 chunks of 180), each chunk of at most
    POPULATION_CHUNK_ROWS rows, and no more chunks than rows."""
    per_round = threads * POPULATION_CHUNK_ROWS
    return min(threads * -(-n_rows // per_round), n_rows)


def parallel_parts(n_params, dropout):
    """Parts a step's rows can be shared among (``cpu.parallel_batch``):
    Numba's threads, or 1 (no sharing) on one thread, for a network of more
    than PARALLEL_STEP_MAX_PARAMS parameters, with dropout, or where BLAS'
    thread count cannot be set (not OpenBLAS)."""
    if n_params > PARALLEL_STEP_MAX_PARAMS or any(rate > 0 for rate in dropout) \
            or blas.thread_count_functions() is None:
        return 1
    return numba.get_num_threads()


class CpuEngine:
    name = "cpu"

    def __init__(self, sizes, acts, loss, dtype):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.acts = np.asarray(acts, dtype=np.int64)
        self.loss_id = int(loss)
        self.dtype = np.dtype(dtype)
        self.units = int(self.sizes[1:].sum())

    def _buffers(self, rows, count):
        return [np.empty(rows * self.units, self.dtype) for _ in range(count)]

    def forward(self, params, X):
        out = np.empty((X.shape[0], self.sizes[-1]), self.dtype)
        rows = min(CHUNK_ROWS, X.shape[0])
        cpu.forward_all(params, self.sizes, self.acts, X, out, rows, *self._buffers(rows, 2))
        return out

    def loss(self, params, X, Y):
        rows = min(CHUNK_ROWS, X.shape[0])
        losses = cpu.population_loss_serial(params[np.newaxis], self.sizes, self.acts,
                                            self.loss_id, X, Y, rows, *self._buffers(rows, 2))
        return float(losses[0])

    def loss_and_grad(self, params, X, Y):
        rows = min(CHUNK_ROWS, X.shape[0])
        grad = np.empty_like(params)
        value = cpu.loss_and_grad_all(params, self.sizes, self.acts, self.loss_id, X, Y, rows,
                                      *self._buffers(rows, 3), grad, np.empty_like(params))
        return float(value), grad

    def population_loss(self, thetas, X, Y):
        multiply_adds = thetas.shape[0] * X.shape[0] * int(
            (self.sizes[:-1] * self.sizes[1:]).sum())
        if multiply_adds < PARALLEL_MIN_WORK:
            rows = min(CHUNK_ROWS, X.shape[0])
            return cpu.population_loss_serial(thetas, self.sizes, self.acts, self.loss_id, X,
                                              Y, rows, *self._buffers(rows, 2))
        n_chunks = balanced_chunks(X.shape[0], numba.get_num_threads())
        rows = -(-X.shape[0] // n_chunks)  # the longest chunk
        P, h = thetas.shape[0], int(self.sizes[1])
        threads = numba.config.NUMBA_NUM_THREADS  # thread ids run below this
        W_stack = np.empty((X.shape[1], P * h), self.dtype)
        Z_stack = np.empty((threads, rows * P * h), self.dtype)
        Z = np.empty((threads, rows * self.units), self.dtype)
        A = np.empty((threads, rows * self.units), self.dtype)
        with one_blas_thread():
            return cpu.population_loss(thetas, self.sizes, self.acts, self.loss_id, X, Y,
                                       n_chunks, W_stack, Z_stack, Z, A)

    def trainer(self, params, X, Y, batch_size, optimizer, dropout, seed):
        return CpuEpochRunner(self, params, X, Y, batch_size, optimizer, dropout, seed)


class CpuEpochRunner:
    """Everything one ``fit`` needs, allocated once: a whole epoch is one call.

    The run is packed into four arrays — ``params``, ``work`` (gradient,
    optimiser moments, work buffers), ``layout`` (topology, optimiser kind,
    seed, step count) and ``hyper`` (optimiser settings, learning rate,
    dropout rates) — so that a step is one cheap compiled call.

    The runner contract (a backend's runner may keep the parameters on its
    device): ``run_epoch``, ``step``, ``snapshot`` / ``restore`` of the
    parameters, ``evaluate`` on held-out data with the current parameters,
    and ``sync``, which makes ``params`` (the network's host vector) current.
    ``state`` / ``load_state`` (CPU only, for now) copy out and put back
    everything a checkpoint needs to resume the run bit for bit.
    """

    def __init__(self, engine, params, X, Y, batch_size, optimizer, dropout, seed):
        self.engine = engine
        self.params, self.X, self.Y = params, X, Y
        self.optimizer = optimizer
        sizes, acts = engine.sizes, engine.acts
        self.layout = np.concatenate([[len(acts), optimizer.kind, engine.loss_id, seed, 0, 0],
                                      sizes, acts]).astype(np.int64)
        self.hyper = np.concatenate([optimizer.hyper(params.dtype),
                                     np.zeros(len(acts), params.dtype)]).astype(params.dtype)
        self.hyper[updates.N_HYPER:updates.N_HYPER + len(dropout)] = dropout
        self.parts = parallel_parts(params.size, dropout)
        #: the fewest rows whose step runs in parallel (one comparison per step)
        self.parallel_rows = math.inf
        if self.parts > 1:
            per_row = int((sizes[:-1] * sizes[1:]).sum())
            self.parallel_rows = max(self.parts, -(-PARALLEL_STEP_MIN_WORK // per_row))
        self.blas_threads = np.array(blas.thread_count_functions() or (0, 0), np.int64)
        # An epoch never has a batch larger than the data (StepTrainer gives no data).
        self._allocate(min(batch_size, len(X)) if len(X) else batch_size)

    def _work_length(self, batch):
        """gradient, moments m and v, then Z, A, D and the gathered batch X, Y."""
        sizes = self.engine.sizes
        return 3 * self.params.size + batch * (3 * self.engine.units + sizes[0] + sizes[-1])

    def _allocate(self, batch):
        """The work vector for batches of up to ``batch`` samples (zeroed moments)."""
        self.layout[cpu.S_BATCH] = self.capacity = batch
        self.work = np.zeros(self._work_length(batch), self.params.dtype)
        self.parts_work = None
        if self.parts > 1:
            length = cpu.part_length(self.params.size, self.engine.units, -(-batch // self.parts))
            self.parts_work = np.empty((self.parts, length), self.params.dtype)

    def _grow(self, rows):
        """Room for a batch of ``rows`` samples, keeping the optimiser's moments."""
        if rows > self.capacity:
            moments = self.work[self.params.size:3 * self.params.size].copy()
            self._allocate(rows)
            self.work[self.params.size:3 * self.params.size] = moments

    def run_epoch(self, order, lr):
        """Train on the rows in ``order``; return (mean loss, correct predictions, finite)."""
        self.hyper[updates.H_LR] = lr
        if self.capacity >= self.parallel_rows:  # the epoch's batches, all but the last
            loss, correct, finite = cpu.fit_epoch_parallel(
                self.params, self.work, self.layout, self.hyper, self.X, self.Y, order,
                self.parts_work, self.blas_threads)
        else:
            loss, correct, finite = cpu.fit_epoch(self.params, self.work, self.layout,
                                                  self.hyper, self.X, self.Y, order)
        return float(loss), int(correct), bool(finite)

    def step(self, X, Y, lr):
        """One step on the batch X, Y (validated arrays); returns its loss.

        A loss that is not finite updates nothing.
        """
        rows = X.shape[0]
        if rows > self.capacity:
            self._grow(rows)
        self.hyper[updates.H_LR] = lr
        if rows >= self.parallel_rows:
            return cpu.fit_step_parallel(self.params, self.work, self.layout, self.hyper, X, Y,
                                         self.parts_work, self.blas_threads)
        return cpu.fit_step(self.params, self.work, self.layout, self.hyper, X, Y)

    def state(self):
        """Copies of what a resumed run needs: parameters, moments m and v, the
        step count (Adam's bias corrections, the dropout masks) and the seed."""
        n = self.params.size
        return {"params": self.params.copy(), "m": self.work[n:2 * n].copy(),
                "v": self.work[2 * n:3 * n].copy(), "step": int(self.layout[cpu.S_STEP]),
                "seed": int(self.layout[cpu.S_SEED])}

    def load_state(self, state):
        """Put back a ``state()``; arrays must match the parameters' shape."""
        n = self.params.size
        for name in ("params", "m", "v"):
            array = np.asarray(state[name])
            if array.shape != (n,) or array.dtype.kind != "f":
                raise ValueError(f"state[{name!r}] must be a float vector of shape ({n},), "
                                 f"got {array.dtype} {array.shape}")
        for name in ("step", "seed"):
            value = state[name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= value < 2 ** 63:
                raise ValueError(f"state[{name!r}] must be an integer in [0, 2**63), "
                                 f"got {value!r}")
        self.params[:] = state["params"]
        self.work[n:2 * n] = state["m"]
        self.work[2 * n:3 * n] = state["v"]
        self.layout[cpu.S_STEP] = state["step"]
        self.layout[cpu.S_SEED] = state["seed"]

    def snapshot(self):
        return self.params.copy()

    def restore(self, snapshot):
        self.params[:] = snapshot

    def evaluate(self, X, Y):
        """(mean loss, outputs) of the current parameters on X, Y."""
        return self.engine.loss(self.params, X, Y), self.engine.forward(self.params, X)

    def sync(self):
        """The CPU trains ``params`` in place: nothing to copy."""
