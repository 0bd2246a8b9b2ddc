"""Callbacks for ``fit``: functions ``f(net, epoch, logs)`` called after each
epoch (one returning True stops the fit). A callback object may also have
``on_fit_start(net, epochs_done)``, which ``fit`` calls before its first
epoch (``epochs_done`` > 0 when it resumes from a checkpoint).
"""
import numpy as np

from fastnet._checks import check_int, check_same_length


class GradientNorms:
    """Records the L2 norm of each layer's weight gradient dL/dW_l on a fixed
    probe batch, before the first epoch and after every ``every`` epochs.

    The gradient is ``net.loss_and_grad(X_probe, y_probe, training=True)``:
    with batch normalisation the probe is normalised by its own statistics,
    as a training batch is; no dropout. ``epochs[k]`` is the number of epochs
    trained when ``norms[k]`` (one value per layer, input side first) was
    taken. The probe must suit the network passed to ``fit`` (checked at the
    first record).
    """

    def __init__(self, X_probe, y_probe, every=1):
        self.X_probe = np.asarray(X_probe)
        self.y_probe = np.asarray(y_probe)
        check_same_length("X_probe", self.X_probe, "y_probe", self.y_probe)
        self.every = check_int("every", every)
        self._epochs, self._norms = [], []

    @property
    def epochs(self):
        """Epochs trained at each record, as an integer array."""
        return np.array(self._epochs, np.int64)

    @property
    def norms(self):
        """(records x layers) array of ||dL/dW_l||_2."""
        return np.array(self._norms, np.float64).reshape(len(self._norms), -1)

    def record(self, net, epochs_done):
        _, grad = net.loss_and_grad(self.X_probe, self.y_probe, training=True)
        self._epochs.append(epochs_done)
        self._norms.append([float(np.linalg.norm(layer[0])) for layer in net.unflatten(grad)])

    def on_fit_start(self, net, epochs_done):
        if not self._epochs or self._epochs[-1] != epochs_done:
            self.record(net, epochs_done)

    def __call__(self, net, epoch, logs):
        if (epoch + 1) % self.every == 0:
            self.record(net, epoch + 1)
        return False
