"""Evolution strategies as a scalable gradient estimator ("OpenAI-ES").

T. Salimans, J. Ho, X. Chen, S. Sidor and I. Sutskever, "Evolution Strategies
as a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864 (2017):
mirrored sampling theta +- sigma eps_i, centered-rank fitness shaping, the
gradient estimate g = 1 / (P sigma) sum_j u_j e_j, optional L2 weight decay,
and an Adam step on g (D. P. Kingma and J. Ba, "Adam: A Method for
Stochastic Optimization", arXiv:1412.6980, Algorithm 1).

Here sigma is sigma0 and stays fixed, as in the paper, so on a smooth
function the best candidate is only as precise as sigma allows.
"""

import math

import numpy as np

from comparisons.trainers.base import Trainer, check_real, standard_normal


def centered_ranks(losses):
    """Ranks scaled to [-0.5, 0.5]; the lowest loss gets -0.5."""
    ranks = np.empty(losses.size)
    ranks[np.argsort(losses, kind="stable")] = np.arange(losses.size)
    return ranks / max(losses.size - 1, 1) - 0.5


def gradient_estimate(eps, losses, sigma):
    """g = 1 / (P sigma) sum_j u_j e_j over the mirrored samples e_j = +eps_i, -eps_i."""
    half = eps.shape[0]
    # fitness shaping: centered ranks u_j of the losses
    u = centered_ranks(losses)
    return (u[:half] - u[half:]) @ eps / (2 * half * sigma)


class ES(Trainer):
    """Mirrored-sampling ES with Adam on the rank-shaped gradient estimate."""

    name = "es"
    defaults = {"learning_rate": 0.01, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
    state_names = ("theta", "m", "v", "eps")
    min_popsize = 2

    @classmethod
    def default_popsize(cls, dim):
        # CMA-ES's 4 + floor(3 ln D), made even: 2 (2 + floor(1.5 ln D)) mirrored pairs' worth
        return 2 * (2 + int(1.5 * math.log(dim)))

    def _check_options(self, options):
        if self.popsize % 2:
            raise ValueError(f"popsize must be even for mirrored sampling, got {self.popsize}")
        options["learning_rate"] = check_real("learning_rate", options["learning_rate"], 0.0, low_open=True)
        options["weight_decay"] = check_real("weight_decay", options["weight_decay"], 0.0)
        options["beta1"] = check_real("beta1", options["beta1"], 0.0, 1.0, high_open=True)
        options["beta2"] = check_real("beta2", options["beta2"], 0.0, 1.0, high_open=True)
        options["epsilon"] = check_real("epsilon", options["epsilon"], 0.0, low_open=True)
        return options

    def _setup(self):
        self.theta = self.x0.copy()
        self.m = np.zeros(self.dim)
        self.v = np.zeros(self.dim)
        self.eps = None

    def _ask(self):
        # mirrored sampling: theta + sigma eps_i and theta - sigma eps_i
        self.eps = standard_normal(self.rng, (self.popsize // 2, self.dim))
        return np.vstack([self.theta + self.sigma0 * self.eps, self.theta - self.sigma0 * self.eps])

    def _tell(self, X, losses):
        # gradient estimate of the loss from the rank-shaped mirrored samples
        g = gradient_estimate(self.eps, losses, self.sigma0)
        # L2 weight decay
        g += self.weight_decay * self.theta
        # Adam (Kingma and Ba, Algorithm 1), t = generation + 1
        t = self.generation + 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m_hat, v_hat = self.m / (1 - self.beta1 ** t), self.v / (1 - self.beta2 ** t)
        self.theta = self.theta - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.epsilon)
        self.eps = None
