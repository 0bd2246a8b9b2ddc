"""Batch normalisation: gradients against central differences and an independent
NumPy reference (Ioffe & Szegedy 2015, Algorithm 1 and the backward pass as
the paper writes it), inference through the running statistics against an
unfolded reference, PyTorch's running-statistics rule, and fit's features
(early stopping, checkpoints, save / load) carrying the statistics along."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet
from tests import reference

EPS = 1e-5


# ---------------------------------------------------------- the reference
def unpack(theta, sizes, flags):
    """Per layer (W, b, gamma, beta) from the documented layout (None without BN)."""
    layers, offset = [], 0
    for fan_in, fan_out, on in zip(sizes[:-1], sizes[1:], list(flags) + [False]):
        W = theta[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        b = theta[offset:offset + fan_out]
        offset += fan_out
        gamma = beta = None
        if on:
            gamma, beta = theta[offset:offset + fan_out], theta[offset + fan_out:
                                                               offset + 2 * fan_out]
            offset += 2 * fan_out
        layers.append((W, b, gamma, beta))
    assert offset == theta.size
    return layers


def reference_training(theta, sizes, flags, hidden, X, Y, loss):
    """(loss, gradient, per-layer batch (mean, biased var)) with batch statistics,
    backward as in the paper: dvar, dmean, then dx."""
    layers = unpack(theta, sizes, flags)
    f, df = reference.ACTIVATIONS[hidden]
    n = X.shape[0]
    cache, stats, a = [], [], X
    for l, (W, b, gamma, beta) in enumerate(layers):
        z = a @ W + b
        if gamma is not None:
            mu, var = z.mean(0), z.var(0)
            xhat = (z - mu) / np.sqrt(var + EPS)
            y = gamma * xhat + beta
            stats.append((mu, var))
        else:
            mu = var = xhat = None
            y = z
        cache.append((a, z, mu, var, xhat, y))
        a = f(y) if l < len(layers) - 1 else y
    if loss == "cross_entropy":
        p = reference.softmax(a)
        value = -np.sum(Y * np.log(p)) / n
        dy = (p - Y) / n
    else:
        value = np.mean((a - Y) ** 2)
        dy = 2 * (a - Y) / a.size
    grads = []
    for l in range(len(layers) - 1, -1, -1):
        W, b, gamma, beta = layers[l]
        a_in, z, mu, var, xhat, y = cache[l]
        if l < len(layers) - 1:
            dy = dy * df(y)
        extra = []
        if gamma is not None:
            dgamma, dbeta = (dy * xhat).sum(0), dy.sum(0)
            dxhat = dy * gamma
            dvar = (dxhat * (z - mu)).sum(0) * -0.5 * (var + EPS) ** -1.5
            dmu = (-dxhat / np.sqrt(var + EPS)).sum(0) + dvar * (-2 * (z - mu)).sum(0) / n
            dz = dxhat / np.sqrt(var + EPS) + dvar * 2 * (z - mu) / n + dmu / n
            extra = [dgamma, dbeta]
        else:
            dz = dy
        grads = [(a_in.T @ dz).ravel(), dz.sum(0)] + extra + grads
        dy = dz @ W.T
    return value, np.concatenate(grads), stats


def reference_inference(theta, sizes, flags, hidden, X, running):
    """Outputs with the running statistics, normalising explicitly (no folding)."""
    f = reference.ACTIVATIONS[hidden][0]
    running = iter(running)
    layers = unpack(theta, sizes, flags)
    a = X
    for l, (W, b, gamma, beta) in enumerate(layers):
        z = a @ W + b
        if gamma is not None:
            mean, var = next(running)
            z = gamma * (z - mean) / np.sqrt(var + EPS) + beta
        a = f(z) if l < len(layers) - 1 else reference.softmax(z)
    return a


def problem(n=9, n_in=3, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, n_out, n)


def perturbed_net(sizes, hidden, flags, loss="cross_entropy", seed=0):
    """A float64 network whose gamma, beta, b and running statistics are not at
    their initial values (so every term of the formulas is exercised)."""
    output = "softmax" if loss == "cross_entropy" else "identity"
    net = fastnet.Network(sizes, activation=hidden, output=output, loss=loss,
                          batch_norm=flags, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 1)
    net.params = net.params + 0.3 * rng.normal(size=net.n_params)
    net.running_stats = np.concatenate([np.concatenate([rng.normal(size=mean.size),
                                                        rng.uniform(0.2, 3, var.size)])
                                        for mean, var in net.running_moments()])
    return net


def central_differences(function, theta, eps=1e-5):
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (function(up) - function(down)) / (2 * eps)
    return numeric


def relative_error(grad, numeric, loss):
    """As fastnet.gradcheck: relative, with a floor of max(1e-7, 1e-4 |L|) for
    coordinates whose gradient is below the rounding noise of the differences."""
    floor = max(1e-7, 1e-4 * abs(loss))
    return np.max(np.abs(grad - numeric) / np.maximum(np.abs(grad) + np.abs(numeric), floor))


CASES = [([3, 5, 3], "tanh", True, "cross_entropy"),
         ([3, 4, 5, 3], "sigmoid", True, "cross_entropy"),
         ([3, 4, 5, 3], "relu", [True, False], "mse"),
         ([3, 6, 4, 5, 3], "elu", [False, True, True], "cross_entropy"),
         ([3, 4, 4, 3], "softplus", True, "mse"),
         ([3, 5, 4, 3], "leaky_relu", [True, True], "cross_entropy")]


# ------------------------------------------------------------- gradients
@pytest.mark.parametrize("sizes, hidden, flags, loss", CASES)
def test_training_gradient_matches_central_differences(sizes, hidden, flags, loss):
    net = perturbed_net(sizes, hidden, flags, loss)
    X, y = problem(n_out=sizes[-1])
    Y = y if loss == "cross_entropy" else np.eye(sizes[-1])[y]
    value, grad = net.loss_and_grad(X, Y, training=True)
    numeric = central_differences(lambda t: net.loss(X, Y, params=t, training=True),
                                  net.params.copy())
    assert relative_error(grad, numeric, value) < 1e-6
    # b cancels in the normalisation: its gradient is exactly zero up to rounding
    for layer in net.unflatten(grad):
        if len(layer) == 4:
            assert np.abs(layer[1]).max() < 1e-12


@pytest.mark.parametrize("sizes, hidden, flags, loss", CASES)
def test_training_pass_matches_numpy_reference(sizes, hidden, flags, loss):
    net = perturbed_net(sizes, hidden, flags, loss, seed=3)
    X, y = problem(n=11, n_out=sizes[-1], seed=4)
    Y = np.eye(sizes[-1])[y]
    value, grad = net.loss_and_grad(X, Y, training=True)
    ref_value, ref_grad, _ = reference_training(net.params, sizes, net.batch_norm, hidden, X,
                                                Y, loss)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sizes, hidden, flags, loss", CASES[:3])
def test_inference_gradient_matches_central_differences(sizes, hidden, flags, loss):
    """loss_and_grad(training=False) is the gradient of loss(): through the fold."""
    net = perturbed_net(sizes, hidden, flags, loss, seed=5)
    X, y = problem(n_out=sizes[-1], seed=6)
    value, grad = net.loss_and_grad(X, y if loss == "cross_entropy" else np.eye(3)[y])
    Y = y if loss == "cross_entropy" else np.eye(3)[y]
    numeric = central_differences(lambda t: net.loss(X, Y, params=t), net.params.copy())
    assert relative_error(grad, numeric, value) < 1e-6


# ------------------------------------------------------------- inference
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_inference_uses_running_statistics(dtype, tolerance):
    sizes, flags = [3, 6, 5, 4, 3], [True, False, True]
    net = perturbed_net(sizes, "tanh", flags).copy(dtype=dtype)
    X, y = problem(n=20, seed=7)
    expected = reference_inference(net.params.astype(np.float64), sizes, flags, "tanh", X,
                                   [(m.astype(np.float64), v.astype(np.float64))
                                    for m, v in net.running_moments()])
    np.testing.assert_allclose(net.forward(X), expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(net.predict(X), expected.argmax(1))
    assert net.loss(X, y) == pytest.approx(
        -np.log(expected[np.arange(20), y]).mean(), rel=tolerance * 10)
    rng = np.random.default_rng(8)
    thetas = net.params + 0.2 * rng.normal(size=(5, net.n_params)).astype(dtype)
    np.testing.assert_allclose(net.population_loss(thetas, X, y),
                               [net.loss(X, y, params=theta) for theta in thetas],
                               rtol=tolerance * 10)


def test_layout_puts_gamma_and_beta_after_their_layer():
    net = fastnet.Network([4, 3, 5, 2], batch_norm=[True, False], seed=1)
    assert net.n_params == (4 * 3 + 3 + 2 * 3) + (3 * 5 + 5) + (5 * 2 + 2)
    first, second, last = net.unflatten(net.params)
    W, b, gamma, beta = first
    assert W.shape == (4, 3) and gamma.tolist() == [1, 1, 1] and beta.tolist() == [0, 0, 0]
    assert len(second) == 2 and len(last) == 2
    assert np.shares_memory(gamma, net.params)
    plain = fastnet.Network([4, 3, 5, 2], seed=1)
    # the same weights as the plain network: gamma and beta are inserted, not drawn
    np.testing.assert_array_equal(W, plain.unflatten(plain.params)[0][0])
    mean, var = net.running_moments()[0]
    assert mean.tolist() == [0, 0, 0] and var.tolist() == [1, 1, 1]


def test_running_statistics_follow_pytorch_rule():
    """running = 0.9 running + 0.1 batch, the batch variance unbiased (n / (n-1))."""
    sizes, flags = [3, 4, 5, 3], [True, True]
    net = fastnet.Network(sizes, activation="sigmoid", output="softmax", batch_norm=flags,
                          dtype=np.float64, seed=2)
    X, y = problem(n=8, seed=9)
    expected = [(np.zeros(4), np.ones(4)), (np.zeros(5), np.ones(5))]
    trainer = fastnet.StepTrainer(net, fastnet.SGD(lr=0.5))
    for rows in (slice(0, 8), slice(2, 6)):
        _, _, batch = reference_training(net.params.copy(), sizes, flags, "sigmoid", X[rows],
                                         np.eye(3)[y[rows]], "cross_entropy")
        n = X[rows].shape[0]
        expected = [(0.9 * m + 0.1 * mu, 0.9 * v + 0.1 * var * n / (n - 1))
                    for (m, v), (mu, var) in zip(expected, batch)]
        trainer.step(X[rows], y[rows])
        for (mean, var), (ref_mean, ref_var) in zip(net.running_moments(), expected):
            np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(var, ref_var, rtol=1e-12)


# -------------------------------------------------------------- training
def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[0, 3], [3, 0], [-3, -3]])
    return centres[y] + rng.normal(size=(n, 2)), y


def test_fit_learns_with_batch_norm_and_dropout():
    X, y = blobs()
    net = fastnet.Network([2, 16, 16, 3], activation="sigmoid", output="softmax",
                          batch_norm=True, seed=0)
    history = net.fit(X, y, optimizer=fastnet.Adam(lr=0.02), epochs=30, batch_size=16,
                      dropout=0.1)
    assert history.stopped == "completed" and history.loss[-1] < history.loss[0] / 3
    assert net.score(X, y) > 0.95
    mean, var = net.running_moments()[0]
    assert np.abs(mean).max() > 0.1 and not np.allclose(var, 1)


def test_early_stopping_restores_parameters_and_their_statistics():
    X, y = blobs(seed=1)
    net = fastnet.Network([2, 8, 3], output="softmax", batch_norm=True, seed=0)
    seen = []
    history = net.fit(X, y, optimizer=fastnet.SGD(lr=0.5), epochs=40, batch_size=8,
                      validation_split=0.3, early_stopping=3,
                      callbacks=[lambda n, e, logs: seen.append((n.params.copy(),
                                                                 n.running_stats.copy()))])
    assert history.stopped == "early_stopping" and history.best_epoch < len(seen) - 1
    best_params, best_stats = seen[history.best_epoch]
    np.testing.assert_array_equal(net.params, best_params)
    np.testing.assert_array_equal(net.running_stats, best_stats)
    assert not np.array_equal(net.running_stats, seen[-1][1])


def test_checkpoint_resume_is_bit_for_bit(tmp_path):
    X, y = blobs(seed=2)
    options = dict(optimizer="adam", batch_size=10, dropout=0.2, validation_split=0.2)

    def network():
        return fastnet.Network([2, 6, 5, 3], output="softmax", batch_norm=[True, False])
    straight = network()
    straight.fit(X, y, epochs=6, **options)
    resumed = network()
    path = tmp_path / "fit.npz"
    resumed.fit(X, y, epochs=3, checkpoint=path, **options)
    fresh = network()
    fresh.fit(X, y, epochs=6, checkpoint=path, resume=True, **options)
    np.testing.assert_array_equal(fresh.params, straight.params)
    np.testing.assert_array_equal(fresh.running_stats, straight.running_stats)
    plain = fastnet.Network([2, 6, 5, 3], output="softmax")
    with pytest.raises(ValueError, match="network"):
        plain.fit(X, y, epochs=6, checkpoint=path, resume=True, **options)


def test_save_and_load_keep_running_statistics(tmp_path):
    net = perturbed_net([3, 5, 4, 3], "relu", [False, True])
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = fastnet.load(path)
    assert loaded.config() == net.config() and loaded.batch_norm == (False, True)
    np.testing.assert_array_equal(loaded.running_stats, net.running_stats)
    X, _ = problem(seed=10)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    np.testing.assert_array_equal(net.copy().running_stats, net.running_stats)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("value, error, words", [
    ("yes", TypeError, "batch_norm must be True, False or a list"),
    ([True], ValueError, "list of 2"),
    ([True, 1], TypeError, r"batch_norm\[1\] must be True or False"),
])
def test_bad_batch_norm_is_refused(value, error, words):
    with pytest.raises(error, match=words):
        fastnet.Network([3, 4, 4, 2], batch_norm=value)


def test_a_batch_of_one_sample_is_refused():
    net = fastnet.Network([3, 4, 3], output="softmax", batch_norm=True)
    X, y = problem(n=9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        net.loss(X[:1], y[:1], training=True)
    with pytest.raises(ValueError, match="batch_size=4 make a batch of 1"):
        net.fit(X, y, batch_size=4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fastnet.StepTrainer(net).step(X[:1], y[:1])
    assert np.isfinite(net.loss(X[:1], y[:1]))    # inference needs no batch statistics


def test_running_stats_are_checked():
    net = fastnet.Network([3, 4, 3], batch_norm=True)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        net.running_stats = np.zeros(3)
    with pytest.raises(ValueError, match="variances >= 0"):
        net.running_stats = -np.ones(8)


@pytest.mark.slow
def test_cuda_refuses_to_train_batch_norm_but_runs_inference():
    """In the CUDA simulator: the folded network runs on the GPU kernels."""
    pytest.importorskip("numba.cuda")
    code = """
import numpy as np, fastnet
from tests.test_batchnorm import perturbed_net, problem
net = perturbed_net([3, 5, 4, 3], "tanh", True).copy(dtype=np.float32)
gpu = net.copy(backend="cuda")
X, y = problem(seed=11)
np.testing.assert_allclose(gpu.forward(X), net.forward(X), rtol=1e-5, atol=1e-6)
thetas = np.stack([net.params, net.params * 0.9])
np.testing.assert_allclose(gpu.population_loss(thetas, X, y), net.population_loss(thetas, X, y),
                           rtol=1e-5)
try:
    gpu.fit(X, y, epochs=1)
except ValueError as error:
    assert "batch_norm" in str(error) and "backend='cuda'" in str(error), error
else:
    raise AssertionError("training batch_norm on cuda did not raise")
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
