"""Network: a topology plus one flat parameter vector.

Layer l stores W_l (fan_in x fan_out, C order) then b_l in ``params``, then,
on a hidden layer with batch normalisation, its gamma_l and beta_l (see
``fastnet.batchnorm``); every method can be given another vector of the same
layout (a candidate, a gradient, a moment) through ``params=`` or
``unflatten``.
"""
import numpy as np

from fastnet import activations, batchnorm, init as initializers, losses
from fastnet._checks import check_int, check_matrix, check_name, check_same_length
from fastnet.backends import cpu
from fastnet.engine import CpuEngine

DTYPES = (np.float32, np.float64)
#: Far beyond what this engine is for, and what the kernels' (and CUDA's 32-bit
#: grid) indexing is tested at: a bigger network is refused before allocation.
MAX_PARAMS = 2 ** 31 - 1


def _activation_names(activation, n_hidden):
    if not isinstance(activation, (str, list, tuple)):
        raise TypeError(f"activation must be a string naming an activation, or a list of "
                        f"them (one per hidden layer), got {activation!r}")
    names = [activation] * n_hidden if isinstance(activation, str) else list(activation)
    if len(names) != n_hidden:
        raise ValueError(f"activation must be one name or a list of {n_hidden} names "
                         f"(one per hidden layer), got {len(names)}: {activation!r}")
    return [check_name(f"activation[{i}]", name, activations.HIDDEN_ACTIVATIONS,
                       activations.ALIASES) for i, name in enumerate(names)]


def _output_and_loss(output, loss):
    """Fill in the canonical partner of whichever of output / loss is missing."""
    if loss is not None:
        loss = check_name("loss", loss, losses.LOSSES, losses.ALIASES)
    if output is not None:
        output = check_name("output", output, activations.ACTIVATIONS, activations.ALIASES)
    if loss is None:
        loss = {"softmax": "cross_entropy", "sigmoid": "bce"}.get(output, "mse")
    if output is None:
        output = losses.CANONICAL_OUTPUT[loss]
    if loss != "mse" and output != losses.CANONICAL_OUTPUT[loss]:
        raise ValueError(f"output={output!r} does not fit loss={loss!r}: {loss} is computed "
                         f"from a {losses.CANONICAL_OUTPUT[loss]} output")
    if loss == "mse" and output == "softmax":
        raise ValueError("output='softmax' does not fit loss='mse': softmax is paired with "
                         "loss='cross_entropy'")
    return output, loss


def _as_array(argument, value):
    """np.asarray, with a message naming the argument if NumPy cannot make one."""
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{argument} must be an array of numbers, got {type(value).__name__} "
                         f"that NumPy cannot make an array of: {error}") from None


def _engine(backend, sizes, acts, loss, dtype):
    name = check_name("backend", backend, ("cpu", "cuda"))
    if name == "cuda":
        from fastnet.cuda_engine import CudaEngine
        return CudaEngine(sizes, acts, loss, dtype)
    return CpuEngine(sizes, acts, loss, dtype)


class Network:
    """A multi-layer perceptron.

    ``sizes``: layer widths, input first. ``activation``: one name for every
    hidden layer or a list, one per hidden layer. ``output`` / ``loss``: the
    output activation and loss (either implies the other's canonical
    partner). ``init``: an initialiser name for every layer (default: He for
    ReLU-like layers, Xavier otherwise). ``batch_norm``: True puts batch
    normalisation (between each hidden layer's x W + b and its activation)
    on every hidden layer, a list of bools chooses per hidden layer; its
    running statistics are ``running_stats`` (see ``fastnet.batchnorm``).
    """

    def __init__(self, sizes, activation="relu", output=None, loss=None, init=None,
                 dtype=np.float32, seed=0, backend="cpu", batch_norm=False):
        try:
            sizes = list(sizes) if not isinstance(sizes, (str, bytes)) else sizes
        except TypeError:
            raise TypeError(f"sizes must be a list of layer widths (input first), got "
                            f"{sizes!r}") from None
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise ValueError(f"sizes must list at least 2 layer widths (input, output), "
                             f"got {sizes!r}")
        self.sizes = tuple(check_int(f"sizes[{i}]", s) for i, s in enumerate(sizes))
        self.batch_norm = batchnorm.check_batch_norm(batch_norm, len(self.sizes) - 2)
        self.layout = batchnorm.Layout(self.sizes, self.batch_norm)
        if self.n_params > MAX_PARAMS:
            raise ValueError(f"sizes={list(self.sizes)} makes {self.n_params:,} parameters; "
                             f"at most {MAX_PARAMS:,} are supported")
        self.hidden_activations = _activation_names(activation, len(self.sizes) - 2)
        self.output, self.loss_name = _output_and_loss(output, loss)
        try:
            kind = np.dtype(dtype)
        except (TypeError, ValueError):
            kind = None
        if kind is None or kind not in [np.dtype(d) for d in DTYPES]:   # (None == float64)
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
        self.dtype = kind
        self.seed = check_int("seed", seed, minimum=0)
        layer_acts = self.hidden_activations + [self.output]
        self.inits = [check_name("init", init, initializers.INITIALIZERS, initializers.ALIASES)
                      if init is not None else initializers.default_init(a) for a in layer_acts]
        self.init = init
        self.engine = _engine(backend, self.sizes,
                              [activations.ACTIVATIONS[a] for a in layer_acts],
                              losses.LOSSES[self.loss_name], self.dtype)
        rng = np.random.default_rng(self.seed)
        plain = initializers.initialize(self.sizes, self.inits, rng, self.dtype)
        self.params = self.layout.with_scales(plain) if self.layout.any else plain
        self.running_stats = self.layout.initial_stats(self.dtype)

    # -------------------------------------------------------------- layout
    @property
    def params(self):
        """The flat parameter vector (C-contiguous, the network's dtype)."""
        return self._params

    @params.setter
    def params(self, vector):
        """Setting checks the shape, dtype and finiteness, and copies: the
        kernels read the vector without bounds checks."""
        self._params = np.array(self._vector("params", vector), dtype=self.dtype)

    @property
    def n_params(self):
        return self.layout.n_params

    @property
    def running_stats(self):
        """Batch normalisation's running statistics (empty without it): per
        normalising layer, its running mean then its running variance."""
        return self._running_stats

    @running_stats.setter
    def running_stats(self, vector):
        array = _as_array("running_stats", vector)
        if array.shape != (self.layout.n_stats,) or array.dtype.kind != "f":
            raise ValueError(f"running_stats must be a float vector of shape "
                             f"({self.layout.n_stats},), got {array.dtype} {array.shape}")
        if not np.isfinite(array).all() or any(
                (var < 0).any() for _, var in self.layout.stats_views(array)):
            raise ValueError("running_stats must be finite, with variances >= 0")
        self._running_stats = np.array(array, dtype=self.dtype)

    def running_moments(self):
        """(running mean, running variance) views, one pair per normalising layer."""
        return self.layout.stats_views(self.running_stats)

    @property
    def n_inputs(self):
        return self.sizes[0]

    @property
    def n_outputs(self):
        return self.sizes[-1]

    @property
    def is_classifier(self):
        return self.loss_name in ("cross_entropy", "bce")

    @property
    def backend(self):
        return self.engine.name

    def unflatten(self, vector):
        """Per-layer (W, b) views of any vector laid out like ``params``;
        (W, b, gamma, beta) for a layer with batch normalisation."""
        return self.layout.unflatten(self._vector("vector", vector, copy_ok=False))

    def flops_per_sample(self):
        """Multiply-adds x 2 of one sample's forward pass (for GFLOP/s figures)."""
        return 2 * sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    # ----------------------------------------------------------- checking
    def _vector(self, argument, vector, copy_ok=True):
        if vector is None:
            return self.params
        array = _as_array(argument, vector)
        if array.shape != (self.n_params,):
            raise ValueError(f"{argument} must have shape ({self.n_params},) like params, "
                             f"got {array.shape}")
        if array.dtype.kind != "f":
            raise TypeError(f"{argument} must be a float array, got dtype {array.dtype}")
        if not copy_ok:
            return array
        original = array
        with np.errstate(over="ignore"):   # an overflow to inf is reported below
            array = np.ascontiguousarray(array, dtype=self.dtype)
        if not array.flags.writeable:  # a read-only array would compile every kernel again
            array = array.copy()
        if not np.isfinite(array).all():
            if np.isfinite(original).all():
                raise ValueError(f"{argument} holds values beyond the range of {self.dtype.name} "
                                 f"(about ±{np.finfo(self.dtype).max:.3g}): they overflow to "
                                 "inf in the network's dtype")
            raise ValueError(f"{argument} contains NaN or inf")
        return array

    def _inputs(self, X, argument="X"):
        return check_matrix(argument, X, self.dtype, self.n_inputs,
                            "features (columns), the network's input width")

    def targets(self, y, argument="y"):
        """y as the (n, n_outputs) target matrix the kernels read.

        cross_entropy: integer class labels (n,) or one-hot / probability
        rows (n, n_outputs). bce: 0/1 (or [0, 1]) targets, (n,) when there is
        one output. mse: values, (n,) when there is one output.
        """
        array = _as_array(argument, y)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{argument} must hold numbers, got dtype {array.dtype}")
        if self.loss_name == "cross_entropy" and array.ndim == 1:
            return self._one_hot(array, argument)
        if array.ndim == 1 and self.n_outputs == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2 or array.shape[1] != self.n_outputs:
            expected = "(n,) integer labels or " if self.loss_name == "cross_entropy" else ""
            raise ValueError(f"{argument} must have shape {expected}(n, {self.n_outputs}) "
                             f"for {self.n_outputs} outputs, got {array.shape}")
        array = check_matrix(argument, array, self.dtype)
        if self.loss_name != "mse" and ((array < 0) | (array > 1)).any():
            raise ValueError(f"{argument} must lie in [0, 1] for loss={self.loss_name!r}, "
                             f"got values in [{array.min()}, {array.max()}]")
        return array

    def _one_hot(self, labels, argument):
        if labels.size == 0:
            raise ValueError(f"{argument} is empty")
        if labels.dtype.kind == "b":   # False / True are classes 0 and 1
            labels = labels.astype(np.int64)
        if labels.dtype.kind == "f":
            raise TypeError(f"{argument} must be integer class labels for a classifier, got "
                            f"float dtype {labels.dtype} (use labels.astype(int) if exact)")
        if labels.min() < 0 or labels.max() >= self.n_outputs:
            raise ValueError(f"{argument} labels must lie in [0, {self.n_outputs - 1}] for "
                             f"{self.n_outputs} outputs, got values in "
                             f"[{labels.min()}, {labels.max()}]")
        Y = np.zeros((labels.size, self.n_outputs), self.dtype)
        Y[np.arange(labels.size), labels] = 1
        return Y

    def _data(self, X, y):
        X = self._inputs(X)
        Y = self.targets(y)
        check_same_length("X", X, "y", Y)
        return X, Y

    # ------------------------------------------------------------ maths
    def _inference(self, params):
        """The vector the engine runs: ``params`` itself, or with batch
        normalisation its fold with the running statistics."""
        if not self.layout.any:
            return params
        return self.layout.fold(params[None], self.running_stats)[0]

    def forward(self, X, params=None):
        """Output activations for every row of X, shape (n, n_outputs)."""
        return self.engine.forward(self._inference(self._vector("params", params)),
                                   self._inputs(X))

    def loss(self, X, y, params=None, training=False):
        """Mean loss (never including weight decay).

        ``training=True``: with batch normalisation, X is one batch normalised
        by its own statistics, as in training (the running statistics are
        neither used nor changed); without it, the same as False.
        """
        X, Y = self._data(X, y)
        params = self._vector("params", params)
        if training and self.layout.any:
            return self._training_loss(params, X, Y, with_grad=False)[0]
        return self.engine.loss(self._inference(params), X, Y)

    def loss_and_grad(self, X, y, params=None, training=False):
        """(mean loss, gradient shaped like params) of ``loss`` with the same
        ``training``."""
        X, Y = self._data(X, y)
        params = self._vector("params", params)
        if not self.layout.any:
            return self.engine.loss_and_grad(params, X, Y)
        if training:
            return self._training_loss(params, X, Y, with_grad=True)
        value, plain_grad = self.engine.loss_and_grad(self._inference(params), X, Y)
        return value, self.layout.unfold_gradient(params, plain_grad, self.running_stats)

    def _training_loss(self, params, X, Y, with_grad):
        if self.backend != "cpu":
            raise ValueError(f"training-mode batch normalisation runs on backend='cpu' only, "
                             f"not backend={self.backend!r}")
        batchnorm.check_batch_rows("X", X.shape[0])
        rows, units = X.shape[0], int(sum(self.sizes[1:]))
        buffers = [np.empty(rows * units, self.dtype) for _ in range(4)]
        grad = np.zeros_like(params)
        value = cpu.bn_loss_and_grad(params, np.asarray(self.sizes, np.int64), self.engine.acts,
                                     self.layout.flags, self.engine.loss_id, X, Y, *buffers,
                                     np.empty(3 * units, self.dtype), grad, with_grad)
        return float(value), grad

    def population_loss(self, thetas, X, y):
        """Mean loss of every row of ``thetas`` (P x n_params), in one compiled call."""
        thetas = _as_array("thetas", thetas)
        if thetas.ndim != 2 or thetas.shape[1] != self.n_params:
            raise ValueError(f"thetas must have shape (P, {self.n_params}) (one parameter "
                             f"vector per row), got {thetas.shape}")
        thetas = check_matrix("thetas", thetas, self.dtype)
        X, Y = self._data(X, y)
        if self.layout.any:
            thetas = self.layout.fold(thetas, self.running_stats)
        return self.engine.population_loss(thetas, X, Y)

    # ---------------------------------------------------------- training
    def fit(self, X, y, **options):
        """Train by backpropagation; see ``fastnet.train.fit`` for the options."""
        from fastnet.train import fit
        return fit(self, X, y, **options)

    def trainer(self, X, Y, batch_size, optimizer, dropout, seed):
        """The epoch runner that ``fit`` and ``StepTrainer`` drive (validated arrays)."""
        if not self.layout.any:
            return self.engine.trainer(self.params, X, Y, batch_size, optimizer, dropout, seed)
        if self.backend != "cpu":
            raise ValueError(f"training a network with batch_norm is supported on "
                             f"backend='cpu' only, not backend={self.backend!r}; train on the "
                             "CPU, then net.copy(backend='cuda') for inference")
        return batchnorm.BatchNormRunner(self, X, Y, batch_size, optimizer, dropout, seed)

    def predict(self, X, params=None):
        """Class labels for classifiers (0/1 per output for bce), values for regression."""
        out = self.forward(X, params)
        if self.loss_name == "cross_entropy":
            return out.argmax(axis=1)
        if self.loss_name == "bce":
            out = (out > 0.5).astype(np.int64)
        return out[:, 0] if self.n_outputs == 1 else out

    def score(self, X, y, params=None):
        """Accuracy for classifiers, R^2 (averaged over outputs) for regression."""
        X, Y = self._data(X, y)
        return self.score_outputs(self.forward(X, params), Y)

    def score_outputs(self, out, Y):
        """The score of outputs ``out`` against the target matrix ``Y``."""
        if self.loss_name == "cross_entropy":
            return float((out.argmax(1) == Y.argmax(1)).mean())
        if self.loss_name == "bce":
            return float(((out > 0.5) == (Y > 0.5)).mean())
        residual = ((Y - out) ** 2).sum(0, dtype=np.float64)
        total = ((Y - Y.mean(0)) ** 2).sum(0, dtype=np.float64)
        return float(np.mean(1 - residual / np.where(total > 0, total, 1)))

    # ----------------------------------------------------------- copies
    def config(self):
        """Everything but the parameters, as JSON-able values."""
        return {"sizes": list(self.sizes), "activation": self.hidden_activations,
                "output": self.output, "loss": self.loss_name, "init": self.init,
                "dtype": self.dtype.name, "seed": self.seed,
                "batch_norm": list(self.batch_norm)}

    def copy(self, dtype=None, backend=None):
        """A new network with the same topology and parameters (optionally cast/moved)."""
        config = self.config()
        config["dtype"] = dtype or self.dtype
        other = Network(**config, backend=backend or self.backend)
        other.params = np.array(self.params, dtype=other.dtype)
        other.running_stats = self.running_stats
        return other

    def save(self, path):
        from fastnet.io import save
        save(self, path)

    def __repr__(self):
        layers = "-".join(map(str, self.sizes))
        normalised = f", batch_norm={list(self.batch_norm)}" if self.layout.any else ""
        return (f"Network({layers}, hidden={self.hidden_activations}, output={self.output!r}, "
                f"loss={self.loss_name!r}{normalised}, dtype={self.dtype.name}, "
                f"n_params={self.n_params})")
