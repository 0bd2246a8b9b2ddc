"""Memetic GA: each child learns (a few local-search steps) before its fitness is taken.

A memetic algorithm (P. Moscato, "On evolution, search, optimization, genetic
algorithms and martial arts: towards memetic algorithms", Caltech C3P report
826, 1989) is a GA whose individuals improve themselves by local search
between birth and selection. What happens to the improvement is the choice
of inheritance:

- Lamarckian (the default): the learned vector replaces the child's genome,
  so the improvement is inherited;
- Baldwinian: the child is selected on the fitness it reaches after learning,
  but its genome stays as it was born (G. E. Hinton and S. J. Nowlan, "How
  learning can guide evolution", Complex Systems 1:495-502, 1987; D. Whitley,
  V. S. Gordon and K. Mathias, "Lamarckian evolution, the Baldwin effect and
  function optimization", PPSN III, 1994, compare the two).

The trainer knows nothing of the local search: the caller asks for children,
lets them learn (on a network: a few backprop steps), and tells the losses
*after* learning together with the learned vectors. ``best`` is always a
learned vector, the one whose loss is ``best_loss``. Told without learned
vectors, it is the plain GA.
"""
import numpy as np

from comparisons.trainers.base import check_choice, real_numbers
from comparisons.trainers.ga import GA

INHERITANCES = ("lamarckian", "baldwinian")


class Memetic(GA):
    """GA whose children are told with their losses after learning (see module)."""

    name = "memetic"
    defaults = {**GA.defaults, "inheritance": "lamarckian"}
    state_names = GA.state_names

    def _check_options(self, options):
        check_choice("inheritance", options["inheritance"], INHERITANCES)
        return super()._check_options(options)

    def tell(self, losses, learned=None):
        """Losses of the last ask's children after learning; ``learned`` their
        (P, D) learned vectors (None: nothing was learned, a GA generation)."""
        if learned is None or self.asked is None:
            return super().tell(losses)
        learned = np.array(real_numbers("learned", learned), dtype=np.float64)
        if learned.shape != self.asked.shape:
            raise ValueError(f"learned must have the shape of the last ask, {self.asked.shape}, "
                             f"got {learned.shape}")
        bad = np.flatnonzero(~np.isfinite(learned).all(axis=1))
        if bad.size:
            raise ValueError(f"learned must be finite, got non-finite values in rows "
                             f"{bad.tolist()}: tell a child whose learning diverged as its "
                             "genome with an infinite loss")
        # Trainer.tell keeps the best of ``asked``: a learned vector
        self._genomes, self.asked = self.asked, learned
        try:
            super().tell(losses)
        except ValueError:          # bad losses: the ask stays open, as in Trainer.tell
            self.asked = self._genomes
            raise
        finally:
            self._genomes = None

    def _setup(self):
        super()._setup()
        self._genomes = None        # the children as born, during a tell with learning

    def _tell(self, X, losses):
        if self.inheritance == "baldwinian" and self._genomes is not None:
            X = self._genomes
        super()._tell(X, losses)
