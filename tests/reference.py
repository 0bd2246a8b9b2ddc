"""An independent NumPy float64 multi-layer perceptron, written from the textbook.

This is the oracle the engine is tested against, so it shares no code with
``fastnet`` and takes no shortcut that fastnet takes:

* the loss is computed from the *activated* output a, as in the textbook
  (-y log a for cross-entropy, -(y log a + (1 - y) log(1 - a)) for binary
  cross-entropy), not from the pre-activation z;
* backprop is the plain chain rule: dL/da from the loss, then the full
  Jacobian of the output activation (softmax: diag(s) - s s^T), then
  f'(z) layer by layer, never the fused "yhat - y" of the canonical pairs.

Layout (the one fastnet documents): for each layer l, W_l (fan_in x fan_out,
C order) then b_l, concatenated into one flat vector.
Losses: mse and bce are means over all elements; cross_entropy is the mean
over samples of -sum_j y_j log softmax(z)_j with one-hot (or probability) rows.
"""
import numpy as np

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0


def _sigmoid(z):
    # exp(-|z|) never overflows; both branches are the textbook 1 / (1 + e^-z).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# name -> (f(z), f'(z)); each derivative written from calculus, not from f's value.
ACTIVATIONS = {
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1.0 / np.cosh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "leaky_relu": (lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
                   lambda z: np.where(z > 0, 1.0, LEAKY_SLOPE)),
    "elu": (lambda z: np.where(z > 0, z, ELU_ALPHA * (np.exp(np.minimum(z, 0)) - 1.0)),
            lambda z: np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0)))),
    "softplus": (lambda z: np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0.0), _sigmoid),
}
HIDDEN = tuple(ACTIVATIONS)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def one_hot(labels, k):
    Y = np.zeros((len(labels), k))
    Y[np.arange(len(labels)), labels] = 1.0
    return Y


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def unflatten(theta, sizes):
    """[(W_l, b_l)] from the flat vector: W_l row-major (fan_in x fan_out), then b_l."""
    theta = np.asarray(theta, dtype=np.float64)
    assert theta.shape == (n_params(sizes),)
    layers, k = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        W = theta[k:k + fan_in * fan_out].reshape(fan_in, fan_out)
        k += fan_in * fan_out
        b = theta[k:k + fan_out]
        k += fan_out
        layers.append((W, b))
    return layers


def flatten(layers):
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])


class MLP:
    """sizes (input first), hidden activation names (one per hidden layer),
    output in {identity, sigmoid, tanh, softmax}, loss in {mse, bce, cross_entropy}."""

    def __init__(self, sizes, hidden, output, loss):
        self.sizes = list(sizes)
        self.hidden = [hidden] * (len(sizes) - 2) if isinstance(hidden, str) else list(hidden)
        assert len(self.hidden) == len(sizes) - 2
        self.output = output
        self.loss_name = loss

    # ------------------------------------------------------------ forward
    def _output(self, z):
        return softmax(z) if self.output == "softmax" else ACTIVATIONS[self.output][0](z)

    def forward_all(self, theta, X):
        """Pre-activations zs and activations acts (acts[0] = X) of every layer."""
        layers = unflatten(theta, self.sizes)
        acts, zs = [np.asarray(X, dtype=np.float64)], []
        for l, (W, b) in enumerate(layers):
            z = acts[-1] @ W + b
            zs.append(z)
            last = l == len(layers) - 1
            acts.append(self._output(z) if last else ACTIVATIONS[self.hidden[l]][0](z))
        return zs, acts

    def forward(self, theta, X):
        return self.forward_all(theta, X)[1][-1]

    # --------------------------------------------------------------- loss
    def loss(self, theta, X, Y):
        a = self.forward(theta, X)
        Y = np.asarray(Y, dtype=np.float64)
        n = len(Y)
        if self.loss_name == "mse":
            return np.mean((a - Y) ** 2)
        if self.loss_name == "bce":
            return -np.mean(Y * np.log(a) + (1.0 - Y) * np.log(1.0 - a))
        assert self.loss_name == "cross_entropy"
        # log softmax(z) = z - logsumexp(z), to keep log(a) finite
        z = self.forward_all(theta, X)[0][-1]
        top = z.max(axis=1, keepdims=True)
        log_a = z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))
        return -np.sum(Y * log_a) / n

    def _dloss_da(self, a, Y):
        """dL/da for the mean losses above."""
        n = len(Y)
        if self.loss_name == "mse":
            return 2.0 * (a - Y) / a.size
        if self.loss_name == "bce":
            return (-(Y / a) + (1.0 - Y) / (1.0 - a)) / a.size
        return -(Y / a) / n

    # ----------------------------------------------------------- backward
    def loss_and_grad(self, theta, X, Y):
        Y = np.asarray(Y, dtype=np.float64)
        layers = unflatten(theta, self.sizes)
        zs, acts = self.forward_all(theta, X)
        a = acts[-1]
        g_a = self._dloss_da(a, Y)
        # output layer: dL/dz = J^T dL/da, J the activation's Jacobian
        z = zs[-1]
        if self.output == "softmax":
            # J_ij = s_i (delta_ij - s_j), symmetric: (J g)_i = s_i (g_i - sum_j s_j g_j)
            delta = a * (g_a - np.sum(a * g_a, axis=1, keepdims=True))
        else:
            delta = g_a * ACTIVATIONS[self.output][1](z)
        grads = [None] * len(layers)
        for l in range(len(layers) - 1, -1, -1):
            W, _ = layers[l]
            grads[l] = (acts[l].T @ delta, delta.sum(axis=0))
            if l > 0:
                delta = (delta @ W.T) * ACTIVATIONS[self.hidden[l - 1]][1](zs[l - 1])
        return self.loss(theta, X, Y), flatten(grads)
