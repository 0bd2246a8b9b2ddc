"""Hill climbing as the (1+1)-ES with the one-fifth success rule.

I. Rechenberg, "Evolutionsstrategie" (1973) for the rule; the update used is
the one of N. Hansen, D. V. Arnold and A. Auger, "Evolution Strategies",
Springer Handbook of Computational Intelligence (2015), Sect. 3.1:
sigma <- sigma * exp((1[success] - 1/5) / d), d = sqrt(n + 1),
so sigma is stationary when one step in five succeeds.
"""

import math

from comparisons.trainers.base import Trainer, standard_normal


class HillClimb(Trainer):
    """(1+1)-ES: one Gaussian step from the parent per ask, kept if not worse."""

    name = "hillclimb"
    state_names = ("parent", "parent_loss", "sigma")
    max_popsize = 1

    def _setup(self):
        self.parent = self.x0.copy()
        self.parent_loss = math.inf
        self.sigma = self.sigma0
        self.damping = math.sqrt(self.dim + 1)

    def _ask(self):
        if self.generation == 0:
            return self.parent[None, :]
        # offspring x' = x + sigma z, z ~ N(0, I)
        return self.parent + self.sigma * standard_normal(self.rng, (1, self.dim))

    def _tell(self, X, losses):
        if self.generation == 0:
            self.parent_loss = float(losses[0])
            return
        # plus-selection: keep the offspring when it is not worse
        success = losses[0] <= self.parent_loss
        if success:
            self.parent, self.parent_loss = X[0].copy(), float(losses[0])
        # one-fifth success rule
        self.sigma *= math.exp((success - 0.2) / self.damping)
