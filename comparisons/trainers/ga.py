"""Real-valued genetic algorithm: selection, crossover, Gaussian mutation, elitism.

Operators, each with its source:
- selection: "tournament" of size k (Goldberg and Deb, FOGA 1991),
  "roulette" fitness-proportional on f_i = max_j L_j - L_i (Holland 1975),
  "rank" linear ranking with selective pressure s in [1, 2] (Baker, ICGA 1985);
- crossover: "uniform" (Syswerda, ICGA 1989), "one_point" (Holland 1975),
  "blx" BLX-alpha (Eshelman and Schaffer, FOGA 1993), "sbx" simulated binary
  crossover with index eta (Deb and Agrawal, Complex Systems 9:115-148, 1995);
- mutation: each gene moves by N(0, s^2) with probability ``mutation_rate``
  (initial s = ``mutation_scale``, default 0.2 sigma0);
  with ``self_adaptive`` each individual carries its own s, mutated
  log-normally first, s' = s exp(tau N(0, 1)), tau = 1 / sqrt(2 D)
  (H.-G. Beyer and H.-P. Schwefel, "Evolution strategies - A comprehensive
  introduction", Natural Computing 1:3-52, 2002).

The ``n_elite`` best are carried over unchanged with their known losses, so
after the first generation an ask holds only the P - n_elite children.

Defaults (tournament of 3, SBX, every gene mutated, self-adaptive scale) were
the best of a small grid (crossover x self-adaptation x mutation rate x
tournament size) on 10-D sphere and 2-D / 10-D Rosenbrock.
"""

import math

import numpy as np

from comparisons.trainers.base import Trainer, check_choice, check_int, check_real, standard_normal


def tournament(rng, losses, count, ga):
    """Winners of ``count`` tournaments among k individuals drawn with replacement."""
    entrants = rng.integers(0, losses.size, size=(count, ga.tournament_size))
    return entrants[np.arange(count), np.argmin(losses[entrants], axis=1)]


def roulette(rng, losses, count, ga):
    """Fitness-proportional draws on f_i = max_j L_j - L_i (the worst, and inf, get 0)."""
    finite = np.isfinite(losses)
    worst = losses[finite].max() if finite.any() else 0.0
    fitness = np.where(finite, worst - losses, 0.0)
    total = fitness.sum()
    p = fitness / total if total > 0 else np.full(losses.size, 1.0 / losses.size)
    return rng.choice(losses.size, size=count, p=p)


def rank(rng, losses, count, ga):
    """Linear ranking: p_i = (2 - s) / P + 2 r_i (s - 1) / (P (P - 1)), r_i = 0 for the worst."""
    P = losses.size
    r = np.empty(P)
    r[np.argsort(losses, kind="stable")[::-1]] = np.arange(P)
    s = ga.rank_pressure
    p = (2 - s) / P + 2 * r * (s - 1) / (P * max(P - 1, 1))
    return rng.choice(P, size=count, p=p / p.sum())


def uniform(rng, a, b, ga):
    """Each gene from either parent with probability 1/2."""
    return np.where(rng.random(a.shape) < 0.5, a, b)


def one_point(rng, a, b, ga):
    """Genes before a random cut point from a, the rest from b."""
    cut = rng.integers(1, max(a.shape[1], 2), size=(a.shape[0], 1))
    return np.where(np.arange(a.shape[1]) < cut, a, b)


def blx(rng, a, b, ga):
    """BLX-alpha: uniform in [min - alpha I, max + alpha I], I = |a - b|, per gene."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    spread = ga.blx_alpha * (high - low)
    return rng.uniform(low - spread, high + spread)


def sbx(rng, a, b, ga):
    """SBX: c = ((1 + beta) a + (1 - beta) b) / 2, beta from the polynomial spread distribution."""
    eta = ga.sbx_eta
    u = rng.random(a.shape)
    beta = np.where(u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1)))
    return 0.5 * ((1 + beta) * a + (1 - beta) * b)


MUTATION_SCALE_PER_SIGMA0 = 0.2

# Operators take the GA itself for their settings (tournament_size, rank_pressure, blx_alpha, sbx_eta).
SELECTIONS = {"tournament": tournament, "roulette": roulette, "rank": rank}
CROSSOVERS = {"uniform": uniform, "one_point": one_point, "blx": blx, "sbx": sbx}


class GA(Trainer):
    """Generational GA on real-valued genomes with elitism."""

    name = "ga"
    defaults = {
        "selection": "tournament", "tournament_size": 3, "rank_pressure": 1.7,
        "crossover": "sbx", "crossover_rate": 0.9, "blx_alpha": 0.5, "sbx_eta": 15.0,
        "mutation_rate": 1.0, "mutation_scale": None, "self_adaptive": True, "n_elite": 2,
    }
    state_names = ("population", "population_losses", "population_scales", "child_scales")
    min_popsize = 2

    @classmethod
    def default_popsize(cls, dim):
        return 50

    def _check_options(self, options):
        check_choice("selection", options["selection"], SELECTIONS)
        check_choice("crossover", options["crossover"], CROSSOVERS)
        options["tournament_size"] = check_int("tournament_size", options["tournament_size"], 1)
        options["rank_pressure"] = check_real("rank_pressure", options["rank_pressure"], 1.0, 2.0)
        options["crossover_rate"] = check_real("crossover_rate", options["crossover_rate"], 0.0, 1.0)
        options["blx_alpha"] = check_real("blx_alpha", options["blx_alpha"], 0.0)
        options["sbx_eta"] = check_real("sbx_eta", options["sbx_eta"], 0.0)
        options["mutation_rate"] = check_real("mutation_rate", options["mutation_rate"], 0.0, 1.0)
        if options["mutation_scale"] is None:
            options["mutation_scale"] = MUTATION_SCALE_PER_SIGMA0 * self.sigma0
        options["mutation_scale"] = check_real("mutation_scale", options["mutation_scale"], 0.0,
                                               low_open=True)
        if not isinstance(options["self_adaptive"], bool):
            raise ValueError(f"self_adaptive must be True or False, got {options['self_adaptive']!r}")
        options["n_elite"] = check_int("n_elite", options["n_elite"], 0, self.popsize - 1)
        return options

    def _setup(self):
        self.tau = 1 / math.sqrt(2 * self.dim)
        self.population = None
        self.population_losses = None
        self.population_scales = None
        self.child_scales = None

    def _ask(self):
        if self.population is None:
            X = self.x0 + self.sigma0 * self.rng.standard_normal((self.popsize, self.dim))
            X[0] = self.x0
            self.child_scales = np.full(self.popsize, self.mutation_scale)
            return X
        count = self.popsize - self.n_elite
        parents = SELECTIONS[self.selection](self.rng, self.population_losses, 2 * count, self)
        a, b = parents.reshape(2, count)
        # crossover with probability crossover_rate, else a copy of the first parent
        children = CROSSOVERS[self.crossover](self.rng, self.population[a], self.population[b], self)
        keep_first = self.rng.random(count) >= self.crossover_rate
        children[keep_first] = self.population[a[keep_first]]
        # self-adaptation: s' = s exp(tau N(0, 1)), inherited from the first parent
        self.child_scales = self.population_scales[a]
        if self.self_adaptive:
            self.child_scales = self.child_scales * np.exp(self.tau * self.rng.standard_normal(count))
        # Gaussian mutation of each gene with probability mutation_rate
        mutate = self.rng.random(children.shape) < self.mutation_rate
        children += mutate * self.child_scales[:, None] * standard_normal(self.rng, children.shape)
        return children

    def _tell(self, X, losses):
        if self.population is None:
            self.population, self.population_losses = X, losses
            self.population_scales = self.child_scales
            return
        elite = np.argsort(self.population_losses, kind="stable")[: self.n_elite]
        self.population = np.vstack([self.population[elite], X])
        self.population_losses = np.concatenate([self.population_losses[elite], losses])
        self.population_scales = np.concatenate([self.population_scales[elite], self.child_scales])
