"""Scale guard: a trainer's memory and time per generation, estimated before it runs.

Most gradient-free methods keep a few P x D populations and do O(P D)
arithmetic per generation. Full CMA-ES keeps the D x D covariance C and its
eigenvectors B (O(D^2) memory), samples through B (2 P D^2 flops), updates C
by rank-mu updates ((mu + 1) D^2) and re-decomposes C every ``eigen_gap``
generations (about 9 D^3 flops for a symmetric eigendecomposition with
eigenvectors, Golub & Van Loan §8.3); the sampling and the two rank-k
updates also stream B and C through memory, about 5 D^2 float64 reads and
writes per generation, which at D in the thousands costs more than their
flops. Past some D that arithmetic dwarfs the
network's own evaluation; sep-CMA-ES (diagonal C) is then the variant to run.

The estimate converts flop and byte counts to seconds with a machine's rates
(a float64 matrix product, an eigendecomposition and a large copy, each
assumed to scale with its count): by default this machine's, timed once per
process. ``guard`` compares an estimate with limits before anything is
allocated and returns the method to run, switching full CMA-ES to sep-CMA-ES
or refusing with a message that states the numbers. Its time limit is a
ratio (the trainer's time over the evaluation's), so it uses the fixed
``REFERENCE_RATES``: rates timed on a loaded machine (an eigendecomposition
on oversubscribed cores can run 50 times slower) would otherwise change
which method a sweep runs from one start to the next.
"""
import dataclasses
import functools
import math
import os
import time

import numpy as np

from comparisons.trainers import TRAINERS
from comparisons.trainers.cmaes import PENDING_ROWS, CMAES, CMAParameters, SepCMAES

#: P x D float64 arrays a generation holds, per method (population, offspring,
#: velocities, personal bests, noise...); methods not listed hold 2
POPULATION_ARRAYS = {"ga": 3, "pso": 5, "de": 3, "cmaes": 3, "sep-cmaes": 4, "es": 3}
#: elementwise flops per population value and generation for the O(P D) methods
LINEAR_FLOPS_PER_VALUE = 10
#: float64 D x D matrices read or written per generation by full CMA-ES
MATRIX_PASSES = 5
#: the trainer may spend at most this many times the population's evaluation time
#: on its own arithmetic. The evaluation is estimated at the GEMM rate, which the
#: population kernel reaches only on wide layers, so on small networks the
#: overhead is overstated 2-5 times: 50 keeps full CMA-ES on digits (D = 2,410,
#: estimated about 20, measured about 8) and switches a few thousand dimensions above.
DEFAULT_MAX_OVERHEAD = 50.0
#: ``machine_rates()`` of the 2-core AVX2 machine CI runs on, idle: the guard's
#: rates, so that its decisions are the same on every machine and under any load
REFERENCE_RATES = (1.0e11, 6.0e-10, 2.3e10)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One generation of ``method`` at dimension ``dim`` with population ``popsize``."""

    method: str
    dim: int
    popsize: int
    memory_bytes: int
    trainer_seconds: float
    evaluation_seconds: float

    @property
    def overhead(self):
        """Trainer time per generation over the population's evaluation time."""
        if self.evaluation_seconds <= 0:
            return math.inf if self.trainer_seconds > 0 else 0.0
        return self.trainer_seconds / self.evaluation_seconds

    def describe(self):
        return (f"{self.method} at D={self.dim:,}, P={self.popsize}: "
                f"{_bytes(self.memory_bytes)} of state, about "
                f"{self.trainer_seconds * 1e3:.3g} ms of its own arithmetic per generation "
                f"against {self.evaluation_seconds * 1e3:.3g} ms evaluating the population")


def _bytes(count):
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


@functools.lru_cache(maxsize=1)
def machine_rates():
    """(float64 GEMM flops/s, seconds per n^3 of np.linalg.eigh, copy bytes/s), measured once."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((384, 384))
    S = A[:256, :256] + A[:256, :256].T
    big = np.ones(2 ** 22)          # 32 MiB: past the caches
    target = np.empty_like(big)
    gemm = min(_seconds(lambda: A @ A) for _ in range(3))
    eigh = min(_seconds(lambda: np.linalg.eigh(S)) for _ in range(3))
    copy = min(_seconds(lambda: np.copyto(target, big)) for _ in range(3))
    return 2 * 384 ** 3 / gemm, eigh / 256 ** 3, 2 * big.nbytes / copy


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def estimate(method, dim, popsize=None, evaluation_flops=0.0, rates=None):
    """Estimate one generation of ``method``; ``evaluation_flops``: the population's losses;
    ``rates``: (GEMM flops/s, eigh seconds per n^3, copy bytes/s), this machine's if None."""
    trainer = TRAINERS[method]
    popsize = trainer.default_popsize(dim) if popsize is None else popsize
    gemm_rate, eigh_per_n3, bandwidth = machine_rates() if rates is None else rates
    # the populations, and a few loss vectors of length P
    population_bytes = (POPULATION_ARRAYS.get(method, 2) * dim + 4) * popsize * 8
    if issubclass(trainer, CMAES) and not issubclass(trainer, SepCMAES):
        params = CMAParameters(dim, popsize)
        # C, B and the eigensolver's workspace of the same size, and the rows
        # of the deferred updates of C
        pending_rows = max(PENDING_ROWS, 2 * (popsize + 1))
        memory = population_bytes + (3 * dim + pending_rows) * dim * 8
        blas_flops = (2 * popsize + params.mu + 1) * dim * dim
        trainer_seconds = (blas_flops / gemm_rate
                           + MATRIX_PASSES * dim * dim * 8 / bandwidth
                           + eigh_per_n3 * dim ** 3 / params.eigen_gap)
    else:
        memory = population_bytes + 8 * dim * 8
        trainer_seconds = LINEAR_FLOPS_PER_VALUE * popsize * dim / gemm_rate
    return Estimate(method, dim, popsize, memory, trainer_seconds,
                    evaluation_flops / gemm_rate)


def available_memory():
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def guard(method, dim, popsize=None, evaluation_flops=0.0, memory_limit=None,
          max_overhead=DEFAULT_MAX_OVERHEAD, switch=True, rates=REFERENCE_RATES):
    """Return (method to run, note) for ``method`` at ``dim``, or raise ValueError.

    Above ``memory_limit`` bytes (default: half the physical memory) or when the
    trainer's own arithmetic would take more than ``max_overhead`` times the
    population's evaluation, full CMA-ES becomes sep-CMA-ES (``switch=True``)
    and anything else is refused. ``note`` is '' when nothing changed. Times are
    estimated at ``rates`` (see the module: fixed by default, for reproducible runs).
    """
    if memory_limit is None:
        physical = available_memory()
        memory_limit = physical // 2 if physical else 2 ** 34
    planned = estimate(method, dim, popsize, evaluation_flops, rates)
    problems = []
    if planned.memory_bytes > memory_limit:
        problems.append(f"over the memory limit of {_bytes(memory_limit)}")
    if evaluation_flops > 0 and planned.overhead > max_overhead:
        problems.append(f"{planned.overhead:.3g} times the evaluation time "
                        f"(limit {max_overhead:g})")
    if not problems:
        return method, ""
    reason = f"{planned.describe()}: {' and '.join(problems)}"
    if switch and method == "cmaes":
        fallback = estimate("sep-cmaes", dim, popsize, evaluation_flops, rates)
        if fallback.memory_bytes <= memory_limit:
            return "sep-cmaes", f"switched to sep-cmaes: {reason}"
    raise ValueError(f"refused: {reason}; use a smaller network, a smaller popsize"
                     + (" or sep-cmaes" if method == "cmaes" else ""))
