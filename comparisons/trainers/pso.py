"""Global-best particle swarm optimisation, constriction or inertia form.

M. Clerc and J. Kennedy, "The Particle Swarm - Explosion, Stability, and
Convergence in a Multidimensional Complex Space", IEEE Trans. Evol. Comput.
6(1):58-73 (2002): constriction factor chi = 2 / |2 - phi - sqrt(phi^2 - 4 phi)|
with phi = c1 + c2 > 4 (default c1 = c2 = 2.05, chi = 0.7298).

Y. Shi and R. Eberhart, "A Modified Particle Swarm Optimizer", IEEE ICEC
(1998): inertia weight w. Its defaults w = 0.7298, c1 = c2 = 1.49618 are the
constriction defaults rewritten in inertia form (Eberhart and Shi, CEC 2000).

Both are computed as v <- w v + a1 r1 (p - x) + a2 r2 (g - x), with
(w, a1, a2) = (chi, chi c1, chi c2) for constriction. Each velocity
coordinate is clamped to [-vmax, vmax], as Eberhart and Shi (2000) advise
even with constriction; the default vmax = 0.05 sigma0 was chosen on 10-D
Rosenbrock, where without a clamp the swarm stalls near f ~ 1e-3 (vmax=inf
turns the clamp off). Swarm size 10 + floor(2 sqrt(D)) as in Clerc's
Standard PSO 2007.
"""

import math

import numpy as np

from comparisons.trainers.base import Trainer, check_choice, check_real

VMAX_PER_SIGMA0 = 0.05
VARIANT_DEFAULTS = {
    "constriction": {"c1": 2.05, "c2": 2.05},
    "inertia": {"w": 0.7298, "c1": 1.49618, "c2": 1.49618},
}


def constriction_factor(phi):
    """Clerc and Kennedy (2002), kappa = 1: chi = 2 / |2 - phi - sqrt(phi^2 - 4 phi)|."""
    return 2.0 / abs(2.0 - phi - math.sqrt(phi * phi - 4.0 * phi))


class PSO(Trainer):
    """Swarm of P particles around x0; each ask is the swarm's next positions."""

    name = "pso"
    defaults = {"variant": "constriction", "w": None, "c1": None, "c2": None, "vmax": None}
    state_names = ("X", "V", "pbest", "pbest_loss")
    min_popsize = 2

    @classmethod
    def default_popsize(cls, dim):
        return 10 + int(2 * math.sqrt(dim))

    def _check_options(self, options):
        variant = check_choice("variant", options["variant"], VARIANT_DEFAULTS)
        settings = {**VARIANT_DEFAULTS[variant], **{k: v for k, v in options.items() if v is not None}}
        c1 = check_real("c1", settings["c1"], 0.0)
        c2 = check_real("c2", settings["c2"], 0.0)
        if variant == "constriction":
            if options["w"] is not None:
                raise ValueError(
                    f"w is only used by variant='inertia', got w={options['w']!r} with variant='constriction'"
                )
            if c1 + c2 <= 4:
                raise ValueError(f"c1 + c2 must exceed 4 for the constriction factor, got {c1 + c2!r}")
            chi = constriction_factor(c1 + c2)
            w, a1, a2 = chi, chi * c1, chi * c2
        else:
            w, a1, a2 = check_real("w", settings["w"], 0.0), c1, c2
        vmax = options["vmax"]
        if vmax is None:
            vmax = VMAX_PER_SIGMA0 * self.sigma0
        elif vmax != math.inf:
            vmax = check_real("vmax", vmax, 0.0, low_open=True)
        return {"variant": variant, "w": w, "a1": a1, "a2": a2, "vmax": vmax}

    def _setup(self):
        self.X = None
        self.V = None
        self.pbest = None
        self.pbest_loss = np.full(self.popsize, np.inf)

    def _ask(self):
        shape = (self.popsize, self.dim)
        if self.X is None:
            # swarm spread sigma0 around x0; velocities distributed like SPSO's "half-diff" (x' - x) / 2
            self.X = self.x0 + self.sigma0 * self.rng.standard_normal(shape)
            self.X[0] = self.x0
            self.V = self.sigma0 * (self.rng.standard_normal(shape) - self.rng.standard_normal(shape)) / 2
            self.pbest = self.X.copy()
            return self.X
        g = self.pbest[np.argmin(self.pbest_loss)]
        r1, r2 = self.rng.random(shape), self.rng.random(shape)
        # velocity update: v <- w v + a1 r1 (p - x) + a2 r2 (g - x)
        self.V = self.w * self.V + self.a1 * r1 * (self.pbest - self.X) + self.a2 * r2 * (g - self.X)
        np.clip(self.V, -self.vmax, self.vmax, out=self.V)
        # position update: x <- x + v
        self.X = self.X + self.V
        return self.X

    def _tell(self, X, losses):
        improved = losses < self.pbest_loss
        self.pbest[improved] = X[improved]
        self.pbest_loss[improved] = losses[improved]
