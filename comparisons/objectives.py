"""Population objectives beyond the network's own loss, and a run that minimises one.

The 0-1 loss (misclassification rate) is what a classifier is judged by, but
its gradient is zero almost everywhere (it is piecewise constant in the
parameters), so backprop cannot minimise it; a gradient-free trainer only
needs its values. ``run_objective`` trains a problem's network on any
population objective with ``comparisons.minimize`` and logs the same trace,
on the same forward-pass-equivalent axis, as ``comparisons.runs.run``.
"""
import time

import numpy as np

import fastnet
from fastnet._checks import check_int, check_matrix, check_name, check_same_length
from comparisons.budget import Cost
from comparisons.optimize import minimize
from comparisons.problems import Problem
from comparisons.runs import METHOD_OPTIONS, Trace, prepared_data


def _check_network(net):
    if not isinstance(net, fastnet.Network):
        raise TypeError(f"net must be a fastnet.Network, got {type(net).__name__}")
    if not net.is_classifier:
        raise ValueError(f"the 0-1 loss needs a classifier (loss 'cross_entropy' or 'bce'), "
                         f"got a network with loss={net.loss_name!r}")
    return net


def _hard_targets(net, y):
    """The target matrix of ``y``, refused unless every row is a hard label."""
    Y = net.targets(y)
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("y must hold hard labels for the 0-1 loss (integer classes, or "
                         "one-hot / 0-1 rows), got targets strictly between 0 and 1")
    if net.loss_name == "cross_entropy" and not (Y.sum(axis=1) == 1).all():
        raise ValueError("y rows must be one-hot for the 0-1 loss of a softmax network, "
                         "got rows that do not hold exactly one 1")
    return Y


def zero_one_losses(net, thetas, X, y):
    """(P,) float64 misclassification rates of the P parameter vectors (rows of
    ``thetas``) of ``net`` on ``X``, ``y``.

    Predictions follow ``Network.predict`` and ``score``, ties included: a
    softmax network predicts the first index of its largest output, a
    sigmoid output predicts 1 only when it is strictly above 0.5 (exactly
    0.5 predicts 0); with several sigmoid outputs the rate is over every
    (sample, output) pair. ``y``: integer class labels or hard target rows.
    Each candidate is one compiled forward pass over all of ``X``.
    """
    net = _check_network(net)
    if np.ndim(thetas) != 2:
        raise ValueError(f"thetas must have shape (P, {net.n_params}) (one parameter vector "
                         f"per row), got shape {np.shape(thetas)}")
    thetas = check_matrix("thetas", thetas, net.dtype, net.n_params, "parameters per row")
    X = net._inputs(X)
    Y = _hard_targets(net, y)
    check_same_length("X", X, "y", Y)
    if net.layout.any:
        thetas = net.layout.fold(thetas, net.running_stats)
    return np.array([1.0 - net.score_outputs(net.engine.forward(theta, X), Y)
                     for theta in thetas])


#: objective name -> f(net, thetas, X, y) -> (P,) values to minimise
OBJECTIVES = {
    "loss": lambda net, thetas, X, y: net.population_loss(thetas, X, y),
    "zero_one": zero_one_losses,
}


def run_objective(problem, method, seed, budget, objective="zero_one", options=None):
    """Train ``problem``'s network (initialised from ``seed``) with the gradient-free
    ``method`` on ``objective`` (a name in OBJECTIVES), within ``budget``
    forward-pass equivalents: one candidate on N training samples costs N.

    Returns a record shaped like ``comparisons.runs.run``'s (its ``trace`` logs
    the best candidate so far; ``train_loss`` is its objective value) plus
    ``objective``. ``options`` override ``comparisons.runs.METHOD_OPTIONS``.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a comparisons.problems.Problem, got {problem!r}")
    method = check_name("method", method, METHOD_OPTIONS)
    objective = check_name("objective", objective, OBJECTIVES)
    seed = check_int("seed", seed, 0)
    budget = check_int("budget", budget)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict of the method's settings, got {options!r}")
    net = problem.network(seed=seed)
    data = prepared_data(net, problem)
    X_train, Y_train = data[0], data[1]
    per_candidate = len(X_train)
    if budget < per_candidate:
        raise ValueError(f"budget={budget:,} forward-pass equivalents is less than one "
                         f"evaluation on the {per_candidate} training samples")

    def fun(thetas):
        return OBJECTIVES[objective](net, thetas, X_train, Y_train)

    trace = Trace(net, data, budget)
    trace.log(Cost(), net.params, fun(net.params[None])[0], force=True)
    logger = _BestLogger(net, trace, per_candidate)
    options = {**METHOD_OPTIONS[method], **(options or {})}
    result = minimize(fun, net.params.astype(np.float64), method,
                      max_evals=budget // per_candidate, seed=seed, vectorized=True,
                      callback=logger, **options)
    cost = logger.cost(result.nfev)
    trace.log(cost, np.ascontiguousarray(result.x, dtype=net.dtype), result.fun, force=True)
    return {"problem": problem.name, "method": method, "objective": objective, "seed": seed,
            "budget": budget, "n_params": net.n_params, "sizes": list(net.sizes),
            "n_train": per_candidate, "options": options, "status": "completed",
            "message": result.message, "trace": trace.points, "evals": cost.evals,
            "fpe": cost.fpe, "seconds": cost.seconds}


class _BestLogger:
    """``minimize``'s callback: logs the best candidate so far into a ``Trace``.
    Its seconds count training only: the time spent logging is taken out."""

    def __init__(self, net, trace, per_candidate):
        self.net, self.trace, self.per_candidate = net, trace, per_candidate
        self.start, self.logging = time.perf_counter(), 0.0

    def cost(self, nfev):
        seconds = time.perf_counter() - self.start - self.logging
        return Cost(evals=nfev, fpe=nfev * self.per_candidate, seconds=seconds)

    def __call__(self, trainer):
        cost = self.cost(trainer.nfev)
        started = time.perf_counter()
        self.trace.log(cost, np.ascontiguousarray(trainer.best, dtype=self.net.dtype),
                       trainer.best_loss)
        self.logging += time.perf_counter() - started
