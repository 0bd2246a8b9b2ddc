"""A first training run compiles its kernels on two cores.

The drivers ``fit_epoch``, ``fit_step``, ``fit_step_parallel`` and
``fit_epoch_parallel`` call four kernels that Numba compiles separately:
``forward_rows``, ``loss_rows``, ``backward_rows`` and ``optimizer_step``. A
process compiles one function at a time (Numba holds a global lock), so on a
cold start these four took 8.5 of the first fit's 11 s.
When a driver is about to be compiled, this module starts a helper process
that compiles ``backward_rows`` and ``optimizer_step`` into Numba's on-disk
cache while this process compiles ``forward_rows`` and ``loss_rows``; then it
waits for the helper, and the driver's own compilation loads the helper's two
kernels from the cache instead of compiling them.

Nothing depends on the helper: if it cannot start, fails or runs too long,
the driver compiles whatever is missing itself. It starts only when this
process can use two cores, when both halves still have a kernel to compile
in this process, and unless ``FASTNET_COMPILE_HELPER=0``.

The helper runs ``HELPER_COMMAND`` with the dtype and the kernels' names as
arguments (``-c``, not ``-m``: importing fastnet already imports this module,
which ``-m`` would then run a second time).
"""
import os
import subprocess
import sys
import time

import numpy as np
from numba import from_dtype, types
from numba.core import event

from fastnet.backends import cpu

#: set to 0 to compile everything in the calling process
ENVIRONMENT_SWITCH = "FASTNET_COMPILE_HELPER"
#: the helper's share, about half of the work (measured cold, float32:
#: backward_rows 3.0 s + optimizer_step 1.1-1.2 s, against forward_rows
#: 3.6-3.9 s + loss_rows 0.6 s here; the helper also starts Python, 0.5 s)
HELPER_KERNELS = ("backward_rows", "optimizer_step")
OWN_KERNELS = ("forward_rows", "loss_rows")
#: the helper gets at least this long, and at most 3 times what this
#: process's share took, before it is stopped
MIN_WAIT_S = 20.0
DRIVERS = (cpu.fit_epoch, cpu.fit_step, cpu.fit_step_parallel, cpu.fit_epoch_parallel)
HELPER_COMMAND = ("import sys; from fastnet.backends.compile_helper import compile_kernels; "
                  "compile_kernels(sys.argv[1], sys.argv[2:])")


def step_kernel_signatures(dtype):
    """{kernel name: argument types} with which ``train_step`` calls its kernels
    for parameters of ``dtype`` (a test checks them against a real fit's)."""
    real = from_dtype(np.dtype(dtype))
    vector, matrix = types.Array(real, 1, "C"), types.Array(real, 2, "C")
    ids, count = types.Array(types.int64, 1, "C"), types.int64
    return {
        "forward_rows": (vector, ids, ids, matrix, vector, vector, count, vector, count, count),
        "loss_rows": (ids, ids, count, matrix, vector, vector, count),
        "backward_rows": (vector, ids, ids, count, matrix, matrix, vector, vector, vector,
                          vector, count, real, vector, count, count, types.float64),
        "optimizer_step": (vector, vector, vector, vector, count, count, vector),
    }


def compile_kernels(dtype, names):
    """Compile (or load from the cache) the named kernels for ``dtype``."""
    signatures = step_kernel_signatures(dtype)
    for name in names:
        getattr(cpu, name).compile(signatures[name])


def missing(dtype, names):
    """The named kernels not yet compiled in this process for ``dtype``."""
    signatures = step_kernel_signatures(dtype)
    return [name for name in names
            if signatures[name] not in getattr(cpu, name).overloads]


def helper_wanted(environ, usable_cores):
    """Whether a helper may start: two cores, and not switched off."""
    return usable_cores >= 2 and environ.get(ENVIRONMENT_SWITCH, "1") != "0"


def usable_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def start_helper(dtype, names):
    """The helper process compiling ``names`` for ``dtype``; None if it cannot start."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        cpu.__file__))))
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, ENVIRONMENT_SWITCH: "0"}
    command = [sys.executable, "-c", HELPER_COMMAND, np.dtype(dtype).name, *names]
    try:
        return subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def compile_on_two_cores(dtype):
    """Compile the training kernels for ``dtype``, half of them in a helper."""
    helper_names = missing(dtype, HELPER_KERNELS)
    own_names = missing(dtype, OWN_KERNELS)
    if not helper_names or not own_names or not helper_wanted(os.environ, usable_cores()):
        return
    helper = start_helper(dtype, helper_names)
    if helper is None:
        return
    try:
        start = time.perf_counter()
        compile_kernels(dtype, own_names)
        helper.wait(timeout=max(MIN_WAIT_S, 3 * (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        pass    # the driver compiles what the helper has not cached
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()


class DriverCompilation(event.Listener):
    """Runs ``compile_on_two_cores`` when a driver is about to be compiled
    (Numba announces a compilation only on a cache miss), once per dtype."""

    def __init__(self):
        self.done = set()

    def on_start(self, ev):
        if ev.data["dispatcher"] not in DRIVERS:
            return
        dtype = np.dtype(str(ev.data["args"][0].dtype))
        if dtype not in self.done:
            self.done.add(dtype)
            compile_on_two_cores(dtype)

    def on_end(self, ev):
        pass


_listener = None


def install():
    """Listen for the drivers' compilations, once per process."""
    global _listener
    if _listener is None:
        _listener = DriverCompilation()
        event.register("numba:compile", _listener)
