"""The CPU engine: owns the work buffers and calls the compiled kernels.

An engine knows a topology (``sizes``, activation ids, loss id) and works on
validated, C-contiguous arrays of the network's dtype. It is the contract a
backend fulfils; ``Network`` never calls a kernel directly.
"""
import numpy as np

from fastnet.backends import cpu

#: rows per chunk when a whole data set is forwarded (bounds the work buffers)
CHUNK_ROWS = 256
#: rows per chunk in the population kernel: small, so each member's buffers stay in cache
POPULATION_CHUNK_ROWS = 64


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
        P = thetas.shape[0]
        Z = np.empty((P, rows * self.units), self.dtype)
        A = np.empty((P, rows * self.units), self.dtype)
        return cpu.population_loss(thetas, self.sizes, self.acts, self.loss_id, X, Y, rows, Z, A)

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
        rows = min(batch_size, X.shape[0])
        self.grad = np.empty_like(params)
        self.Xb = np.empty(rows * X.shape[1], params.dtype)
        self.Yb = np.empty(rows * Y.shape[1], params.dtype)
        self.Z, self.A, self.D = engine._buffers(rows, 3)

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

    def snapshot(self):
        return self.params.copy()

    def restore(self, snapshot):
        self.params[:] = snapshot

    def evaluate(self, X, Y):
        """(mean loss, outputs) of the current parameters on X, Y."""
        return self.engine.loss(self.params, X, Y), self.engine.forward(self.params, X)

    def sync(self):
        """The CPU trains ``params`` in place: nothing to copy."""
