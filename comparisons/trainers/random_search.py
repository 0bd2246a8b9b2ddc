"""Pure random search: Gaussian samples around x0, the baseline every method must beat.

J. Matyas, "Random Optimization", Automation and Remote Control 26:246-253
(1965), in its simplest, non-adaptive form: candidates x0 + sigma0 N(0, I),
independent of the losses seen so far; only the best is kept.
"""

from comparisons.trainers.base import Trainer, standard_normal


class RandomSearch(Trainer):
    """Batches of P independent samples x0 + sigma0 z, z ~ N(0, I)."""

    name = "random"

    @classmethod
    def default_popsize(cls, dim):
        return 10

    def _ask(self):
        return self.x0 + self.sigma0 * standard_normal(self.rng, (self.popsize, self.dim))

    def _tell(self, X, losses):
        """Nothing to learn: the base class keeps the best."""
