"""The step (Heaviside) activation and its surrogate gradient, against NumPy."""
import numpy as np
import pytest

import fastnet
from fastnet import activations
from fastnet.backends import cpu

DTYPES = [np.float32, np.float64]


def heaviside(z):
    return (z > 0).astype(z.dtype)


def fast_sigmoid_slope(z):
    """Zenke and Ganguli's surrogate: d/dz z / (1 + |z|) = 1 / (1 + |z|)^2."""
    return 1.0 / (1.0 + np.abs(z)) ** 2


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_loss_and_grad(net, params, X, y):
    """BCE of a sigmoid output after step hidden layers, in float64; the
    backward pass uses the surrogate slope where the step's derivative is 0."""
    layers = [(W.astype(np.float64), b.astype(np.float64)) for W, b in net.unflatten(params)]
    activations_in, pre_activations = [X.astype(np.float64)], []
    for W, b in layers:
        z = activations_in[-1] @ W + b
        pre_activations.append(z)
        activations_in.append(heaviside(z) if len(pre_activations) < len(layers) else sigmoid(z))
    p = activations_in[-1][:, 0]
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    delta = ((p - y) / len(y))[:, None]          # BCE after a sigmoid: dL/dz = p - y
    grads = []
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        grads.append((activations_in[l].T @ delta, delta.sum(axis=0)))
        if l:
            delta = (delta @ W.T) * fast_sigmoid_slope(pre_activations[l - 1])
    flat = np.concatenate([part.ravel() for pair in reversed(grads) for part in pair])
    return loss, flat


def data(dtype, n=23, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(dtype)
    return X, (X[:, 0] * X[:, 1] > 0).astype(dtype)


def test_step_is_a_hidden_activation_with_a_surrogate_gradient():
    assert "step" in activations.HIDDEN_ACTIVATIONS
    assert "step" in activations.SURROGATE_ACTIVATIONS
    assert set(activations.SURROGATE_ACTIVATIONS) <= set(activations.HIDDEN_ACTIVATIONS)
    net = fastnet.Network([2, 3, 1], activation="heaviside", output="sigmoid")
    assert net.hidden_activations == ["step"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_is_heaviside_of_the_pre_activation(dtype):
    net = fastnet.Network([3, 6, 5, 1], activation="step", output="sigmoid", dtype=dtype, seed=3)
    X, _ = data(dtype)
    (W1, b1), (W2, b2), (W3, b3) = [(W.astype(np.float64), b.astype(np.float64))
                                    for W, b in net.unflatten(net.params)]
    hidden = heaviside(heaviside(X.astype(np.float64) @ W1 + b1) @ W2 + b2)
    assert set(np.unique(hidden)) <= {0.0, 1.0}
    expected = sigmoid(hidden @ W3 + b3)
    tolerance = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(net.forward(X), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_step_and_surrogate(dtype):
    activate, derivative = cpu.activate, cpu.derivative
    # strictly positive fires: step(0) = 0; NaN passes through, as with relu
    for z, expected in [(-2.0, 0.0), (0.0, 0.0), (1e-30, 1.0), (3.0, 1.0)]:
        assert activate(dtype(z), activations.STEP) == expected
    assert np.isnan(activate(dtype(np.nan), activations.STEP))
    # 1 / (1 + |z|)^2: 1 at 0, 1/4 at +-1, 1/16 at +-3
    for z, expected in [(0.0, 1.0), (1.0, 0.25), (-1.0, 0.25), (3.0, 0.0625)]:
        assert derivative(dtype(z), activate(dtype(z), activations.STEP),
                          activations.STEP) == expected


@pytest.mark.parametrize("dtype", DTYPES)
def test_backprop_uses_the_fast_sigmoid_surrogate(dtype):
    net = fastnet.Network([3, 6, 5, 1], activation="step", output="sigmoid", dtype=dtype, seed=1)
    X, y = data(dtype)
    loss, grad = net.loss_and_grad(X, y)
    expected_loss, expected_grad = reference_loss_and_grad(net, net.params, X, y)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(grad, expected_grad, rtol=tolerance * 10, atol=tolerance)
    # the first layer's gradient is non-zero only thanks to the surrogate
    first_layer = net.unflatten(grad)[0][0]
    assert np.abs(first_layer).max() > 1e-4


def test_population_loss_matches_the_loss():
    net = fastnet.Network([3, 8, 1], activation="step", output="sigmoid", dtype=np.float64)
    X, y = data(np.float64, n=40)
    thetas = net.params + np.random.default_rng(2).normal(0, 0.5, (5, net.n_params))
    expected = [net.loss(X, y, params=theta) for theta in thetas]
    np.testing.assert_allclose(net.population_loss(thetas, X, y), expected, rtol=1e-12)


def test_surrogate_gradient_trains_a_step_network():
    """The surrogate is useful, not only defined: Adam on it fits XOR-like data."""
    X, y = data(np.float64, n=200, seed=4)
    net = fastnet.Network([3, 16, 1], activation="step", output="sigmoid", dtype=np.float64,
                          seed=0)
    before = net.score(X, y)
    net.fit(X, y, optimizer=fastnet.Adam(lr=0.02), epochs=60, batch_size=32, seed=0)
    assert net.score(X, y) > max(before, 0.8)
