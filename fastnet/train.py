"""The fit loop: epochs, shuffling, validation, early stopping, history.

Each epoch is one compiled call (shuffled mini-batches, forward, backward,
update); Python only draws the order, evaluates validation data and keeps
the history, so small networks pay no per-batch interpreter overhead.
"""
import dataclasses
import math
import time

import numpy as np

from fastnet._checks import check_float, check_int, check_same_length
from fastnet.optim import get_optimizer

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a core dependency; this only keeps bare checkouts working
    tqdm = None


@dataclasses.dataclass
class History:
    """Per-epoch record of a ``fit``. ``score`` is accuracy for classifiers
    (counted on the training batches as they were trained, like Keras) and
    None for regression; ``val_score`` is accuracy or R^2."""
    epoch: list = dataclasses.field(default_factory=list)
    loss: list = dataclasses.field(default_factory=list)
    score: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_score: list = dataclasses.field(default_factory=list)
    lr: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    stopped: str = "completed"
    message: str = ""
    best_epoch: int = None

    def as_dict(self):
        return dataclasses.asdict(self)


def _validation(net, X, Y, validation_split, validation_data, rng):
    """(X_train, Y_train, X_val, Y_val); the split is a seeded random one."""
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val), got "
                             f"{type(validation_data).__name__}")
        X_val = net._inputs(validation_data[0], "validation_data[0]")
        Y_val = net.targets(validation_data[1], "validation_data[1]")
        check_same_length("validation_data[0]", X_val, "validation_data[1]", Y_val)
        return X, Y, X_val, Y_val
    check_float("validation_split", validation_split, 0.0, 1.0, high_open=True)
    n_val = int(round(validation_split * len(X)))
    if n_val == 0:
        return X, Y, None, None
    if n_val == len(X):
        raise ValueError(f"validation_split={validation_split} leaves no training data "
                         f"out of {len(X)} samples")
    order = rng.permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return X[train], Y[train], X[val], Y[val]


def _dropout_rates(dropout, n_hidden):
    try:
        rates = [dropout] * n_hidden if np.isscalar(dropout) else list(dropout)
    except TypeError:
        raise TypeError(f"dropout must be one rate or a list of {n_hidden} rates (one per "
                        f"hidden layer), got {dropout!r}") from None
    if len(rates) != n_hidden:
        raise ValueError(f"dropout must be one rate or a list of {n_hidden} rates (one per "
                         f"hidden layer), got {dropout!r}")
    return [check_float(f"dropout[{i}]", r, 0.0, 1.0, high_open=True)
            for i, r in enumerate(rates)]


def _check_bool(argument, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False, got {value!r} of type "
                        f"{type(value).__name__}")
    return bool(value)


def _check_callbacks(callbacks):
    if callable(callbacks) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of functions f(net, epoch, logs), got "
                        f"{callbacks!r}")
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"callbacks[{i}] must be a function f(net, epoch, logs), got "
                            f"{callback!r}")
    return list(callbacks)


def fit(net, X, y, optimizer="adam", epochs=10, batch_size=32, validation_split=0.0,
        validation_data=None, early_stopping=None, restore_best=True, dropout=0.0,
        shuffle=True, seed=None, progress=False, callbacks=(), checkpoint=None,
        checkpoint_every=1, resume=False):
    """Train ``net`` by mini-batch backpropagation; return a ``History``.

    optimizer: an Optimizer (``fastnet.Adam(lr=1e-3)``) or a name.
    early_stopping: patience in epochs without improvement of the validation
    loss (the training loss without validation data); with ``restore_best``
    the best parameters are put back at the end.
    dropout: inverted dropout rate on hidden layers, during training only.
    callbacks: functions ``f(net, epoch, logs)``; one returning True stops.
    A callback with a method ``on_fit_start(net, epochs_done)`` (such as
    ``fastnet.callbacks.GradientNorms``) is also called before the first
    epoch.
    A loss that becomes NaN or inf stops training and puts back the
    parameters from the start of that epoch; Ctrl-C stops after the
    current epoch and keeps what was learnt (a second Ctrl-C stops at once).

    checkpoint: a path; every ``checkpoint_every`` epochs, and when the fit
    stops for any reason, the state after the last whole epoch is written
    there atomically (parameters, optimiser moments and step, the random
    generator, the history, the early-stopping best). With ``resume=True``
    a fit continues from that file if it exists (else starts afresh) and
    ends bit for bit where an uninterrupted fit would have, given the same
    data and arguments (``epochs`` and ``early_stopping`` may change); a
    checkpoint written with other data, network, optimizer, batch_size,
    dropout, shuffle, validation split or seed is refused (ValueError).
    A write is fsync'ed (milliseconds): for epochs shorter than that, give a
    larger ``checkpoint_every``; the file never holds less than whole epochs.
    """
    from fastnet.checkpoint import (FitCheckpoint, check_path, check_writable,
                                    deferred_interrupt, describe, fingerprint)
    X = net._inputs(X)
    Y = net.targets(y)
    check_same_length("X", X, "y", Y)
    optimizer = get_optimizer(optimizer)
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    if early_stopping is not None:
        early_stopping = check_int("early_stopping", early_stopping)
    rates = _dropout_rates(dropout, len(net.sizes) - 2)
    shuffle = _check_bool("shuffle", shuffle)
    restore_best = _check_bool("restore_best", restore_best)
    progress = _check_bool("progress", progress)
    callbacks = _check_callbacks(callbacks)
    resume = _check_bool("resume", resume)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if checkpoint is not None:
        checkpoint = check_path("checkpoint", checkpoint)
        check_writable("checkpoint", checkpoint)
    elif resume:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint file>")
    _learning_rate(optimizer, 0)   # a schedule that is no rate fails here, not in hyper()
    fit_seed = net.seed if seed is None else check_int("seed", seed, 0)
    rng = np.random.default_rng(fit_seed)
    data = (fingerprint(X), fingerprint(Y)) if checkpoint is not None else None
    X, Y, X_val, Y_val = _validation(net, X, Y, validation_split, validation_data, rng)
    runner = net.trainer(X, Y, batch_size, optimizer, rates, int(rng.integers(2 ** 62)))
    history = History()
    best = (math.inf, -1, None)  # (monitored loss, epoch, parameters)
    first_epoch = 0
    store = None
    if checkpoint is not None:
        if not hasattr(runner, "state"):
            raise ValueError(f"checkpoint= is not supported on the {net.backend!r} backend "
                             "yet; train on backend='cpu' to checkpoint")
        config = net.config()
        # batch_norm only where it is on, so that older checkpoints still resume
        network_keys = ("sizes", "activation", "output", "loss", "dtype") + (
            ("batch_norm",) if any(net.batch_norm) else ())
        store = FitCheckpoint(checkpoint, checkpoint_every, {
            "network": {key: config[key] for key in network_keys},
            "X": data[0], "y": data[1],
            "validation_data": (None if validation_data is None else
                                [fingerprint(X_val), fingerprint(Y_val)]),
            "validation_split": validation_split, "seed": fit_seed,
            "batch_size": batch_size, "optimizer": describe(optimizer), "dropout": rates,
            "shuffle": shuffle})
        saved = store.load(runner, rng, net.dtype) if resume else None
        if saved is not None:
            history = History(**saved["history"])
            best, first_epoch = saved["best"], saved["epoch"]
    start = time.perf_counter() - (history.seconds[-1] if history.seconds else 0.0)
    for callback in callbacks:
        if hasattr(callback, "on_fit_start"):
            callback.on_fit_start(net, first_epoch)
    epoch_bar = range(first_epoch, epochs)
    if early_stopping is not None and first_epoch > 0 and \
            first_epoch - 1 - best[1] >= early_stopping:
        epoch_bar = ()   # the checkpointed fit had already stopped early
        _stopped_early(history, early_stopping, best)
    elif progress and tqdm is not None:
        epoch_bar = tqdm(epoch_bar, desc="fit", unit="epoch", initial=first_epoch,
                         total=epochs)
    try:
        with deferred_interrupt("fit: stopping after this epoch (Ctrl-C again to stop "
                                "now)") as interrupt:
            for epoch in epoch_bar:
                snapshot = runner.snapshot()
                order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
                lr = _learning_rate(optimizer, epoch)
                loss, correct, finite = runner.run_epoch(order, lr)
                if not finite:
                    runner.restore(snapshot)
                    history.stopped = "diverged"
                    history.message = (f"loss became NaN or inf during epoch {epoch}; "
                                       f"parameters restored to the start of epoch {epoch}")
                    break
                logs = _log_epoch(net, runner, history, epoch, loss, correct, len(X), lr,
                                  X_val, Y_val, time.perf_counter() - start)
                if hasattr(epoch_bar, "set_postfix"):
                    epoch_bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                                           if v is not None and k != "epoch"})
                monitored = logs["val_loss"] if X_val is not None else loss
                if monitored < best[0]:
                    best = (monitored, epoch, runner.snapshot())
                stop = None
                if callbacks:
                    runner.sync()
                    if any(callback(net, epoch, logs) for callback in callbacks):
                        stop = "callback"
                if stop is None and early_stopping is not None \
                        and epoch - best[1] >= early_stopping:
                    stop = "early_stopping"
                if stop is None and interrupt.requested:
                    stop = "interrupted"
                if store is not None:
                    store.commit(epoch + 1, runner, rng, history, best)
                    if stop is not None or store.due(epoch + 1):
                        store.write()
                if stop == "early_stopping":
                    _stopped_early(history, early_stopping, best)
                elif stop == "interrupted":
                    _interrupted(history)
                elif stop is not None:
                    history.stopped = stop
                if stop is not None:
                    break
    except KeyboardInterrupt:
        _interrupted(history)
    finally:
        if hasattr(epoch_bar, "close"):
            epoch_bar.close()
        if store is not None:
            store.write()   # the last whole epoch, if it is not in the file yet
    history.best_epoch = best[1] if best[1] >= 0 else None
    if restore_best and early_stopping is not None and best[2] is not None:
        runner.restore(best[2])
    runner.sync()
    return history


def _learning_rate(optimizer, epoch):
    """The optimiser's rate for ``epoch``, checked (a schedule may be any function)."""
    return check_float(f"the learning rate of epoch {epoch} (optimizer.lr)",
                       optimizer.lr_at(epoch), 0.0)   # 0: a cosine schedule's end


def _stopped_early(history, patience, best):
    history.stopped = "early_stopping"
    history.message = f"no improvement for {patience} epochs after epoch {best[1]}"


def _interrupted(history):
    history.stopped = "interrupted"
    history.message = "interrupted by the user; parameters kept as trained so far"


def _log_epoch(net, runner, history, epoch, loss, correct, n_train, lr, X_val, Y_val,
               seconds):
    val_loss = val_score = None
    if X_val is not None:
        val_loss, outputs = runner.evaluate(X_val, Y_val)
        val_score = net.score_outputs(outputs, Y_val)
        if not math.isfinite(val_loss):
            val_loss = math.inf
    score = None
    if net.is_classifier:
        per_sample = net.n_outputs if net.loss_name == "bce" else 1
        score = correct / (n_train * per_sample)
    logs = {"epoch": epoch, "loss": loss, "score": score, "val_loss": val_loss,
            "val_score": val_score, "lr": lr, "seconds": seconds}
    for key, value in logs.items():
        getattr(history, key).append(value)
    return logs


class StepTrainer:
    """One mini-batch step per call, for training loops written by hand.

    >>> trainer = StepTrainer(net, fastnet.SGD(lr=0.1))   # doctest: +SKIP
    >>> for X_batch, y_batch in batches:                  # doctest: +SKIP
    ...     loss = trainer.step(X_batch, y_batch)

    Arrays already in the network's dtype, C-contiguous and of the right
    shape (targets as the (n, n_outputs) matrix of ``net.targets``) go
    straight to the compiled step; anything else is validated and converted
    first. A batch whose loss is NaN or inf (NaN in the data, or divergence)
    updates nothing and raises ValueError. ``epoch`` selects the learning
    rate of a schedule. On a GPU the parameters stay on the device between
    steps: call ``sync()`` before reading ``net.params`` (on the CPU it is
    always current).
    """

    def __init__(self, net, optimizer="adam", dropout=0.0, seed=None, batch_size=32):
        self.net = net
        self.optimizer = get_optimizer(optimizer)
        _learning_rate(self.optimizer, 0)
        rates = _dropout_rates(dropout, len(net.sizes) - 2)
        rng = np.random.default_rng(net.seed if seed is None else check_int("seed", seed, 0))
        empty_X = np.empty((0, net.n_inputs), net.dtype)
        empty_Y = np.empty((0, net.n_outputs), net.dtype)
        # batch_size only sizes the first work buffers (a larger batch grows
        # them), so an absurd one is not allocated up front
        batch_size = min(check_int("batch_size", batch_size), 4096)
        self.runner = net.trainer(empty_X, empty_Y, batch_size, self.optimizer, rates,
                                  int(rng.integers(2 ** 62)))
        # Cached for the fast path, which costs a few attribute reads per step.
        self._dtype = net.dtype
        self._widths = (net.n_inputs, net.n_outputs)
        self.epoch = 0

    @property
    def epoch(self):
        return self._epoch

    @epoch.setter
    def epoch(self, epoch):
        self._epoch = check_int("epoch", epoch, 0)
        self._lr = _learning_rate(self.optimizer, self._epoch)

    def _rows(self, array, columns):
        """The row count of an array the compiled step takes as it is, else 0."""
        # each attribute of an ndarray costs 25-45 ns here: read each once
        if type(array) is not np.ndarray or array.dtype is not self._dtype:
            return 0
        shape, flags = array.shape, array.flags
        if len(shape) == 2 and shape[1] == columns and flags.c_contiguous and flags.writeable:
            return shape[0]
        return 0

    def step(self, X, y):
        """Forward, backward and update on one batch; returns the batch's mean loss."""
        n_in, n_out = self._widths
        rows = self._rows(X, n_in)
        if not rows:
            X = self.net._inputs(X)
            rows = len(X)
        Y = y
        if self._rows(y, n_out) != rows:
            Y = self.net.targets(y)
            check_same_length("X", X, "y", Y)
        loss = self.runner.step(X, Y, self._lr)
        if not math.isfinite(loss):
            raise ValueError(f"the batch loss is {loss}: X or y holds NaN or inf, or training "
                             "diverged; the parameters were not updated")
        return loss

    def sync(self):
        """Make ``net.params`` current (a copy from the device on the GPU)."""
        self.runner.sync()
