"""Backprop against an independent reference, central differences and a
network worked by hand.

Every hidden activation x every (output, loss) pair x depth 1-4 (number of
weight layers) is built twice: as a fastnet ``Network`` and as the textbook
NumPy float64 MLP in ``tests/reference.py``, on the same parameter vector.
"""
import itertools
import math

import numpy as np
import pytest

import fastnet
from reference import HIDDEN, MLP, one_hot

PAIRS = [("softmax", "cross_entropy"), ("sigmoid", "bce"), ("identity", "mse"),
         ("tanh", "mse")]
HIDDEN_WIDTHS = [4, 5, 3]
N_SAMPLES = 8
N_INPUTS = 3


def _cases():
    cases = []
    for (output, loss), depth in itertools.product(PAIRS, [1, 2, 3, 4]):
        # depth 1 has no hidden layer, so the hidden activation does not matter
        for activation in (HIDDEN if depth > 1 else ("identity",)):
            cases.append(pytest.param(activation, output, loss, depth,
                                      id=f"{activation}-{output}-{loss}-d{depth}"))
    return cases


CASES = _cases()


def _problem(activation, output, loss, depth, index):
    """A seeded network, parameter vector and data set for one case.

    Central differences carry rounding noise of ~1e-16 * |L| / eps = 1e-11,
    so a correct gradient component of 1e-6 would already show a relative
    error of 1e-5. Cases are therefore drawn (seeded) until, by the
    *reference*, every gradient component is exactly 0 or above 1e-4 and no
    pre-activation lies within 1e-3 of a kink (relu, leaky_relu, elu at 0).
    """
    n_out = 3 if output == "softmax" else 2
    sizes = [N_INPUTS] + HIDDEN_WIDTHS[:depth - 1] + [n_out]
    ref = MLP(sizes, activation, output, loss)
    scale = 1.5 if activation == "sigmoid" else 0.8  # sigmoid' <= 1/4 shrinks gradients
    for attempt in range(200):
        rng = np.random.default_rng([2024, index, attempt])
        X = rng.normal(size=(N_SAMPLES, N_INPUTS))
        if loss == "cross_entropy":
            y = rng.integers(0, n_out, N_SAMPLES)
            Y = one_hot(y, n_out)
        elif loss == "bce":
            y = Y = rng.uniform(0.05, 0.95, size=(N_SAMPLES, n_out))
        elif output == "tanh":
            y = Y = rng.uniform(-0.9, 0.9, size=(N_SAMPLES, n_out))
        else:
            y = Y = rng.normal(size=(N_SAMPLES, n_out))
        layers = [(rng.normal(0, scale, (a, b)), rng.normal(0, 0.3, b))
                  for a, b in zip(sizes[:-1], sizes[1:])]
        theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])
        zs, _ = ref.forward_all(theta, X)
        _, grad = ref.loss_and_grad(theta, X, Y)
        small = (grad != 0) & (np.abs(grad) < 1e-4)
        near_kink = any(np.any(np.abs(z) < 1e-3) for z in zs[:-1])
        if not small.any() and not near_kink:
            return sizes, ref, theta, X, y, Y
    raise AssertionError(f"no well-conditioned case found for {activation}-{output}-d{depth}")


def _network(sizes, activation, output, loss, theta, dtype):
    net = fastnet.Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype)
    assert net.n_params == theta.size
    net.params[:] = theta
    return net


def _rel(a, b):
    """max |a - b| relative to the largest |b| (robust to components near 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("activation,output,loss,depth", CASES)
def test_gradcheck_float64(activation, output, loss, depth):
    index = [c.id for c in CASES].index(f"{activation}-{output}-{loss}-d{depth}")
    sizes, _, theta, X, y, _ = _problem(activation, output, loss, depth, index)
    net = _network(sizes, activation, output, loss, theta, np.float64)
    assert fastnet.gradcheck(net, X, y) < 1e-6


@pytest.mark.parametrize("activation,output,loss,depth", CASES)
def test_matches_reference_float64(activation, output, loss, depth):
    index = [c.id for c in CASES].index(f"{activation}-{output}-{loss}-d{depth}")
    sizes, ref, theta, X, y, Y = _problem(activation, output, loss, depth, index)
    net = _network(sizes, activation, output, loss, theta, np.float64)

    assert _rel(net.forward(X), ref.forward(theta, X)) < 1e-10
    ref_loss, ref_grad = ref.loss_and_grad(theta, X, Y)
    assert net.loss(X, y) == pytest.approx(ref_loss, rel=1e-10)
    value, grad = net.loss_and_grad(X, y)
    assert value == pytest.approx(ref_loss, rel=1e-10)
    assert grad.shape == theta.shape and grad.dtype == np.float64
    assert _rel(grad, ref_grad) < 1e-10
    # every layer's block of the gradient is exercised, biases included
    assert all(np.any(gW != 0) and np.any(gb != 0) for gW, gb in net.unflatten(grad))


@pytest.mark.parametrize("activation,output,loss,depth", CASES)
def test_matches_reference_float32(activation, output, loss, depth):
    """float32 against the reference evaluated at the float32-rounded parameters and data."""
    index = [c.id for c in CASES].index(f"{activation}-{output}-{loss}-d{depth}")
    sizes, ref, theta, X, y, Y = _problem(activation, output, loss, depth, index)
    net = _network(sizes, activation, output, loss, theta, np.float32)
    theta32 = net.params.astype(np.float64)
    X32 = X.astype(np.float32).astype(np.float64)
    Y32 = Y.astype(np.float32).astype(np.float64)

    out = net.forward(X)
    assert out.dtype == np.float32
    assert _rel(out, ref.forward(theta32, X32)) < 1e-5
    ref_loss, ref_grad = ref.loss_and_grad(theta32, X32, Y32)
    assert net.loss(X, y) == pytest.approx(ref_loss, rel=1e-5)
    value, grad = net.loss_and_grad(X, y)
    assert grad.dtype == np.float32
    assert value == pytest.approx(ref_loss, rel=1e-5)
    assert _rel(grad, ref_grad) < 1e-5


def test_leaky_relu_slope_is_exact_in_float64():
    # 1-1-1 net: z1 = x, h = leaky_relu(z1), yhat = h; x = -1 -> yhat = -0.01 exactly,
    # as in float64 PyTorch (-1.0 * 0.01 == -0.01).
    net = fastnet.Network([1, 1, 1], activation="leaky_relu", output="identity",
                          dtype=np.float64)
    net.params[:] = [1.0, 0.0, 1.0, 0.0]
    assert net.forward([[-1.0]])[0, 0] == -0.01
    _, grad = net.loss_and_grad([[-1.0]], [0.0])
    # dL/dyhat = 2 * (-0.01 - 0) = -0.02; dL/dW1 = -0.02 * 1 * 0.01 * x(-1) = 0.0002
    assert grad[0] == pytest.approx(2e-4, rel=1e-15)


def test_cross_entropy_with_probability_targets():
    """Soft targets (rows summing to 1) give the textbook -sum y log softmax(z)."""
    rng = np.random.default_rng(7)
    sizes = [3, 4, 3]
    ref = MLP(sizes, "tanh", "softmax", "cross_entropy")
    net = fastnet.Network(sizes, activation="tanh", output="softmax", dtype=np.float64)
    theta = rng.normal(0, 0.6, net.n_params)
    net.params[:] = theta
    X = rng.normal(size=(6, 3))
    Y = rng.dirichlet(np.ones(3), size=6)
    ref_loss, ref_grad = ref.loss_and_grad(theta, X, Y)
    value, grad = net.loss_and_grad(X, Y)
    assert value == pytest.approx(ref_loss, rel=1e-12)
    assert _rel(grad, ref_grad) < 1e-12
    assert fastnet.gradcheck(net, X, Y) < 1e-6


def test_cross_entropy_of_saturated_softmax_matches_the_log_sum_exp():
    """Training reads the loss off the softmax (lse = z_k - log a_k at the
    argmax k); logits 1000 apart underflow every other class's probability
    to 0, and the loss must still be the reference's, as ``net.loss`` gives."""
    sizes = [2, 3, 3]
    ref = MLP(sizes, "identity", "softmax", "cross_entropy")
    net = fastnet.Network(sizes, activation="identity", output="softmax", dtype=np.float64)
    theta = np.random.default_rng(11).normal(0, 30.0, net.n_params)
    net.params[:] = theta
    X = np.array([[10.0, -10.0], [-10.0, 10.0], [3.0, 7.0]])
    y = np.array([0, 1, 2])
    ref_loss = ref.loss(theta, X, one_hot(y, 3))
    assert ref_loss > 100  # saturated: most probabilities underflow
    value, _ = net.loss_and_grad(X, y)
    assert value == pytest.approx(ref_loss, rel=1e-12)
    assert net.loss(X, y) == pytest.approx(ref_loss, rel=1e-12)


def test_float32_cross_entropy_near_zero_keeps_its_digits():
    """A confident classifier's loss (~1e-6) in float32 is accurate to a few
    ulp of itself, by every path: log(1 + r) in float32 would round r ~ 1e-6 to
    a multiple of 1.2e-7 (errors of several percent)."""
    sizes = [2, 4, 3]
    ref = MLP(sizes, "identity", "softmax", "cross_entropy")
    net = fastnet.Network(sizes, activation="identity", output="softmax", dtype=np.float32)
    rng = np.random.default_rng(4)
    net.params[:] = rng.normal(0, 0.1, net.n_params)
    W2, b2 = net.unflatten(net.params)[1]
    b2[:] = [14.0, 0.0, -1.0]  # class 0 wins by ~14: softmax(z)_0 = 1 - ~1e-6
    X = rng.normal(size=(64, 2)).astype(np.float32)
    y = np.zeros(64, dtype=np.int64)
    theta = net.params.astype(np.float64)
    ref_loss = ref.loss(theta, X.astype(np.float64), one_hot(y, 3))
    assert 1e-7 < ref_loss < 1e-5
    assert net.loss(X, y) == pytest.approx(ref_loss, rel=1e-5)
    assert net.loss_and_grad(X, y)[0] == pytest.approx(ref_loss, rel=1e-5)
    assert net.population_loss(net.params[None, :], X, y)[0] == pytest.approx(ref_loss, rel=1e-5)


def test_gradient_is_accumulated_over_chunks():
    """More rows than the engine's chunk (256): the mean must cover every chunk."""
    rng = np.random.default_rng(3)
    sizes = [4, 6, 2]
    ref = MLP(sizes, "sigmoid", "identity", "mse")
    net = fastnet.Network(sizes, activation="sigmoid", output="identity", dtype=np.float64)
    theta = rng.normal(0, 0.6, net.n_params)
    net.params[:] = theta
    X = rng.normal(size=(600, 4))
    Y = rng.normal(size=(600, 2))
    ref_loss, ref_grad = ref.loss_and_grad(theta, X, Y)
    value, grad = net.loss_and_grad(X, Y)
    assert value == pytest.approx(ref_loss, rel=1e-12)
    assert _rel(grad, ref_grad) < 1e-12
    assert _rel(net.forward(X), ref.forward(theta, X)) < 1e-13


def test_params_argument_is_used_instead_of_net_params():
    rng = np.random.default_rng(5)
    sizes = [3, 4, 2]
    ref = MLP(sizes, "relu", "sigmoid", "bce")
    net = fastnet.Network(sizes, activation="relu", output="sigmoid", dtype=np.float64)
    before = net.params.copy()
    theta = rng.normal(0, 0.6, net.n_params)
    X = rng.normal(size=(5, 3))
    y = rng.integers(0, 2, (5, 2))
    value, grad = net.loss_and_grad(X, y, params=theta)
    ref_loss, ref_grad = ref.loss_and_grad(theta, X, y)
    assert value == pytest.approx(ref_loss, rel=1e-12)
    assert _rel(grad, ref_grad) < 1e-12
    assert net.loss(X, y, params=theta) == pytest.approx(ref_loss, rel=1e-12)
    assert _rel(net.forward(X, params=theta), ref.forward(theta, X)) < 1e-13
    np.testing.assert_array_equal(net.params, before)


def test_unflatten_layout():
    """W_l is (fan_in x fan_out) in C order, then b_l; the views share memory."""
    net = fastnet.Network([2, 3, 1], dtype=np.float64)
    net.params[:] = np.arange(net.n_params)
    assert net.n_params == 2 * 3 + 3 + 3 * 1 + 1
    (W1, b1), (W2, b2) = net.unflatten(net.params)
    np.testing.assert_array_equal(W1, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(b1, [6, 7, 8])
    np.testing.assert_array_equal(W2, [[9], [10], [11]])
    np.testing.assert_array_equal(b2, [12])
    W1[0, 0] = 100.0
    assert net.params[0] == 100.0


# ------------------------------------------------------ worked by hand
def _hand_network():
    """A 2-2-1 network, sigmoid hidden layer, identity output, mse.

        W1 = [[1, -1], [-0.5, 0.5]], b1 = [0, ln 3]
        W2 = [[2], [-4]],            b2 = [1]
    """
    net = fastnet.Network([2, 2, 1], activation="sigmoid", output="identity", loss="mse",
                          dtype=np.float64)
    (W1, b1), (W2, b2) = net.unflatten(net.params)
    W1[:] = [[1.0, -1.0], [-0.5, 0.5]]
    b1[:] = [0.0, math.log(3.0)]
    W2[:] = [[2.0], [-4.0]]
    b2[:] = [1.0]
    return net


def test_hand_worked_example():
    net = _hand_network()
    # Sample 1: x = (1, 2), y = 1.
    #   z1 = x W1 + b1 = (1 - 1, -1 + 1 + ln 3) = (0, ln 3)
    #   h  = sigmoid(z1) = (1/2, 1 / (1 + 1/3)) = (0.5, 0.75)
    #   yhat = h W2 + b2 = 0.5*2 - 0.75*4 + 1 = -1
    #   (yhat - y)^2 = 4
    # Sample 2: x = (0, 0), y = -1.
    #   z1 = b1 = (0, ln 3), h = (0.5, 0.75), yhat = -1, (yhat - y)^2 = 0
    # mse = (4 + 0) / 2 = 2
    X = np.array([[1.0, 2.0], [0.0, 0.0]])
    y = np.array([1.0, -1.0])
    np.testing.assert_allclose(net.forward(X), [[-1.0], [-1.0]], rtol=1e-15)
    assert net.loss(X, y) == pytest.approx(2.0, rel=1e-15)
    # Backward (sample 2 contributes nothing, its error is 0; the mean halves sample 1's):
    #   dL/dyhat = 2 (yhat - y) / n = 2 * (-2) / 2 = -2
    #   dL/dW2 = h^T dL/dyhat = (0.5, 0.75) * -2 = (-1, -1.5);  dL/db2 = -2
    #   dL/dh  = dL/dyhat W2^T = -2 * (2, -4) = (-4, 8)
    #   sigmoid'(z1) = h (1 - h) = (0.25, 0.1875)
    #   dL/dz1 = (-4 * 0.25, 8 * 0.1875) = (-1, 1.5)
    #   dL/dW1 = x^T dL/dz1 = [[1 * -1, 1 * 1.5], [2 * -1, 2 * 1.5]] = [[-1, 1.5], [-2, 3]]
    #   dL/db1 = (-1, 1.5)
    value, grad = net.loss_and_grad(X, y)
    assert value == pytest.approx(2.0, rel=1e-15)
    expected = [-1.0, 1.5, -2.0, 3.0,   # W1, row-major
                -1.0, 1.5,              # b1
                -1.0, -1.5,             # W2
                -2.0]                   # b2
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=1e-15)


def test_hand_worked_example_one_sgd_step():
    """fit with plain SGD, lr 0.1, one full batch: params -= 0.1 * grad (no shuffle effect)."""
    net = _hand_network()
    before = net.params.copy()
    X = np.array([[1.0, 2.0], [0.0, 0.0]])
    y = np.array([1.0, -1.0])
    history = net.fit(X, y, optimizer=fastnet.SGD(lr=0.1), epochs=1, batch_size=2)
    expected_grad = np.array([-1.0, 1.5, -2.0, 3.0, -1.0, 1.5, -1.0, -1.5, -2.0])
    np.testing.assert_allclose(net.params, before - 0.1 * expected_grad, rtol=1e-14,
                               atol=1e-15)
    assert history.loss == [pytest.approx(2.0, rel=1e-15)]


def test_gradcheck_does_not_flag_a_correct_gradient_with_tiny_components():
    rng = np.random.default_rng(0)
    sizes = [3, 4, 2]
    net = fastnet.Network(sizes, activation="tanh", output="identity", dtype=np.float64)
    net.params[:] = rng.normal(0, 0.8, net.n_params)
    X = rng.normal(size=(8, 3))
    X[:, 0] *= 1e-6   # the first input barely matters: its weights' gradients are ~1e-8
    y = rng.normal(size=(8, 2))
    _, grad = net.loss_and_grad(X, y)
    _, ref_grad = MLP(sizes, "tanh", "identity", "mse").loss_and_grad(net.params, X, y)
    assert _rel(grad, ref_grad) < 1e-12   # the gradient is right ...
    assert fastnet.gradcheck(net, X, y) < 1e-6   # ... so the check should pass
