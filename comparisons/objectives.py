"""Population objectives beyond the network's own loss.

The 0-1 loss (misclassification rate) is what a classifier is judged by, but
its gradient is zero almost everywhere (it is piecewise constant in the
parameters), so backprop cannot minimise it; a gradient-free trainer only
needs its values. ``comparisons.runs.run(..., objective="zero_one")`` trains a
problem's network on it, on the same budget and trace as any other run.
"""
import numpy as np

import fastnet
from fastnet._checks import check_matrix, check_same_length


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
