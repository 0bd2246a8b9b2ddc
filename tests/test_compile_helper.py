"""A cold first fit compiles half of its kernels in a helper process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastnet.backends.blas import thread_count_functions
from fastnet.backends.compile_helper import (ENVIRONMENT_SWITCH, HELPER_KERNELS, OWN_KERNELS,
                                             helper_wanted, usable_cores)

ROOT = Path(__file__).resolve().parents[1]

# A first fit (or a first data-parallel fit or StepTrainer step) in a fresh
# process with an empty cache; for each dtype and kernel: the signatures
# compiled or loaded, and the cache hits among them.
COLD_FIT = """
import json, sys
import numba, numpy as np, fastnet
from fastnet import engine
from fastnet.backends import cpu
from fastnet.backends.compile_helper import step_kernel_signatures
report = {}
driver = sys.argv[1]
for dtype in sys.argv[2:]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(dtype)
    net = fastnet.Network([4, 6, 3], output="softmax", dtype=dtype)
    if driver.startswith("parallel"):
        engine.PARALLEL_STEP_MIN_WORK = 0
    if driver == "parallel step":
        fastnet.StepTrainer(net, fastnet.SGD(lr=0.1), batch_size=40).step(X, np.arange(40) % 3)
        assert len(cpu.fit_step_parallel.signatures) == 1
    else:
        net.fit(X, np.arange(40) % 3, epochs=1, optimizer=fastnet.SGD(lr=0.1))
        assert len(cpu.fit_epoch_parallel.signatures) == (driver == "parallel epoch")
    expected = step_kernel_signatures(dtype)
    real = numba.from_dtype(np.dtype(dtype))
    report[dtype] = {
        name: {"signatures": [list(map(str, s)) for s in getattr(cpu, name).signatures
                              if any(getattr(t, "dtype", None) == real for t in s)],
               "expected": list(map(str, expected[name])),
               "cache_hit": getattr(cpu, name).stats.cache_hits[expected[name]] > 0}
        for name in expected}
print(json.dumps(report))
"""


def cold_fit(tmp_path, dtypes, switch, driver="fit"):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), ENVIRONMENT_SWITCH: switch}
    done = subprocess.run([sys.executable, "-c", COLD_FIT, driver, *dtypes], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not helper_wanted({}, usable_cores()),
                    reason="the helper starts only where two cores are usable")
def test_a_cold_fit_loads_the_helpers_kernels_with_the_signatures_it_uses(tmp_path):
    report = cold_fit(tmp_path, ["float32", "float64"], "1")
    for dtype, kernels in report.items():
        for name, seen in kernels.items():
            # the one signature compiled for the fit is the one predicted
            assert seen["signatures"] == [seen["expected"]], (dtype, name)
            assert seen["cache_hit"] == (name in HELPER_KERNELS), (dtype, name)
    assert set(HELPER_KERNELS) | set(OWN_KERNELS) == set(report["float32"])


@pytest.mark.skipif(not helper_wanted({}, usable_cores()) or thread_count_functions() is None,
                    reason="the helper needs two usable cores, the parallel step OpenBLAS")
@pytest.mark.parametrize("driver", ["parallel step", "parallel epoch"])
def test_a_cold_parallel_step_or_epoch_loads_the_helpers_kernels_too(tmp_path, driver):
    """``fit_step_parallel`` and ``fit_epoch_parallel`` are drivers: their
    parts call the same four kernels."""
    report = cold_fit(tmp_path, ["float32"], "1", driver=driver)
    for name, seen in report["float32"].items():
        assert seen["signatures"] == [seen["expected"]], name
        assert seen["cache_hit"] == (name in HELPER_KERNELS), name


@pytest.mark.slow
def test_without_the_helper_every_kernel_compiles_in_process(tmp_path):
    report = cold_fit(tmp_path, ["float32"], "0")
    for name, seen in report["float32"].items():
        assert seen["signatures"] == [seen["expected"]], name
        assert not seen["cache_hit"], name


def test_the_helper_needs_two_cores_and_can_be_switched_off():
    assert helper_wanted({}, 2)
    assert helper_wanted({ENVIRONMENT_SWITCH: "1"}, 16)
    assert not helper_wanted({}, 1)
    assert not helper_wanted({ENVIRONMENT_SWITCH: "0"}, 2)
