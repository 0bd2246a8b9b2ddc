"""Checkpoint files: an ``.npz`` of plain arrays plus a JSON header, as in ``io``.

Written atomically (a temporary file beside the target, then ``os.replace``),
so a crash or Ctrl-C never leaves a half-written checkpoint; read with
``allow_pickle=False``, so a pickled file is refused instead of executed.
``fit`` (``fastnet.train``) and ``comparisons.optimize.minimize`` keep their
run state here; ``encode`` / ``decode`` turn a nested state (dicts, lists,
tuples, arrays, numbers, None) into a JSON tree plus named arrays and back,
exactly (arrays and NumPy scalars keep their dtype, floats their bits).

``deferred_interrupt`` makes Ctrl-C stop a loop at its next clean boundary:
the first SIGINT only sets a flag the loop reads (a second one raises
KeyboardInterrupt at once), so a checkpoint is written for a whole epoch or
generation, never for half of one.
"""
import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import threading
import zipfile
import zlib

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive


def check_path(argument, path):
    """``path`` as a str (a str or os.PathLike), or TypeError naming ``argument``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a file path (str or os.PathLike), got {path!r} "
                        f"of type {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise TypeError(f"{argument} must be a non-empty file path, got {path!r}")
    return path


def check_writable(argument, path):
    """OSError naming ``argument`` now if ``path`` cannot be written, rather
    than after the first epoch or generation has been spent."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{argument}={path!r} is a directory, not a file path")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".fastnet-", suffix=".npz")
    except OSError as error:
        raise OSError(f"cannot write {argument}={path!r}: {error.strerror}") from error
    os.close(handle)
    os.unlink(tmp)


def write(path, header, arrays):
    """Write ``header`` (JSON-able) and ``arrays`` (name -> ndarray) to ``path`` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".fastnet-", suffix=".npz")
    except OSError as error:
        raise OSError(f"cannot write {path!r}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as file:
            text = json.dumps(header, allow_nan=True, separators=(",", ":"), default=_plain)
            np.savez(file, header=np.frombuffer(text.encode(), np.uint8), **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(path, kind, version):
    """(header, arrays) of a file written by ``write`` with header["format"] == kind.

    ValueError, naming the file, for anything else: truncated, damaged,
    foreign, pickled or from a newer version.
    """
    with open(path, "rb") as file:
        if file.read(4) != ZIP_MAGIC:
            raise ValueError(f"{path!r} is not a readable {kind} file (not an .npz archive: "
                             "truncated, damaged or foreign)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "header" not in archive.files:
                raise ValueError(f"{path!r} is not a {kind} file (it holds "
                                 f"{sorted(archive.files)})")
            header = json.loads(archive["header"].tobytes().decode())
            arrays = {name: archive[name] for name in archive.files if name != "header"}
        if not all(isinstance(array, np.ndarray) for array in arrays.values()):
            raise ValueError(f"{path!r} is not a {kind} file (it holds members that are not "
                             "arrays)")
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError, KeyError,
            json.JSONDecodeError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a readable {kind} file (damaged or foreign): "
                         f"{error!r}") from error
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise ValueError(f"{path!r} holds pickled objects; {kind} files never do, and it "
                             "will not be unpickled") from error
        if str(path) in str(error):
            raise
        raise ValueError(f"{path!r} is not a readable {kind} file (damaged or foreign): "
                         f"{error}") from error
    if not isinstance(header, dict) or header.get("format") != kind:
        found = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"{path!r} is not a {kind} file (format {found!r})")
    found = header.get("version")
    if isinstance(found, bool) or not isinstance(found, int) or found > version:
        raise ValueError(f"{path!r} was written by a newer fastnet (format version "
                         f"{found!r}; this one reads up to {version})")
    return header, arrays


# ------------------------------------------------------------- nested state
def encode(value, arrays):
    """A JSON tree for ``value``; its arrays go into ``arrays`` under fresh names."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        if np.asarray(value).dtype.kind not in "biufc":
            raise TypeError(f"cannot checkpoint an array of dtype {np.asarray(value).dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = np.array(value)
        return {"__array__": name, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode(item, arrays) for item in value]}
    if isinstance(value, list):
        return [encode(item, arrays) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value) or "__array__" in value \
                or "__tuple__" in value:
            raise TypeError(f"cannot checkpoint a dict with keys {list(value)!r}")
        return {key: encode(item, arrays) for key, item in value.items()}
    raise TypeError(f"cannot checkpoint a value of type {type(value).__name__}")


def decode(tree, arrays):
    """The value ``encode`` was given, rebuilt from its tree and arrays."""
    if isinstance(tree, list):
        return [decode(item, arrays) for item in tree]
    if isinstance(tree, dict):
        if "__array__" in tree:
            array = arrays[tree["__array__"]]
            return array[()] if tree.get("scalar") else array.copy()
        if "__tuple__" in tree:
            return tuple(decode(item, arrays) for item in tree["__tuple__"])
        return {key: decode(item, arrays) for key, item in tree.items()}
    return tree


# ---------------------------------------------------------------- Ctrl-C
class _Flag:
    requested = False


@contextlib.contextmanager
def deferred_interrupt(notice=None):
    """Yield a flag whose ``requested`` turns True on the first Ctrl-C (and
    print ``notice`` to stderr then).

    Only in the main thread, and only while Python's own SIGINT handler is
    installed (a program with its own handler keeps it); elsewhere the flag
    stays False and Ctrl-C raises KeyboardInterrupt as usual. A second
    Ctrl-C raises KeyboardInterrupt at once.
    """
    flag = _Flag()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        if notice:
            print(notice, file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# -------------------------------------------------------------- fit runs
FIT_FORMAT = "fastnet-fit-checkpoint"
FIT_VERSION = 1
#: the arrays of a runner's ``state()`` (running_stats: with batch normalisation)
RUNNER_ARRAYS = ("params", "m", "v", "running_stats")
HISTORY_LISTS = ("epoch", "loss", "score", "val_loss", "val_score", "lr", "seconds")


def _plain(value):
    """NumPy scalars as Python numbers, for json.dumps."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write a value of type {type(value).__name__} to a checkpoint")


def describe(value):
    """A JSON-able description of an optimiser (or schedule) configuration."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return _plain(value) if isinstance(value, np.generic) else value
    if callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", type(value).__name__)
        return {"callable": f"{module}.{name}"}
    return repr(value)


def fingerprint(array):
    """Shape, dtype and CRC-32 of a C-contiguous array: is it the same data?"""
    if array is None:
        return None
    return {"shape": list(array.shape), "dtype": array.dtype.name,
            "crc32": zlib.crc32(memoryview(array).cast("B"))}


def _json(value):
    return json.loads(json.dumps(value, default=_plain, allow_nan=True))


class FitCheckpoint:
    """The checkpoint file of one ``fit``: what must match to resume, and the
    state of the last whole epoch (``commit``), written by ``write``."""

    def __init__(self, path, every, arguments):
        self.path = path
        self.every = every
        self.arguments = _json(arguments)
        self.committed = None   # (header, arrays, history, its length): the last whole epoch
        self.written = True     # nothing newer than the file to write

    # ---------------------------------------------------------- resuming
    def load(self, runner, rng, dtype):
        """Put the saved state into ``runner`` and ``rng`` (checked against this
        fit first: nothing changes if it does not match); return the rest of
        it, or None if there is no file."""
        if not os.path.exists(self.path):
            return None
        header, arrays = read(self.path, FIT_FORMAT, FIT_VERSION)
        saved = header.get("arguments")
        if not isinstance(saved, dict):
            raise ValueError(f"{self.path!r} is damaged: no fit arguments in its header")
        for name, value in self.arguments.items():
            if saved.get(name) != value:
                raise ValueError(self._mismatch(name, saved.get(name), value))
        try:
            state = {name: arrays[name] for name in RUNNER_ARRAYS if name in arrays}
            if any(a.dtype != dtype for a in state.values()):
                raise ValueError(f"arrays of dtype {state['params'].dtype}, not {dtype}")
            state.update(step=header["step"], seed=header["dropout_seed"])
            history = {name: list(header["history"][name]) for name in HISTORY_LISTS}
            epoch = header["epoch"]
            if len({len(values) for values in history.values()}) != 1 \
                    or len(history["epoch"]) != epoch:
                raise ValueError("the history does not have one entry per epoch")
            best_params = arrays.get("best_params")
            if best_params is not None and best_params.shape != runner.snapshot().shape:
                raise ValueError("best_params has the wrong shape")
            best = (float(header["best"]["loss"]), int(header["best"]["epoch"]), best_params)
            probe = np.random.Generator(type(rng.bit_generator)())
            probe.bit_generator.state = header["rng"]
            runner.load_state(state)   # checks before it changes anything
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{self.path!r} is a damaged fit checkpoint: {error}") from error
        rng.bit_generator.state = probe.bit_generator.state
        return {"epoch": epoch, "history": history, "best": best}

    def _mismatch(self, name, saved, value):
        def show(v):
            text = json.dumps(v, separators=(",", ":"))
            return text if len(text) < 300 else text[:297] + "..."
        if name in ("X", "y", "validation_data"):
            what = f"{name} is not the data the checkpoint was trained on"
        else:
            what = f"{name} differs from the checkpoint's"
        return (f"cannot resume from {self.path!r}: {what} ({name}={show(value)}, checkpoint "
                f"{name}={show(saved)}); resume with the same {name}, or start afresh with "
                "resume=False or another checkpoint path")

    # ----------------------------------------------------------- saving
    def commit(self, epochs_done, runner, rng, history, best):
        """Take the state after ``epochs_done`` whole epochs (copies; the
        history's lists only grow during a fit, so their length is enough)."""
        state = runner.state()
        header = {"format": FIT_FORMAT, "version": FIT_VERSION, "arguments": self.arguments,
                  "epoch": epochs_done, "step": state["step"], "dropout_seed": state["seed"],
                  "rng": rng.bit_generator.state, "best": {"loss": best[0], "epoch": best[1]}}
        arrays = {name: state[name] for name in RUNNER_ARRAYS if name in state}
        if best[2] is not None:
            arrays["best_params"] = best[2]
        self.committed = (header, arrays, history, len(history.epoch))
        self.written = False

    def due(self, epochs_done):
        return epochs_done % self.every == 0

    def write(self):
        """Write the last committed epoch, unless it is already in the file."""
        if self.written or self.committed is None:
            return
        header, arrays, history, length = self.committed
        header = {**header, "history": {name: getattr(history, name)[:length]
                                        for name in HISTORY_LISTS}}
        write(self.path, header, arrays)
        self.written = True
