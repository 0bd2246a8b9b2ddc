"""The CPU engine: owns the work buffers and calls the compiled kernels.

An engine knows a topology (``sizes``, activation ids, loss id) and works on
validated, C-contiguous arrays of the network's dtype. It is the contract a
backend fulfils; ``Network`` never calls a kernel directly.
"""
import numpy as np

from fastnet.optim import OptState

from fastnet.backends import cpu

#: rows per chunk when a whole data set is forwarded (bounds the work buffers)
CHUNK_ROWS = 256
#: rows per chunk in the population kernel: the stacked first-layer product of a
#: chunk (rows x P*h) and each member's buffers should stay in cache
POPULATION_CHUNK_ROWS = 128


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
        return float(cpu.loss_all(params, self.sizes, self.acts, self.loss_id, X, Y, rows,
                                  *self._buffers(rows, 2)))

    def loss_and_grad(self, params, X, Y):
        rows = min(CHUNK_ROWS, X.shape[0])
        grad = np.empty_like(params)
        value = cpu.loss_and_grad_all(params, self.sizes, self.acts, self.loss_id, X, Y, rows,
                                      *self._buffers(rows, 3), grad, np.empty_like(params))
        return float(value), grad

    def population_loss(self, thetas, X, Y):
        rows = min(POPULATION_CHUNK_ROWS, X.shape[0])
        P, h = thetas.shape[0], int(self.sizes[1])
        W_stack = np.empty((X.shape[1], P * h), self.dtype)
        Z_stack = np.empty(rows * P * h, self.dtype)
        Z = np.empty((P, rows * self.units), self.dtype)
        A = np.empty((P, rows * self.units), self.dtype)
        return cpu.population_loss(thetas, self.sizes, self.acts, self.loss_id, X, Y, rows,
                                   W_stack, Z_stack, Z, A)

    def trainer(self, params, X, Y, batch_size, optimizer, dropout, seed):
        return CpuEpochRunner(self, params, X, Y, batch_size, optimizer, dropout, seed)


class CpuEpochRunner:
    """Everything one ``fit`` needs, allocated once: a whole epoch is one call.

    The runner contract (a backend's runner may keep the parameters on its
    device): ``run_epoch``, ``snapshot`` / ``restore`` of the parameters,
    ``evaluate`` on held-out data with the current parameters, and ``sync``,
    which makes ``params`` (the network's host vector) current.
    """

    def __init__(self, engine, params, X, Y, batch_size, optimizer, dropout, seed):
        self.engine = engine
        self.params, self.X, self.Y = params, X, Y
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.state = optimizer.init(params)
        self.hyper = optimizer.hyper(params.dtype)
        self.dropout = np.zeros(len(engine.sizes), np.float64)
        self.dropout[:len(dropout)] = dropout
        self.seed = seed
        self.grad = np.empty_like(params)
        self._allocate(batch_size)

    def _allocate(self, rows):
        """Work buffers for batches of up to ``rows`` samples."""
        self.capacity = rows
        self.Xb = np.empty(rows * self.engine.sizes[0], self.params.dtype)
        self.Yb = np.empty(rows * self.engine.sizes[-1], self.params.dtype)
        self.Z, self.A, self.D = self.engine._buffers(rows, 3)

    def run_epoch(self, order, lr):
        """Train on the rows in ``order``; return (mean loss, correct predictions, finite)."""
        m, v, t = self.state
        e = self.engine
        loss, correct, t, finite = cpu.train_epoch(
            self.params, self.grad, m, v, t, self.optimizer.kind, self.hyper,
            self.params.dtype.type(lr), self.X, self.Y, order, self.batch_size,
            e.sizes, e.acts, e.loss_id, self.dropout, self.seed,
            self.Xb, self.Yb, self.Z, self.A, self.D)
        self.state = self.state._replace(t=int(t))
        return float(loss), int(correct), bool(finite)

    def step(self, X, Y, lr):
        """One step on the batch X, Y (validated arrays); returns its loss.

        A loss that is not finite updates nothing.
        """
        if X.shape[0] > self.capacity:
            self._allocate(X.shape[0])
        m, v, t = self.state
        e = self.engine
        loss = cpu.train_step(self.params, self.grad, m, v, t, self.optimizer.kind, self.hyper,
                              self.params.dtype.type(lr), X, Y, e.sizes, e.acts, e.loss_id,
                              self.dropout, self.seed, self.Z, self.A, self.D)
        if loss == loss and abs(loss) != np.inf:
            self.state = OptState(m, v, t + 1)
        return loss

    def snapshot(self):
        return self.params.copy()

    def restore(self, snapshot):
        self.params[:] = snapshot

    def evaluate(self, X, Y):
        """(mean loss, outputs) of the current parameters on X, Y."""
        return self.engine.loss(self.params, X, Y), self.engine.forward(self.params, X)

    def sync(self):
        """The CPU trains ``params`` in place: nothing to copy."""
