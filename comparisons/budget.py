"""Cost accounting: how comparisons between methods stay fair.

Every run counts three things, and every figure can be drawn against each:

* evaluations: loss evaluations of one candidate on the whole training set
  for gradient-free methods; mini-batch loss-and-gradient evaluations
  (steps) for backprop;
* forward-pass equivalents (FPE): one sample through the network's forward
  pass = 1. A gradient-free evaluation on N samples costs N; a backprop step
  on a batch of B costs 3B (the backward pass costs about twice the
  forward: one product for the deltas, one for the weight gradients);
* seconds of training, measured around the training work only.
"""
import dataclasses

import numpy as np

BACKPROP_FPE_PER_SAMPLE = 3


@dataclasses.dataclass
class Cost:
    evals: int = 0
    fpe: int = 0
    seconds: float = 0.0

    def add(self, evals, fpe, seconds):
        self.evals += evals
        self.fpe += fpe
        self.seconds += seconds


class LogSchedule:
    """Log points spaced evenly in log(FPE) up to the budget (plus the ends):
    convergence spans decades, so this spends points where curves move."""

    def __init__(self, budget, points=60, first=None):
        first = first or max(budget / 10 ** 4, 1)
        self.thresholds = np.geomspace(first, budget, points)
        self.next = 0

    def due(self, fpe):
        if self.next >= len(self.thresholds) or fpe < self.thresholds[self.next]:
            return False
        self.next = int(np.searchsorted(self.thresholds, fpe, side="right"))
        return True
