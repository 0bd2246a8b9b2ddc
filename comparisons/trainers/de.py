"""Differential evolution, "rand/1/bin" and "best/1/bin".

R. Storn and K. Price, "Differential Evolution - A Simple and Efficient
Heuristic for Global Optimization over Continuous Spaces", Journal of Global
Optimization 11:341-359 (1997). Equation numbers are the paper's. Dither (a
new F drawn uniformly each generation) as in Storn's DE pages and SciPy.

Generational: one ask is the P trial vectors of a generation, built from the
population in a few vectorised numpy operations (no loop over members). The
population size defaults to 10 D (the paper suggests 5 D to 10 D).
"""

import numpy as np

from comparisons.trainers.base import Trainer, check_choice, check_real

STRATEGIES = ("rand/1/bin", "best/1/bin")


def distinct_others(rng, P, k):
    """(P, k) indices: row i holds k distinct indices drawn uniformly from range(P) minus {i}."""
    picks = np.empty((k + 1, P), dtype=np.int64)  # row 0: i itself, row j: the j-th pick
    picks[0] = np.arange(P)
    for j in range(1, k + 1):
        r = rng.integers(0, P - j, size=P)
        for excluded in np.sort(picks[:j], axis=0):
            r += r >= excluded
        picks[j] = r
    return picks[1:].T


def binomial_crossover(rng, targets, mutants, CR):
    """eq. (4): u_ji = v_ji if rand_j <= CR or j = rnbr(i), else x_ji."""
    P, D = targets.shape
    take_mutant = rng.random((P, D)) < CR
    take_mutant[np.arange(P), rng.integers(0, D, size=P)] = True
    return np.where(take_mutant, mutants, targets)


class DE(Trainer):
    """DE/x/1/bin with greedy one-to-one selection."""

    name = "de"
    defaults = {"strategy": "best/1/bin", "F": (0.5, 1.0), "CR": 0.9}
    state_names = ("population", "population_losses")
    min_popsize = 4

    @classmethod
    def default_popsize(cls, dim):
        return max(cls.min_popsize, 10 * dim)

    def _check_options(self, options):
        check_choice("strategy", options["strategy"], STRATEGIES)
        F = options["F"]
        if np.ndim(F) == 0:
            options["F"] = (check_real("F", F, 0.0, 2.0, low_open=True),) * 2
        elif np.shape(F) == (2,):
            low = check_real("F[0]", F[0], 0.0, 2.0, low_open=True)
            options["F"] = (low, check_real("F[1]", F[1], low, 2.0))
        else:
            raise ValueError(f"F must be a number in (0, 2] or a (low, high) pair for dither, got {F!r}")
        options["CR"] = check_real("CR", options["CR"], 0.0, 1.0)
        return options

    def _setup(self):
        self.population = None
        self.population_losses = None

    def _ask(self):
        if self.population is None:
            X = self.x0 + self.sigma0 * self.rng.standard_normal((self.popsize, self.dim))
            X[0] = self.x0
            return X
        pop = self.population
        F = self.rng.uniform(*self.F)
        r1, r2, r3 = distinct_others(self.rng, self.popsize, 3).T
        # eq. (2) rand/1: v_i = x_r1 + F (x_r2 - x_r3); best/1 uses x_best as the base vector
        # take: the rows pop[r], a few times faster than fancy indexing on a small population
        base = (pop.take(r1, axis=0) if self.strategy == "rand/1/bin"
                else pop[np.argmin(self.population_losses)])
        mutants = base + F * (pop.take(r2, axis=0) - pop.take(r3, axis=0))
        return binomial_crossover(self.rng, pop, mutants, self.CR)

    def _tell(self, X, losses):
        if self.population is None:
            self.population, self.population_losses = X, losses
            return
        # selection: the trial u_i replaces its target x_i when it is not worse
        better = losses <= self.population_losses
        np.copyto(self.population, X, where=better[:, None])
        np.copyto(self.population_losses, losses, where=better)
