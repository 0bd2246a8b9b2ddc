"""CMA-ES with a full covariance matrix, and its separable (diagonal) variant.

N. Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772 (2016).
Settings follow its Table 1 (including the negative "active" weights) and
the update follows its Appendix A summary; equation numbers below are those
of arXiv version 2. Symbols as in the tutorial: ``mean`` is m, ``sigma`` is sigma,
``C = B diag(D**2) B^T``, ``pc``/``ps`` are p_c/p_sigma.

R. Ros and N. Hansen, "A Simple Modification in CMA-ES Achieving Linear Time
and Space Complexity", PPSN X (2008): sep-CMA-ES keeps only diag(C) and
multiplies the covariance learning rates by (n + 2) / 3.
"""

import contextlib
import math

import numpy as np
from scipy.linalg.blas import dsyrk

from fastnet.engine import one_blas_thread

from comparisons.trainers.base import Trainer, check_real, standard_normal


def expected_norm(n):
    """E||N(0, I)|| in dimension n, the approximation under eq. (44)."""
    return math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n))


class CMAParameters:
    """The fixed strategy parameters of Table 1 for dimension n and population lam."""

    def __init__(self, n, lam, rate_factor=1.0):
        self.n, self.lam = n, lam
        self.mu = lam // 2
        # Table 1, eq. (49): preliminary weights w'_i
        w_prime = math.log((lam + 1) / 2) - np.log(np.arange(1, lam + 1))
        positive, negative = w_prime[: self.mu], w_prime[self.mu:]
        # Table 1: variance effective selection mass, mu_eff and mu_eff^-
        self.mueff = positive.sum() ** 2 / (positive ** 2).sum()
        mueff_minus = negative.sum() ** 2 / (negative ** 2).sum()
        # Table 1: cumulation and learning rates (sep-CMA-ES: rates times (n + 2) / 3)
        alpha_cov = 2.0
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.c1 = min(1.0, rate_factor * alpha_cov / ((n + 1.3) ** 2 + self.mueff))
        self.cmu = min(
            1 - self.c1,
            rate_factor * alpha_cov * (0.25 + self.mueff + 1 / self.mueff - 2)
            / ((n + 2) ** 2 + alpha_cov * self.mueff / 2),
        )
        # Table 1, eq. (50)-(53): positive weights sum to one, negative ones are bounded
        alpha_mu = 1 + self.c1 / self.cmu
        alpha_mueff = 1 + 2 * mueff_minus / (self.mueff + 2)
        alpha_posdef = (1 - self.c1 - self.cmu) / (n * self.cmu)
        self.weights = np.concatenate([
            positive / positive.sum(),
            min(alpha_mu, alpha_mueff, alpha_posdef) * negative / -negative.sum(),
        ])
        # Table 1: mean learning rate c_m and step-size damping d_sigma
        self.cm = 1.0
        self.damps = 1 + 2 * max(0.0, math.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.chiN = expected_norm(n)
        # Lazy decomposition: C moves by about (c1 + cmu) per generation, so
        # B and D are refreshed every lam / (c1 + cmu) / n / 10 generations.
        self.eigen_gap = max(1, int(lam / (self.c1 + self.cmu) / n / 10))


#: from this D on, full CMA-ES runs its per-generation products (sampling, the
#: covariance update) on one BLAS thread: with lambda ~ 3 ln D rows they are
#: too thin for a second thread to pay, and waking it costs about a scheduler
#: tick per call, far more on a busy machine (measured on 2 cores, ask + tell:
#: 8 ms with two threads against 0.5 ms with one at D = 310, 8.0 against 3.6 ms
#: at D = 985; at D = 2,410 22 against 21 ms with a core free, 92 against 31 ms
#: with another process on it). Below 200 OpenBLAS uses one thread by itself.
SERIAL_BLAS_MIN_DIM = 200
#: from this D on, the O(D^3) eigendecomposition keeps every BLAS thread (at
#: D = 2,410: 1.4 s with two threads against 2.7 s with one while a core is
#: free; 8.7 against 3.8 s when other processes hold both cores); so does the
#: deferred update of C, one large product every few generations
PARALLEL_EIGH_MIN_DIM = 2000
#: rank-one terms of C held back, then added in one symmetric rank-k product:
#: a BLAS dsyrk over C costs about as much for 28 rows as for 256 (memory,
#: not arithmetic: at D = 2,410 0.196 ms per row with 14 rows, 0.116 ms with
#: 256 on one thread, 0.069 ms on two)
PENDING_ROWS = 256
#: a smaller decay of C is applied at once, not carried in the scale of the
#: pending rows: it occurs only for large populations in small dimensions,
#: where cmu reaches 1 - c1 and the decay may be 0
MIN_DEFERRED_DECAY = 0.5


class CMAES(Trainer):
    """(mu/mu_W, lambda)-CMA-ES with rank-one, rank-mu and active updates."""

    name = "cmaes"
    #: C is a D x D matrix (sep-CMA-ES: a vector)
    full_covariance = True
    defaults = {"tolfun": 1e-12, "tolx": 1e-11, "max_condition": 1e14}
    state_names = ("mean", "sigma", "B", "D", "pc", "ps_eigen", "Z", "Y", "eigen_generation",
                   "best_history", "last_worst", "_C", "_pending", "_n_positive", "_n_negative",
                   "_pending_scale")
    min_popsize = 2

    @classmethod
    def default_popsize(cls, dim):
        # Table 1: lambda = 4 + floor(3 ln n)
        return 4 + int(3 * math.log(dim))

    @staticmethod
    def rate_factor(n):
        """Factor on the covariance learning rates c1 and cmu."""
        return 1.0

    def _check_options(self, options):
        options["tolfun"] = check_real("tolfun", options["tolfun"], 0.0)
        options["tolx"] = check_real("tolx", options["tolx"], 0.0)
        options["max_condition"] = check_real("max_condition", options["max_condition"], 1.0,
                                              low_open=True)
        return options

    def _setup(self):
        n = self.dim
        self.params = CMAParameters(n, self.popsize, self.rate_factor(n))
        self.history_length = 10 + math.ceil(30 * n / self.popsize)
        self.mean = self.x0.copy()
        self.sigma = self.sigma0
        self.pc = np.zeros(n)
        self.ps_eigen = np.zeros(n)
        self.Z = self.Y = None
        self.eigen_generation = 0
        self.best_history = []
        self.last_worst = math.inf
        self._init_covariance()
        # Population-sized arrays reused every generation: fresh ones of this
        # size come from mmap and page-fault on first touch, which cost more
        # than the arithmetic at D = 2,410 (sep-CMA-ES: 620 faults and 2.6 ms
        # per generation against 0.9 ms without them). _work holds x from ask
        # to tell (the base class copies what it keeps of x before _tell), and
        # is scratch otherwise.
        self._z, self._y = np.empty((self.popsize, n)), np.empty((self.popsize, n))
        self._work = np.empty((self.popsize, n))

    def _init_covariance(self):
        n = self.dim
        self._pending = np.empty((max(PENDING_ROWS, 2 * (self.popsize + 1)), n))
        self.C, self.B, self.D = np.eye(n), np.eye(n), np.ones(n)

    # C is stored as _pending_scale * (_C + sum of the pending positive rows'
    # b b^T - sum of the negative rows' b b^T): positive rows fill _pending
    # from the top, negative ones from the bottom. Only lower triangles are
    # kept (np.linalg.eigh reads no other).
    @property
    def C(self):
        """The covariance matrix with the pending updates added (lower triangle;
        the upper one is stale); a new array."""
        C = self._C.copy()
        positive, negative = self._pending_rows()
        C += positive.T @ positive - negative.T @ negative
        return self._pending_scale * C

    @C.setter
    def C(self, C):
        self._C = C
        self._n_positive = self._n_negative = 0
        self._pending_scale = 1.0

    # p_sigma is kept as B^T p_sigma, its coordinates in C's eigenbasis: there
    # eq. (43) adds <z>_w instead of B <z>_w, which saves a D x D product with B
    # every generation (2.2 of 14.7 ms at D = 2,410); a new B rotates it instead,
    # once per decomposition. sep-CMA-ES has no B: there the two are the same.
    @property
    def ps(self):
        """p_sigma, the evolution path of the step size (a new array)."""
        return self.ps_eigen.copy() if self.B is None else self.B @ self.ps_eigen

    @ps.setter
    def ps(self, ps):
        self.ps_eigen = np.array(ps, dtype=float) if self.B is None else self.B.T @ ps

    def _pending_rows(self):
        end = len(self._pending)
        return self._pending[:self._n_positive], self._pending[end - self._n_negative:]

    def _pending_room(self):
        return len(self._pending) - self._n_positive - self._n_negative

    def tell(self, losses):
        with self._blas_threads():
            return super().tell(losses)

    def _blas_threads(self, parallel_from=math.inf):
        if self.full_covariance and SERIAL_BLAS_MIN_DIM <= self.dim < parallel_from:
            return one_blas_thread()
        return contextlib.nullcontext()

    def _sample_y(self, Z, out):
        """y = B D z for each row z of Z (eq. 38), into ``out``."""
        scaled = np.multiply(Z, self.D, out=self._work[: len(Z)])
        np.matmul(scaled, self.B.T, out=out)

    def _diag_C(self):
        positive, negative = self._pending_rows()
        squares = (np.einsum("ij,ij->j", positive, positive)
                   - np.einsum("ij,ij->j", negative, negative))
        return self._pending_scale * (np.diag(self._C) + squares)

    def _update_C(self, decay, c1, pc, coefficients, Y):
        """C <- decay C + c1 pc pc^T + sum_i coefficients_i y_i y_i^T (eq. 47).

        Deferred: C is only read by the eigendecomposition, every eigen_gap
        generations, so the rows sqrt(|coefficient|) y are kept (pc's too)
        and added to C by ``_apply_pending``, many generations' at once. The
        decay multiplies _pending_scale; a row enters divided by the square
        root of the scale, so that scale * b b^T is the term itself.
        """
        if self._pending_room() < len(coefficients) + 1:
            self._apply_pending()
        if decay < MIN_DEFERRED_DECAY:
            self._apply_pending()
            self._C *= decay
        else:
            self._pending_scale *= decay
        positive = np.flatnonzero(coefficients > 0)
        negative = np.flatnonzero(coefficients <= 0)
        root = 1.0 / math.sqrt(self._pending_scale)
        start, end = self._n_positive, len(self._pending) - self._n_negative
        self._pending[start] = math.sqrt(c1) * root * pc
        for rows, block in ((positive, self._pending[start + 1:start + 1 + positive.size]),
                            (negative, self._pending[end - negative.size:end])):
            np.take(Y, rows, axis=0, out=block)
            block *= root * np.sqrt(np.abs(coefficients[rows]))[:, None]
        self._n_positive += 1 + positive.size
        self._n_negative += negative.size

    def _apply_pending(self):
        """Add the pending rows to C: two BLAS symmetric rank-k updates (positive
        rows, then negative ones) that write only the lower triangle of C. One
        pass with signed coefficients (dsyr2k or dgemm) does twice the
        arithmetic and measured slower."""
        positive, negative = self._pending_rows()
        if not len(positive):  # nothing pending: every update adds pc's row
            return
        scale = self._pending_scale
        # C^T is Fortran-ordered: its upper triangle is the lower triangle of C
        C = dsyrk(scale, positive.T, beta=scale, c=self._C.T, lower=0, overwrite_c=True)
        if len(negative):
            C = dsyrk(-scale, negative.T, beta=1.0, c=C, lower=0, overwrite_c=True)
        self._C = C.T
        self._n_positive = self._n_negative = 0
        self._pending_scale = 1.0

    def _decompose(self):
        """B, D from C = B diag(D^2) B^T, at most every eigen_gap generations;
        before that, or when the next generation's rows may not fit, the
        pending updates are added to C (here, where BLAS may use every thread)."""
        due = self.generation - self.eigen_generation >= self.params.eigen_gap
        if due or self._pending_room() < self.popsize + 1:
            self._apply_pending()
        if not due:
            return
        self.eigen_generation = self.generation
        ps = self.ps
        eigenvalues, self.B = np.linalg.eigh(self._C, UPLO="L")
        self.ps = ps
        self.D = np.sqrt(np.maximum(eigenvalues, eigenvalues[-1] * 1e-20))

    def _ask(self):
        with self._blas_threads(parallel_from=PARALLEL_EIGH_MIN_DIM):
            self._decompose()
        # eq. (38)-(40): x_k = m + sigma y_k, y_k = B D z_k, z_k ~ N(0, I)
        self.Z = standard_normal(self.rng, out=self._z)
        with self._blas_threads():
            self._sample_y(self.Z, out=self._y)
        self.Y = self._y
        X = np.multiply(self.Y, self.sigma, out=self._work[: self.popsize])
        X += self.mean
        return X

    def _tell(self, X, losses):
        """One generation of Appendix A: mean, step size, then covariance.

        y_k comes from ask, not from (x_k - m) / sigma: the same vector
        without the rounding of the round trip. Rows stay in sampling order
        (no copies); the weights are permuted to them instead.
        """
        p, n = self.params, self.dim
        Y, Z = self.Y, self.Z
        self.Y = self.Z = None
        order = np.argsort(losses, kind="stable")
        weights = np.empty(p.lam)  # w_{rank of sample k}, in sampling order
        weights[order] = p.weights
        recombination = np.zeros(p.lam)
        recombination[order[: p.mu]] = p.weights[: p.mu]
        # eq. (41)-(42): selection and recombination, <y>_w = sum_{i<=mu} w_i y_{i:lambda}
        y_w = recombination @ Y
        self.mean = self.mean + p.cm * self.sigma * y_w
        # eq. (43): cumulation for step-size control, C^(-1/2) <y>_w = B <z>_w,
        # in C's eigenbasis, where it is <z>_w (see ps)
        z_w = recombination @ Z
        self.ps_eigen = (1 - p.cs) * self.ps_eigen + math.sqrt(p.cs * (2 - p.cs) * p.mueff) * z_w
        # eq. (44): step-size update; B is orthogonal, so ||p_sigma|| = ||B^T p_sigma||
        ps_norm = np.linalg.norm(self.ps_eigen)
        self.sigma *= math.exp(p.cs / p.damps * (ps_norm / p.chiN - 1))
        # eq. (45): cumulation for the rank-one update, stalled by h_sigma
        ps_bias = math.sqrt(1 - (1 - p.cs) ** (2 * (self.generation + 1)))
        hsig = ps_norm / ps_bias < (1.4 + 2 / (n + 1)) * p.chiN
        self.pc = (1 - p.cc) * self.pc + hsig * math.sqrt(p.cc * (2 - p.cc) * p.mueff) * y_w
        # eq. (46): negative weights rescaled by n / ||C^(-1/2) y_i||^2 = n / ||z_i||^2
        z_norms2 = np.maximum(np.einsum("ij,ij->i", Z, Z), 1e-300)
        w_circ = np.where(weights >= 0, weights, weights * n / z_norms2)
        # eq. (47): rank-one and rank-mu update of C
        delta_hsig = (1 - hsig) * p.cc * (2 - p.cc)
        decay = 1 + p.c1 * delta_hsig - p.c1 - p.cmu * p.weights.sum()
        self._update_C(decay, p.c1, self.pc, p.cmu * w_circ, Y)
        self.best_history.append(float(losses[order[0]]))
        del self.best_history[: -self.history_length]
        self.last_worst = float(losses[order[-1]])

    def _stop_reasons(self):
        reasons = {}
        if self.generation == 0:
            return reasons
        recent = self.best_history + [self.last_worst]
        if np.isfinite(recent).all() and max(recent) - min(recent) < self.tolfun:
            reasons["tolfun"] = self.tolfun
        scale = self.sigma * np.concatenate([np.sqrt(self._diag_C()), np.abs(self.pc)])
        if np.all(scale < self.tolx):
            reasons["tolx"] = self.tolx
        if (self.D.max() / self.D.min()) ** 2 > self.max_condition:
            reasons["conditioncov"] = self.max_condition
        return reasons


class SepCMAES(CMAES):
    """sep-CMA-ES (Ros & Hansen 2008): diagonal C, O(n) time and memory per sample."""

    name = "sep-cmaes"
    full_covariance = False
    state_names = ("mean", "sigma", "C", "B", "D", "pc", "ps_eigen", "Z", "Y", "eigen_generation",
                   "best_history", "last_worst")
    C = None  # a plain attribute, the vector diag(C): nothing is deferred

    @staticmethod
    def rate_factor(n):
        return (n + 2) / 3

    def _init_covariance(self):
        self.C, self.B, self.D = np.ones(self.dim), None, np.ones(self.dim)

    def _sample_y(self, Z, out):
        np.multiply(Z, self.D, out=out)

    def _diag_C(self):
        return self.C

    def _update_C(self, decay, c1, pc, coefficients, Y):
        squares = np.multiply(Y, Y, out=self._work[: len(Y)])
        self.C *= decay
        self.C += c1 * pc * pc + coefficients @ squares

    def _decompose(self):
        self.D = np.sqrt(np.maximum(self.C, 1e-300))
