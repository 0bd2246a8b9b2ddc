"""Optimisers on the flat parameter vector, and learning-rate schedules.

An optimiser is configuration only (a frozen dataclass); its changing state
(moments ``m``, ``v`` and the step count ``t``) lives in an ``OptState``
kept outside, as in optax. The update itself is one fused compiled loop
(``backends.cpu.optimizer_step``) following PyTorch's update rules:

* SGD (with momentum and Nesterov): buf = mu*buf + g; p -= lr*(g + mu*buf | buf)
* RMSprop (Hinton 2012): v = a*v + (1-a)*g^2; p -= lr*g / (sqrt(v) + eps)
* Adam (Kingma & Ba 2015): bias-corrected first and second moments
* AdamW (Loshchilov & Hutter 2019): Adam with decay decoupled, p *= 1 - lr*wd

``weight_decay`` on SGD/RMSprop/Adam is L2 (added to the gradient); it is
never part of ``Network.loss``. Clipping by global norm happens before
clipping by value, both before decay.
"""
import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np

from fastnet._checks import check_float, check_int, check_name
from fastnet import updates
from fastnet.backends import cpu


# ------------------------------------------------------------- schedules
@dataclasses.dataclass(frozen=True)
class StepDecay:
    """lr * gamma ** (epoch // step_size), as torch.optim.lr_scheduler.StepLR."""
    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        check_float("lr", self.lr, 0.0, low_open=True)
        check_int("step_size", self.step_size)
        check_float("gamma", self.gamma, 0.0, 1.0, low_open=True)

    def __call__(self, epoch):
        return self.lr * self.gamma ** (epoch // self.step_size)


@dataclasses.dataclass(frozen=True)
class ExponentialDecay:
    """lr * gamma ** epoch, as torch.optim.lr_scheduler.ExponentialLR."""
    lr: float
    gamma: float

    def __post_init__(self):
        check_float("lr", self.lr, 0.0, low_open=True)
        check_float("gamma", self.gamma, 0.0, 1.0, low_open=True)

    def __call__(self, epoch):
        return self.lr * self.gamma ** epoch


@dataclasses.dataclass(frozen=True)
class CosineAnnealing:
    """eta_min + (lr - eta_min)(1 + cos(pi * epoch / t_max)) / 2 (Loshchilov & Hutter 2017)."""
    lr: float
    t_max: int
    eta_min: float = 0.0

    def __post_init__(self):
        check_float("lr", self.lr, 0.0, low_open=True)
        check_int("t_max", self.t_max)
        check_float("eta_min", self.eta_min, 0.0, self.lr)

    def __call__(self, epoch):
        progress = min(epoch, self.t_max) / self.t_max
        return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2


SCHEDULES = {"step": StepDecay, "exponential": ExponentialDecay, "cosine": CosineAnnealing}


def get_schedule(name, **options):
    return SCHEDULES[check_name("schedule", name, SCHEDULES)](**options)


# ------------------------------------------------------------ optimisers
#: the names of the ``hyper`` vector's entries, for error messages
HYPER_NAMES = ["momentum", "nesterov", "betas[0]", "betas[1]", "eps", "weight_decay",
               "decoupled", "clip_norm", "clip_value", "alpha", "lr"]

class OptState(NamedTuple):
    m: np.ndarray   # first moment / momentum buffer
    v: np.ndarray   # second moment
    t: int          # steps taken


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Shared settings: learning rate (a number or a schedule of the epoch),
    weight decay, clipping by global norm and by value (None = off)."""
    lr: object = 0.01
    weight_decay: float = 0.0
    clip_norm: object = None
    clip_value: object = None
    kind: ClassVar[int]
    decoupled: ClassVar[bool] = False

    def __post_init__(self):
        if not callable(self.lr):
            check_float("lr", self.lr, 0.0, low_open=True)
        check_float("weight_decay", self.weight_decay, 0.0)
        for name in ("clip_norm", "clip_value"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), 0.0, low_open=True)

    def lr_at(self, epoch):
        """The learning rate used during ``epoch`` (0-based)."""
        return self.lr(epoch) if callable(self.lr) else self.lr

    def init(self, params):
        return OptState(np.zeros_like(params), np.zeros_like(params), 0)

    def hyper(self, dtype, epoch=0):
        """The settings as the vector the compiled update reads (lr of ``epoch``)."""
        h = np.zeros(updates.N_HYPER, dtype=np.float64)
        h[updates.H_LR] = self.lr_at(epoch)
        h[updates.H_WEIGHT_DECAY] = self.weight_decay
        h[updates.H_DECOUPLED] = self.decoupled
        h[updates.H_CLIP_NORM] = self.clip_norm or 0.0
        h[updates.H_CLIP_VALUE] = self.clip_value or 0.0
        self._fill(h)
        with np.errstate(over="ignore"):
            cast = h.astype(dtype)
        if not np.isfinite(cast).all():
            name = HYPER_NAMES[int(np.flatnonzero(~np.isfinite(cast))[0])]
            raise ValueError(f"{name}={h[HYPER_NAMES.index(name)]:g} overflows "
                             f"{np.dtype(dtype).name}, the network's dtype")
        return cast

    def _fill(self, h):
        """Write the subclass's own settings into ``h``."""

    def step(self, params, grad, state, epoch=0):
        """Update ``params`` in place from ``grad``; return the new state."""
        for name, array in (("grad", grad), ("state.m", state.m), ("state.v", state.v)):
            if np.shape(array) != params.shape:
                raise ValueError(f"{name} must have the shape of params {params.shape}, "
                                 f"got {np.shape(array)}")
        t = state.t + 1
        hyper = self.hyper(params.dtype, epoch)
        cpu.optimizer_step(params, np.ascontiguousarray(grad, params.dtype), state.m,
                           state.v, t, self.kind, hyper)
        return OptState(state.m, state.v, t)


@dataclasses.dataclass(frozen=True)
class SGD(Optimizer):
    momentum: float = 0.0
    nesterov: bool = False
    kind: ClassVar[int] = updates.SGD

    def __post_init__(self):
        super().__post_init__()
        check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")

    def _fill(self, h):
        h[updates.H_MOMENTUM] = self.momentum
        h[updates.H_NESTEROV] = self.nesterov


@dataclasses.dataclass(frozen=True)
class RMSprop(Optimizer):
    alpha: float = 0.99
    eps: float = 1e-8
    kind: ClassVar[int] = updates.RMSPROP

    def __post_init__(self):
        super().__post_init__()
        check_float("alpha", self.alpha, 0.0, 1.0, high_open=True)
        check_float("eps", self.eps, 0.0, low_open=True)

    def _fill(self, h):
        h[updates.H_ALPHA] = self.alpha
        h[updates.H_EPS] = self.eps


@dataclasses.dataclass(frozen=True)
class Adam(Optimizer):
    lr: object = 0.001
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    kind: ClassVar[int] = updates.ADAM

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        check_float("betas[0]", self.betas[0], 0.0, 1.0, high_open=True)
        check_float("betas[1]", self.betas[1], 0.0, 1.0, high_open=True)
        check_float("eps", self.eps, 0.0, low_open=True)

    def _fill(self, h):
        h[updates.H_BETA1], h[updates.H_BETA2] = self.betas
        h[updates.H_EPS] = self.eps


@dataclasses.dataclass(frozen=True)
class AdamW(Adam):
    weight_decay: float = 0.01
    decoupled: ClassVar[bool] = True


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def get_optimizer(optimizer, **options):
    """An Optimizer from an instance (returned as is) or a name plus settings."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    name = check_name("optimizer", optimizer, OPTIMIZERS, {"momentum": "sgd"})
    return OPTIMIZERS[name](**options)
