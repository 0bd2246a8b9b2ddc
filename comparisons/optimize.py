"""``minimize``: run any registered trainer on a Python objective, within a budget.

The loop owns the budget, the history and the stopping; the trainer only
asks and is told. The budget is exact: when the next population would pass
``max_evals``, only its first ``max_evals - nfev`` candidates are evaluated
(in order), their best is kept, and the trainer is not told (a partial
population cannot update it).
"""

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from comparisons.trainers import TRAINERS
from comparisons.trainers.base import check_choice, check_int, check_real, real_numbers
from fastnet.checkpoint import (check_path, check_writable, decode, deferred_interrupt, encode,
                                read, write)


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
            losses = np.asarray(real_numbers("fun(X)", losses), dtype=np.float64)
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
        if isinstance(value, (str, bytes)) or np.iscomplexobj(value):
            raise ValueError(
                f"fun(x) must return a real number, got {value!r} for candidate row {row}"
            )
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
             sigma0=0.5, callback=None, checkpoint=None, checkpoint_every=1, resume=False,
             **options):
    """Minimise ``fun`` from ``x0`` with the gradient-free ``method``.

    ``fun(x)`` takes one (D,) vector, or with ``vectorized=True`` ``fun(X)``
    takes the (P, D) population and returns P losses. Stops when ``max_evals``
    is spent (never exceeded), when the best loss is ``<= target``, when the
    trainer reports a stop reason, or when ``callback(trainer)`` returns true.
    ``success`` means the target was reached, or, without a target, that the
    trainer stopped on its own criteria. ``options`` go to the trainer.
    A loss that is NaN or inf counts as the worst; if no candidate ever has a
    finite loss, ``x`` is ``x0``, ``fun`` is inf and ``success`` is False.

    ``checkpoint``: a path; every ``checkpoint_every`` generations and when
    the run stops (for any reason, ``fun`` raising included), the trainer's
    ``state_dict`` and the run's history are written there atomically. With
    ``resume=True`` the run continues from that file if it exists, and ends
    bit for bit where an uninterrupted run would (``max_evals``, ``target``
    and ``callback`` may change; ``x0``, ``method``, ``sigma0``, ``seed`` and
    the options must not). Ctrl-C stops after the current generation, writes
    the checkpoint and returns (message "interrupted"); a second one raises.
    A write is fsync'ed (milliseconds): with cheap generations (hill climbing
    evaluates one candidate per generation) give a larger ``checkpoint_every``.
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
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False, got {resume!r}")
    trainer = trainer_class(x0, sigma0=sigma0, seed=seed, **options)
    store = None
    if checkpoint is not None:
        store = RunCheckpoint(checkpoint, checkpoint_every)
    elif resume:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint file>")
    loop = store.load(trainer) if store is not None and resume else None
    if loop is not None:
        trainer = loop.pop("trainer")
    return _run(trainer, fun, max_evals, target, vectorized, callback, store, loop)


class RunCheckpoint:
    """The checkpoint file of one ``minimize`` run (npz + JSON, never pickle)."""

    FORMAT = "comparisons-minimize-checkpoint"
    VERSION = 1

    def __init__(self, path, every):
        self.path = check_path("checkpoint", path)
        check_writable("checkpoint", self.path)
        self.every = every

    def save(self, trainer, nfev, history, best_x, best_loss):
        arrays = {}
        header = {"format": self.FORMAT, "version": self.VERSION,
                  "trainer": encode(trainer.state_dict(), arrays), "nfev": nfev,
                  "history": history, "best_x": encode(best_x, arrays), "best_loss": best_loss}
        write(self.path, header, arrays)

    def load(self, trainer):
        """The saved trainer and run state, checked against ``trainer`` (built from
        this call's arguments); None if there is no file."""
        if not os.path.exists(self.path):
            return None
        header, arrays = read(self.path, self.FORMAT, self.VERSION)
        try:
            state = decode(header["trainer"], arrays)
            loop = {"nfev": int(header["nfev"]), "history": list(header["history"]),
                    "best_x": decode(header["best_x"], arrays),
                    "best_loss": float(header["best_loss"])}
            method, saved = state["method"], state["config"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{self.path!r} is a damaged minimize checkpoint: {error!r}") \
                from error
        if method != trainer.name:
            raise ValueError(f"cannot resume from {self.path!r}: method={trainer.name!r} but the "
                             f"checkpoint was written by method={method!r}")
        config = trainer.state_dict()["config"]
        for name in sorted(set(config) | set(saved)):
            if not _same(config.get(name), saved.get(name)):
                raise ValueError(f"cannot resume from {self.path!r}: {name} differs from the "
                                 f"checkpoint's ({name}={_show(config.get(name))}, checkpoint "
                                 f"{name}={_show(saved.get(name))}); resume with the same "
                                 f"{name}, or start afresh with resume=False")
        try:
            loop["trainer"] = type(trainer).from_state_dict(state)
            if np.shape(loop["best_x"]) != trainer.x0.shape:
                raise ValueError(f"best_x has shape {np.shape(loop['best_x'])}")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{self.path!r} is a damaged minimize checkpoint: {error!r}") \
                from error
        return loop


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _show(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


def _run(trainer, fun, max_evals, target, vectorized, callback, store, loop):
    if loop is None:
        history, nfev, best_x, best_loss = [], 0, trainer.best, trainer.best_loss
    else:
        history, nfev = loop["history"], loop["nfev"]
        best_x, best_loss = loop["best_x"], loop["best_loss"]
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    message, success = f"max_evals={max_evals} reached", False
    # The checkpoint holds the run after its last whole generation; the trainer
    # may have asked the next one (ask only draws), which a resumed run evaluates.
    committed = (nfev, len(history), best_x, best_loss)
    written, telling, running = loop is not None, False, True
    if loop is not None and target is not None and best_loss <= target:
        message, success, running = f"target {target} reached", True, False
    try:
        with deferred_interrupt("minimize: stopping after this generation (Ctrl-C again "
                                "to stop now)") as interrupt:
            while running and nfev < max_evals:
                if trainer.asked is None:
                    reasons = trainer.stop()
                    if reasons:
                        message, success = f"trainer stopped: {reasons}", target is None
                        break
                    X = trainer.ask()
                else:   # asked before the checkpoint this run resumed from was written
                    X = trainer.asked.copy()
                count = min(len(X), max_evals - nfev)
                losses = evaluate(fun, X[:count], vectorized)
                if count == len(X):
                    telling = True
                    trainer.tell(losses)
                    best_x, best_loss = trainer.best, trainer.best_loss
                    nfev += count
                    history.append({"nfev": nfev, "nit": len(history) + 1,
                                    "best_loss": best_loss,
                                    "seconds": time.perf_counter() - start})
                    committed = (nfev, len(history), best_x, best_loss)
                    telling, written = False, False
                    if store is not None and len(history) % store.every == 0:
                        store.save(trainer, *_committed(committed, history))
                        written = True
                else:   # the last, partial population: the trainer is not told
                    losses[~np.isfinite(losses)] = math.inf
                    i = int(np.argmin(losses))
                    if losses[i] < best_loss:
                        best_x, best_loss = X[i].copy(), float(losses[i])
                    nfev += count
                    history.append({"nfev": nfev, "nit": len(history) + 1,
                                    "best_loss": best_loss,
                                    "seconds": time.perf_counter() - start})
                if target is not None and best_loss <= target:
                    message, success = f"target {target} reached", True
                    break
                if callback is not None and callback(trainer):
                    message = "callback requested stop"
                    break
                if interrupt.requested:
                    message = "interrupted by the user (Ctrl-C)"
                    break
    finally:
        if store is not None and not written and not telling:
            store.save(trainer, *_committed(committed, history))
    if not math.isfinite(best_loss):
        message, success = f"{message}; no candidate had a finite loss, so x is x0", False
    return OptimizeResult(x=best_x, fun=best_loss, nfev=nfev, nit=len(history), success=success,
                          message=message, method=trainer.name, history=history)


def _committed(committed, history):
    nfev, length, best_x, best_loss = committed
    return nfev, history[:length], best_x, best_loss
