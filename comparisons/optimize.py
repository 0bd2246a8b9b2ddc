"""``minimize``: run any registered trainer on a Python objective, within a budget.

The loop owns the budget, the history and the stopping; the trainer only
asks and is told. The budget is exact: when the next population would pass
``max_evals``, only its first ``max_evals - nfev`` candidates are evaluated
(in order), their best is kept, and the trainer is not told (a partial
population cannot update it).
"""

import math
import time
from dataclasses import dataclass, field

import numpy as np

from comparisons.trainers import TRAINERS
from comparisons.trainers.base import check_choice, check_int, check_real


@dataclass
class OptimizeResult:
    """Outcome of ``minimize``.

    ``history`` holds one dict per generation, {"nfev", "nit", "best_loss",
    "seconds"}, cumulative; as columns: ``{k: [h[k] for h in history] for k in history[0]}``.
    """

    x: np.ndarray
    fun: float
    nfev: int
    nit: int
    success: bool
    message: str
    method: str
    history: list = field(default_factory=list)


def evaluate(fun, X, vectorized):
    """(P,) float64 losses of the rows of ``X`` (a copy the trainer does not keep)."""
    if vectorized:
        try:
            losses = fun(X)
        except Exception as error:
            raise RuntimeError(
                f"fun raised on a population of {len(X)} candidates (vectorized=True): {error!r}"
            ) from error
        try:
            losses = np.asarray(losses, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"fun(X) must return {len(X)} real numbers, got {losses!r}") from error
        if losses.shape != (len(X),):
            raise ValueError(
                f"fun(X) must return shape ({len(X)},) for X of shape {X.shape}, got shape {losses.shape}"
            )
        return losses
    losses = np.empty(len(X))
    for row, x in enumerate(X):
        try:
            value = fun(x)
        except Exception as error:
            raise RuntimeError(f"fun raised on candidate row {row} of {len(X)}: {error!r}") from error
        if np.ndim(value) != 0:
            raise ValueError(
                f"fun(x) must return a scalar, got shape {np.shape(value)} for candidate row {row}"
            )
        try:
            losses[row] = value
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"fun(x) must return a real number, got {value!r} for candidate row {row}"
            ) from error
    return losses


def minimize(fun, x0, method="cmaes", max_evals=20000, target=None, seed=0, vectorized=False,
             sigma0=0.5, callback=None, **options):
    """Minimise ``fun`` from ``x0`` with the gradient-free ``method``.

    ``fun(x)`` takes one (D,) vector, or with ``vectorized=True`` ``fun(X)``
    takes the (P, D) population and returns P losses. Stops when ``max_evals``
    is spent (never exceeded), when the best loss is ``<= target``, when the
    trainer reports a stop reason, or when ``callback(trainer)`` returns true.
    ``success`` means the target was reached, or, without a target, that the
    trainer stopped on its own criteria. ``options`` go to the trainer.
    """
    if not callable(fun):
        raise ValueError(f"fun must be callable, got {fun!r}")
    trainer_class = TRAINERS[check_choice("method", method, TRAINERS)]
    max_evals = check_int("max_evals", max_evals, 1)
    if target is not None:
        target = check_real("target", target)
    if not isinstance(vectorized, bool):
        raise ValueError(f"vectorized must be True or False, got {vectorized!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {callback!r}")
    trainer = trainer_class(x0, sigma0=sigma0, seed=seed, **options)
    return _run(trainer, fun, max_evals, target, vectorized, callback)


def _run(trainer, fun, max_evals, target, vectorized, callback):
    start = time.perf_counter()
    history, nfev = [], 0
    best_x, best_loss = trainer.best, trainer.best_loss
    message, success = f"max_evals={max_evals} reached", False
    while nfev < max_evals:
        reasons = trainer.stop()
        if reasons:
            message, success = f"trainer stopped: {reasons}", target is None
            break
        X = trainer.ask()
        count = min(len(X), max_evals - nfev)
        losses = evaluate(fun, X[:count], vectorized)
        nfev += count
        if count == len(X):
            trainer.tell(losses)
            best_x, best_loss = trainer.best, trainer.best_loss
        else:
            losses[~np.isfinite(losses)] = math.inf
            i = int(np.argmin(losses))
            if losses[i] < best_loss:
                best_x, best_loss = X[i].copy(), float(losses[i])
        history.append({"nfev": nfev, "nit": len(history) + 1, "best_loss": best_loss,
                        "seconds": time.perf_counter() - start})
        if target is not None and best_loss <= target:
            message, success = f"target {target} reached", True
            break
        if callback is not None and callback(trainer):
            message = "callback requested stop"
            break
    return OptimizeResult(x=best_x, fun=best_loss, nfev=nfev, nit=len(history), success=success,
                          message=message, method=trainer.name, history=history)
