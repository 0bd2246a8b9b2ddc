"""The CUDA backend against the CPU backend, kernel by kernel and fit by fit.

How the simulator is enabled: Numba reads NUMBA_ENABLE_CUDASIM once, when
it is imported, so it cannot be switched on inside a pytest process that has
already imported fastnet, and it must not leak into other test files.
``test_suite_in_simulator`` runs this file again in a subprocess whose
environment has NUMBA_ENABLE_CUDASIM=1. There (``SIMULATOR``) the
comparison tests run; in the parent process they are skipped, except on a
machine with a GPU, where they run on the GPU as well. The checks that need
the real CUDA target without a GPU (the no-GPU error, the PTX of the float32
kernels) run in subprocesses without the simulator.
"""
import ctypes.util
import functools
import importlib.util
import json
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

import fastnet
from fastnet import cuda_engine

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
ROOT = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}

# The simulator's uint64 hash arithmetic wraps, as it should, with a warning.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

def _python(code, simulator, timeout=300):
    """Run ``code`` in a fresh interpreter, with or without the simulator."""
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@functools.cache
def gpu_present():
    """Whether a real GPU is usable, asked in a subprocess so that this process
    imports numba.cuda only when it will use it."""
    if SIMULATOR or not NUMBA_CUDA or ctypes.util.find_library("cuda") is None:
        return False
    probe = _python("from numba import cuda; print(cuda.is_available())", simulator=False)
    return probe.stdout.strip().endswith("True")


@pytest.fixture
def target():
    """Skip unless CUDA kernels can run in this process (simulator or GPU)."""
    if not NUMBA_CUDA:
        pytest.skip('numba-cuda is not installed: pip install "fastnet[cuda]"')
    if not (SIMULATOR or gpu_present()):
        pytest.skip("runs in test_suite_in_simulator's subprocess (NUMBA_ENABLE_CUDASIM=1), "
                    "and here too on a machine with a GPU")


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300)


def assert_close(actual, expected, dtype):
    assert relative_error(actual, expected) < TOLERANCE[dtype]


def twins(sizes, dtype, **options):
    """The same network on the CPU and on the GPU, with separate parameter vectors."""
    cpu = fastnet.Network(sizes, dtype=dtype, seed=3, **options)
    gpu = cpu.copy(backend="cuda")
    gpu.params = cpu.params.copy()  # copy() shares the vector when the dtype is unchanged
    return cpu, gpu


def problem(n, n_in, n_out, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if loss == "cross_entropy":
        return X, rng.integers(0, n_out, size=n)
    if loss == "bce":
        return X, rng.integers(0, 2, size=(n, n_out))
    return X, rng.normal(size=(n, n_out))


# Two to four layers, every hidden activation, every loss; widths that leave
# partial tiles at the simulator's tile size.
NETWORKS = [
    ([3, 5, 4], dict(activation="tanh", output="softmax")),
    ([4, 6, 5, 2], dict(activation=["elu", "softplus"], output="sigmoid")),
    ([3, 7, 2, 5, 1], dict(activation=["relu", "leaky_relu", "sigmoid"], loss="mse")),
]
DTYPES = [np.float32, np.float64]


# ------------------------------------------------------- the simulator run
@pytest.mark.skipif(SIMULATOR, reason="this is the simulator run")
@pytest.mark.skipif(not NUMBA_CUDA, reason='numba-cuda is not installed: '
                                           'pip install "fastnet[cuda]"')
def test_suite_in_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-4000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


# ------------------------------------------------------------ maths
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,options", NETWORKS)
def test_forward_loss_and_gradient_agree(target, monkeypatch, sizes, options, dtype):
    monkeypatch.setattr(cuda_engine, "CHUNK_ROWS", 4)  # several chunks: gradients accumulate
    cpu, gpu = twins(sizes, dtype, **options)
    X, y = problem(9, sizes[0], sizes[-1], cpu.loss_name)
    assert_close(gpu.forward(X), cpu.forward(X), dtype)
    assert_close(gpu.loss(X, y), cpu.loss(X, y), dtype)
    (loss_gpu, grad_gpu), (loss_cpu, grad_cpu) = gpu.loss_and_grad(X, y), cpu.loss_and_grad(X, y)
    assert_close(loss_gpu, loss_cpu, dtype)
    assert_close(grad_gpu, grad_cpu, dtype)
    if cpu.is_classifier:
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes,options", NETWORKS[:2])
def test_population_losses_agree(target, monkeypatch, sizes, options, dtype):
    monkeypatch.setattr(cuda_engine, "MAX_GRID_Z", 2)  # members split over several launches
    cpu, gpu = twins(sizes, dtype, **options)
    X, y = problem(8, sizes[0], sizes[-1], cpu.loss_name)
    thetas = np.random.default_rng(1).normal(size=(5, cpu.n_params))
    expected = cpu.population_loss(thetas, X, y)
    assert_close(gpu.population_loss(thetas, X, y), expected, dtype)
    monkeypatch.setattr(cuda_engine, "POPULATION_SHARED_BYTES", 0)  # the one-by-one fallback
    assert_close(gpu.population_loss(thetas, X, y), expected, dtype)


def test_gpu_geometry_in_the_simulator(target, monkeypatch):
    """The GPU's block and tile sizes (the simulator's own are tiny, for speed).

    Under the simulator a kernel is Python that reads the module's constants
    as it runs, so patching them runs the GPU's geometry, slowly.
    """
    if not SIMULATOR:
        pytest.skip("patches constants that only the simulator reads at run time")
    from fastnet.backends import cuda as kernels
    threads, work, depth = 16, 4, 16
    geometry = dict(THREADS=threads, WORK=work, DEPTH=depth, TILE=threads * work,
                    PADDED_DEPTH=depth + 1, PADDED_TILE=threads * work + 1, LINE=128, STRIPE=4,
                    POPULATION_ROWS=64)
    for name, value in geometry.items():
        monkeypatch.setattr(kernels, name, value)
    cpu, gpu = twins([5, 7, 3], np.float64, activation="tanh", output="softmax")
    X, y = problem(9, 5, 3, "cross_entropy")
    assert_close(gpu.loss_and_grad(X, y)[1], cpu.loss_and_grad(X, y)[1], np.float64)
    thetas = np.random.default_rng(1).normal(size=(2, cpu.n_params))
    assert_close(gpu.population_loss(thetas, X, y), cpu.population_loss(thetas, X, y),
                 np.float64)


def test_population_data_is_copied_once_or_passed_on_the_device(target):
    cpu, gpu = twins([3, 4, 2], np.float32, activation="tanh", output="softmax")
    X, y = problem(6, 3, 2, "cross_entropy")
    X, Y = cpu._data(X, y)
    thetas = np.random.default_rng(2).normal(size=(3, cpu.n_params)).astype(np.float32)
    engine = gpu.engine
    first = engine.population_loss(thetas, X, Y)
    copies = [copy for _, copy in engine.data.entries]
    second = engine.population_loss(thetas, X, Y)
    assert [copy for _, copy in engine.data.entries] == copies  # same X, Y: no new copy
    cuda = engine.k.cuda
    on_device = engine.population_loss(cuda.to_device(thetas), cuda.to_device(X),
                                       cuda.to_device(Y))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, on_device)
    assert_close(first, cpu.population_loss(thetas, X, y), np.float32)


# ------------------------------------------------------------ training
OPTIMIZERS = [
    fastnet.SGD(lr=0.1),
    fastnet.SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=0.5),
    fastnet.RMSprop(lr=0.01, weight_decay=0.01, clip_value=0.05),
    fastnet.Adam(lr=0.01, clip_norm=0.3),
    fastnet.AdamW(lr=0.01, weight_decay=0.1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_optimizer_steps_agree(target, optimizer, dtype):
    cpu, gpu = twins([3, 5, 3], dtype, activation="tanh", output="softmax")
    X, y = problem(10, 3, 3, "cross_entropy")
    for net in (cpu, gpu):
        net.fit(X, y, optimizer=optimizer, epochs=1, batch_size=4)  # steps of 4, 4 and 2 rows
    assert_close(gpu.params, cpu.params, dtype)


FITS = [
    (np.float64, dict(dropout=0.0, validation_split=0.3, early_stopping=1,
                      optimizer=fastnet.SGD(lr=fastnet.StepDecay(0.2, 1, 0.5), momentum=0.5))),
    (np.float32, dict(dropout=0.3, optimizer=fastnet.Adam(lr=0.02))),
    (np.float64, dict(dropout=[0.2, 0.4], validation_split=0.3, optimizer="rmsprop",
                      callbacks=[lambda net, epoch, logs: epoch == 1])),
]


@pytest.mark.parametrize("dtype,options", FITS)
def test_fit_follows_the_cpu_trajectory(target, dtype, options):
    cpu, gpu = twins([3, 6, 5, 3], dtype, activation="relu", output="softmax")
    X, y = problem(12, 3, 3, "cross_entropy")
    histories = [net.fit(X, y, epochs=3, batch_size=5, **options) for net in (cpu, gpu)]
    expected, actual = (history.as_dict() for history in histories)
    for key in ("loss", "val_loss", "lr"):
        if expected[key] and expected[key][0] is not None:
            assert_close(actual[key], expected[key], dtype)
    for key in ("epoch", "score", "val_score", "stopped", "best_epoch"):
        assert actual[key] == expected[key], key
    assert_close(gpu.params, cpu.params, dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_diverging_fit_stops_and_restores_like_the_cpu(target):
    cpu, gpu = twins([2, 4, 1], np.float64, activation="relu", loss="mse")
    X, y = problem(8, 2, 1, "mse")
    histories = [net.fit(X, 1e150 * y, optimizer=fastnet.SGD(lr=1e10), epochs=3, batch_size=3)
                 for net in (cpu, gpu)]
    assert histories[1].stopped == histories[0].stopped == "diverged"
    assert histories[1].message == histories[0].message
    np.testing.assert_array_equal(gpu.params, cpu.params)


def test_step_trainer_follows_the_cpu(target):
    cpu, gpu = twins([3, 5, 3], np.float64, activation="relu", output="softmax")
    X, y = problem(10, 3, 3, "cross_entropy")
    trainers = [fastnet.StepTrainer(net, fastnet.Adam(lr=0.05), dropout=0.3, batch_size=4)
                for net in (cpu, gpu)]
    for rows in (slice(0, 4), slice(4, 10), slice(2, 6)):  # the second outgrows batch_size
        expected, actual = (trainer.step(X[rows], y[rows]) for trainer in trainers)
        assert_close(actual, expected, np.float64)
    trainers[1].runner.sync()  # the GPU trains a device copy of the parameters
    assert_close(gpu.params, cpu.params, np.float64)


def test_benchmark_dry_run(target, tmp_path):
    bench = runpy.run_path(str(ROOT / "benchmarks" / "cuda_bench.py"), run_name="cuda_bench")
    bench["main"](["--dry-run", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cuda_speed.json").read_text())
    assert report["training"] and report["population"]
    assert "| shape |" in (tmp_path / "cuda_speed.md").read_text()


# ------------------------------------------------------ without the target
def test_missing_numba_cuda_is_explained(monkeypatch):
    monkeypatch.setattr(cuda_engine, "numba_cuda_installed", lambda: False)
    with pytest.raises(cuda_engine.CudaUnavailableError,
                       match=r'numba-cuda is not installed.*pip install "fastnet\[cuda\]"'):
        fastnet.Network([2, 1], backend="cuda")


@pytest.mark.skipif(SIMULATOR, reason="needs the real CUDA target")
@pytest.mark.skipif(not NUMBA_CUDA, reason='numba-cuda is not installed: '
                                           'pip install "fastnet[cuda]"')
def test_no_gpu_is_explained_and_fastnet_does_not_import_numba_cuda():
    if gpu_present():
        pytest.skip("a GPU is present")
    run = _python(
        "import sys, fastnet\n"
        "assert 'numba.cuda' not in sys.modules, 'import fastnet imported numba.cuda'\n"
        "try:\n"
        "    fastnet.Network([2, 1], backend='cuda')\n"
        "except fastnet.cuda_engine.CudaUnavailableError as error:\n"
        "    print(error)\n", simulator=False)
    assert run.returncode == 0, run.stderr
    assert "no CUDA GPU is usable here" in run.stdout
    assert 'pip install "fastnet[cuda]"' in run.stdout
    assert "NUMBA_ENABLE_CUDASIM=1" in run.stdout


# ----------------------------------------------------------------- PTX
PTX_SCRIPT = """
import json, re
from numba import boolean, cuda, float32, int32, int64
from fastnet.backends import cuda as kernels
M, V, I, S = float32[:, ::1], float32[::1], int64, float32
SIGNATURES = {
    "forward_layer": (M, M, M, M, I, I, S, S, I, I, I),
    "weight_grad": (M, M, M, I, boolean),
    "delta_back": (M, M, M, M, M, I, I, S, S, I, I, I),
    "loss_rows": (M, M, M, I, I, I, boolean, S, M, V, int32[::1], I, int32[::1]),
    "softmax_rows": (M, M, I),
    "gather_rows": (M, int64[::1], M),
    "block_sums": (V, boolean, V),
    "optimizer_update": (V, V, V, V, I, V, S, S, S, V, int32[::1]),
    "population_chunks": (M, int64[::1], int64[::1], I, V, M, I, I, M),
    "member_totals": (M, V),
}
found = {}
for name, signature in SIGNATURES.items():
    ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, signature, cc=(8, 0))
    found[name] = [line.strip() for line in ptx.splitlines()
                   if re.search(r"\\.f64\\b", line) and not line.strip().startswith("//")]
print(json.dumps(found))
"""
KERNELS = ["forward_layer", "weight_grad", "delta_back", "loss_rows", "softmax_rows",
           "gather_rows", "block_sums", "optimizer_update", "population_chunks", "member_totals"]
@pytest.fixture(scope="module")
def float32_ptx():
    if SIMULATOR:
        pytest.skip("compile_ptx needs the real CUDA target, not the simulator")
    if not NUMBA_CUDA:
        pytest.skip('numba-cuda is not installed: pip install "fastnet[cuda]"')
    run = _python(PTX_SCRIPT, simulator=False)
    if "NVVM" in run.stderr and run.returncode != 0:
        pytest.skip(f"NVVM (libnvvm) is unavailable: {run.stderr.strip().splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_kernels_have_no_f64_instruction(float32_ptx, kernel):
    assert float32_ptx[kernel] == []


# ----------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_agrees_at_full_tile_sizes(dtype):
    """Widths and batches past the GPU's 64 x 64 output tiles (the simulator's are 4 x 4)."""
    if not gpu_present():
        pytest.skip("needs a real NVIDIA GPU with its driver and numba-cuda")
    cpu, gpu = twins([70, 130, 20, 10], dtype, activation="relu", output="softmax")
    X, y = problem(300, 70, 10, "cross_entropy")
    assert_close(gpu.forward(X), cpu.forward(X), dtype)
    assert_close(gpu.loss_and_grad(X, y)[1], cpu.loss_and_grad(X, y)[1], dtype)
    thetas = np.random.default_rng(1).normal(size=(300, cpu.n_params)) * 0.1
    assert_close(gpu.population_loss(thetas, X, y), cpu.population_loss(thetas, X, y), dtype)
    for net in (cpu, gpu):  # SGD: an update linear in the gradient keeps errors at rounding
        net.fit(X, y, optimizer=fastnet.SGD(lr=0.05, momentum=0.9), epochs=2, batch_size=100,
                dropout=0.2)
    assert_close(gpu.params, cpu.params, dtype)
