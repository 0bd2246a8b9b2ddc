"""Simulated annealing with Gaussian proposals and geometric cooling.

S. Kirkpatrick, C. D. Gelatt and M. P. Vecchi, "Optimization by Simulated
Annealing", Science 220:671-680 (1983): Metropolis acceptance at temperature
T, T lowered step by step (here geometrically, T_k = T0 alpha^k).

The proposal is Boltzmann annealing's Gaussian, whose variance follows the
temperature (L. Ingber, "Simulated annealing: Practice versus theory",
Math. Comput. Modelling 18(11):29-57, 1993): x' = x + sigma0 sqrt(T/T0) z.
Without T0, it is calibrated from the loss differences of ``n_calibration``
proposals around x0 so that an average uphill move is first accepted with
probability 0.8 (S. R. White, "Concepts of scale in simulated annealing",
ICCD 1984): T0 = -mean(uphill differences) / ln 0.8.

With popsize P > 1 each ask holds P proposals from the current point; the
best of them goes through the Metropolis test.
"""

import math

import numpy as np

from comparisons.trainers.base import Trainer, check_int, check_real, standard_normal

INITIAL_ACCEPTANCE = 0.8


def calibrated_temperature(start_loss, proposal_losses):
    """T0 at which the mean uphill move from the start is accepted with probability 0.8.

    Without a finite uphill move it falls back to |f(x0)|, then to 1.
    """
    if not math.isfinite(start_loss):
        return 1.0
    differences = proposal_losses[np.isfinite(proposal_losses)] - start_loss
    uphill = differences[differences > 0]
    if uphill.size:
        return -float(uphill.mean()) / math.log(INITIAL_ACCEPTANCE)
    return abs(start_loss) or 1.0


class Anneal(Trainer):
    """Simulated annealing on one current point x with loss f(x)."""

    name = "anneal"
    defaults = {"T0": None, "cooling": 0.999, "n_calibration": 20}
    state_names = ("x", "fx", "T", "T_start")

    def _check_options(self, options):
        if options["T0"] is not None:
            options["T0"] = check_real("T0", options["T0"], 0.0, low_open=True)
        options["cooling"] = check_real("cooling", options["cooling"], 0.0, 1.0, low_open=True)
        options["n_calibration"] = check_int("n_calibration", options["n_calibration"], 1)
        return options

    def _setup(self):
        self.x = self.x0.copy()
        self.fx = math.inf
        self.T = self.T0
        self.T_start = self.T0

    def _ask(self):
        if self.generation == 0:
            n_proposals = self.n_calibration if self.T0 is None else 0
            return np.vstack([self.x0, self._proposals(n_proposals, self.sigma0)])
        return self._proposals(self.popsize, self.sigma0 * math.sqrt(self.T / self.T_start))

    def _proposals(self, count, scale):
        """x' = x + scale z, z ~ N(0, I), ``count`` times."""
        return self.x + scale * standard_normal(self.rng, (count, self.dim))

    def _tell(self, X, losses):
        if self.generation == 0:
            if self.T0 is None:
                self.T = self.T_start = calibrated_temperature(losses[0], losses[1:])
            self.x, self.fx = self.x0.copy(), float(losses[0])
            return
        best = int(np.argmin(losses))
        # Metropolis: accept with probability min(1, exp(-(f(x') - f(x)) / T))
        uphill = losses[best] - self.fx if losses[best] > self.fx else 0.0
        if uphill == 0.0 or self.rng.random() < math.exp(-uphill / max(self.T, 1e-300)):
            self.x, self.fx = X[best].copy(), float(losses[best])
        # geometric cooling
        self.T *= self.cooling
