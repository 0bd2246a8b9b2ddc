"""The data-parallel training step (``cpu.parallel_batch``, in
``fit_step_parallel`` and ``fit_epoch_parallel``): rows shared among
threads, BLAS on one thread, gradients summed.

It must take the serial step's steps (up to rounding), for every optimiser
setting, and a parallel epoch the serial epoch's; its gradient must be the
network's own (an independent code path); it must refuse what the serial
step refuses; and it must leave BLAS' thread count as it found it.
"""
import os

import numba
import numpy as np
import pytest

import fastnet
from fastnet import engine
from fastnet.backends import blas, cpu

needs_openblas = pytest.mark.skipif(blas.thread_count_functions() is None,
                                    reason="SciPy's BLAS is not OpenBLAS: no parallel step")


def scipy_blas_threads():
    """The thread counts threadpoolctl reads (independently of fastnet) for the
    BLAS libraries in SciPy's wheel folder (``scipy.libs``), or for all BLAS
    libraries where SciPy brings none (one shared BLAS)."""
    from threadpoolctl import threadpool_info
    libraries = [info for info in threadpool_info() if info["user_api"] == "blas"]
    scipys = [info for info in libraries
              if os.path.basename(os.path.dirname(info["filepath"])).startswith("scipy")]
    return [info["num_threads"] for info in scipys or libraries]


def counted_calls(monkeypatch, name):
    """Replace ``cpu.<name>`` by a wrapper that lists each call's parts."""
    taken = []
    kernel = getattr(cpu, name)

    def counted(*args):
        taken.append(args[-2].shape[0])
        return kernel(*args)

    monkeypatch.setattr(cpu, name, counted)
    return taken


@pytest.fixture
def parallel_steps(monkeypatch):
    """Every step of a new trainer shares its rows among ``parts`` (default 2)
    parts, however small the network; returns a list that counts the parallel
    steps taken."""
    monkeypatch.setattr(engine, "PARALLEL_STEP_MIN_WORK", 0)
    monkeypatch.setattr(engine, "parallel_parts", lambda n_params, dropout: 2)
    return counted_calls(monkeypatch, "fit_step_parallel")


@pytest.fixture
def parallel_epochs(monkeypatch, parallel_steps):
    """As ``parallel_steps``, for the epochs of ``fit``."""
    return counted_calls(monkeypatch, "fit_epoch_parallel")


def network(dtype, loss="cross_entropy"):
    output = "softmax" if loss == "cross_entropy" else "identity"
    return fastnet.Network([6, 9, 7, 3], activation="tanh", output=output, loss=loss,
                           dtype=dtype, seed=3)


def batch(dtype, rows=11):
    rng = np.random.default_rng(5)
    return rng.standard_normal((rows, 6)).astype(dtype), rng.integers(0, 3, rows)


OPTIMISERS = {
    "sgd": lambda: fastnet.SGD(lr=0.1),
    "sgd momentum, weight decay": lambda: fastnet.SGD(lr=0.1, momentum=0.9, nesterov=True,
                                                     weight_decay=1e-3),
    "rmsprop, clip value": lambda: fastnet.RMSprop(lr=0.01, clip_value=0.05),
    "adam": lambda: fastnet.Adam(lr=0.01),
    "adam, clip norm": lambda: fastnet.Adam(lr=0.01, clip_norm=0.1),
}


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", OPTIMISERS)
def test_parallel_steps_are_the_serial_steps(optimizer, dtype, monkeypatch, parallel_steps):
    """Four steps on 11 rows (parts of 5 and 6), with each optimiser: the same
    losses and parameters as the serial step's, up to rounding."""
    X, y = batch(dtype)
    serial_net, parallel_net = network(dtype), network(dtype)
    parallel = fastnet.StepTrainer(parallel_net, OPTIMISERS[optimizer](), batch_size=11)
    parallel_losses = [parallel.step(X, y) for _ in range(4)]
    monkeypatch.setattr(engine, "parallel_parts", lambda n_params, dropout: 1)
    serial = fastnet.StepTrainer(serial_net, OPTIMISERS[optimizer](), batch_size=11)
    serial_losses = [serial.step(X, y) for _ in range(4)]
    assert parallel_steps == [2] * 4
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(parallel_losses, serial_losses, rtol=tolerance)
    np.testing.assert_allclose(parallel_net.params, serial_net.params, rtol=tolerance,
                               atol=tolerance)
    assert not np.array_equal(parallel_net.params, network(dtype).params)
    assert parallel.runner.layout[cpu.S_STEP] == 4   # Adam's bias corrections count it


def fit_both_ways(monkeypatch, dtype, loss="cross_entropy", **options):
    """(parallel, serial) (network, history) of the same fit on 23 rows in
    batches of 6: the last batch has 5 rows, parts of 2 and 3."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((23, 6)).astype(dtype)
    y = rng.integers(0, 3, 23) if loss == "cross_entropy" else rng.standard_normal((23, 3))
    fits = []
    for parts in (2, 1):
        monkeypatch.setattr(engine, "parallel_parts", lambda n_params, dropout, p=parts: p)
        net = network(dtype, loss)
        fits.append((net, net.fit(X, y, batch_size=6, seed=1, **options)))
    return fits


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["sgd", "sgd momentum, weight decay", "adam, clip norm"])
def test_parallel_epochs_are_the_serial_epochs(optimizer, dtype, monkeypatch, parallel_epochs):
    """Three epochs: the serial epochs' losses, accuracies (correct predictions
    counted part by part) and parameters, up to rounding."""
    (parallel_net, parallel), (serial_net, serial) = fit_both_ways(
        monkeypatch, dtype, optimizer=OPTIMISERS[optimizer](), epochs=3)
    assert parallel_epochs == [2] * 3
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(parallel.loss, serial.loss, rtol=tolerance)
    assert parallel.score == serial.score
    assert len(set(serial.score)) > 1
    np.testing.assert_allclose(parallel_net.params, serial_net.params, rtol=tolerance,
                               atol=tolerance)
    assert not np.array_equal(parallel_net.params, network(dtype).params)


@needs_openblas
def test_a_parallel_epoch_diverges_where_the_serial_epoch_does(monkeypatch, parallel_epochs):
    """A loss that overflows stops both fits in the same epoch, with the
    parameters of that epoch's start put back."""
    (parallel_net, parallel), (serial_net, serial) = fit_both_ways(
        monkeypatch, np.float64, "mse", optimizer=fastnet.SGD(lr=50.0), epochs=40)
    assert parallel.stopped == serial.stopped == "diverged"
    assert len(parallel.loss) == len(serial.loss) >= 2
    assert parallel_epochs == [2] * (len(parallel.loss) + 1)
    np.testing.assert_allclose(parallel_net.params, serial_net.params, rtol=1e-9)


@needs_openblas
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("rows", [2, 7, 40])
def test_parallel_step_descends_the_networks_gradient(loss, rows, parallel_steps):
    """One plain SGD step moves the parameters by -lr times the gradient that
    ``Network.loss_and_grad`` computes (another kernel), and returns its loss."""
    net = network(np.float64, loss)
    X, y = batch(np.float64, rows)
    if loss == "mse":
        y = np.random.default_rng(1).standard_normal((rows, 3))
    value, gradient = net.loss_and_grad(X, y)
    before = net.params.copy()
    step_loss = fastnet.StepTrainer(net, fastnet.SGD(lr=0.5), batch_size=rows).step(X, y)
    assert parallel_steps == [2]
    assert step_loss == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose((before - net.params) / 0.5, gradient, rtol=1e-9, atol=1e-12)


@needs_openblas
def test_three_parts_and_more_parts_than_threads(monkeypatch, parallel_steps):
    """Three parts (more than a 2-core machine's threads) give the two-part step."""
    X, y = batch(np.float64)
    nets = {}
    for parts in (2, 3):
        monkeypatch.setattr(engine, "parallel_parts", lambda n_params, dropout, p=parts: p)
        nets[parts] = network(np.float64)
        fastnet.StepTrainer(nets[parts], fastnet.Adam(lr=0.01), batch_size=11).step(X, y)
    assert parallel_steps == [2, 3]
    np.testing.assert_allclose(nets[3].params, nets[2].params, rtol=1e-12, atol=1e-15)


@needs_openblas
def test_parallel_step_refuses_what_the_serial_step_refuses(parallel_steps):
    """NaN in the data, or a loss that overflows: nothing updated, nothing counted."""
    net = network(np.float64, "mse")
    trainer = fastnet.StepTrainer(net, fastnet.Adam(lr=0.01), batch_size=4)
    before = net.params.copy()
    X = np.ones((4, 6))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        trainer.step(X, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        trainer.step(np.ones((4, 6)), np.full((4, 3), 1e200))
    assert parallel_steps == [2, 2]
    np.testing.assert_array_equal(net.params, before)
    assert trainer.runner.layout[cpu.S_STEP] == 0


@numba.njit
def set_and_read(get, set_, count):
    blas.set_thread_count(set_, count)
    return blas.get_thread_count(get)


def set_and_read_blas_threads(count):
    """Set SciPy's BLAS thread count through fastnet's functions; read it back."""
    return set_and_read(*blas.thread_count_functions(), count)


@needs_openblas
def test_parallel_steps_and_epochs_give_blas_its_thread_count_back(parallel_epochs,
                                                                   parallel_steps):
    """A count of 3 (not 1, which a step that kept its own would leave) survives."""
    original = scipy_blas_threads()
    X, y = batch(np.float32)
    try:
        assert set_and_read_blas_threads(3) == 3
        network(np.float32).fit(X, y, optimizer=fastnet.SGD(lr=0.1), epochs=1, batch_size=11)
        assert parallel_epochs == [2]
        assert scipy_blas_threads() == [3]
        fastnet.StepTrainer(network(np.float32), fastnet.SGD(lr=0.1), batch_size=11).step(X, y)
        assert parallel_steps == [2]
        assert scipy_blas_threads() == [3]
    finally:
        set_and_read_blas_threads(original[0])


@needs_openblas
def test_thread_count_functions_set_scipys_blas():
    """The addresses found are SciPy's OpenBLAS' (NumPy's has functions of the
    same name): threadpoolctl sees the count set through them."""
    before = scipy_blas_threads()
    assert len(before) == 1
    try:
        assert set_and_read_blas_threads(1) == 1
        assert scipy_blas_threads() == [1]
        if before[0] > 1:
            assert set_and_read_blas_threads(2) == 2
            assert scipy_blas_threads() == [2]
    finally:
        set_and_read_blas_threads(before[0])
    assert scipy_blas_threads() == before


def test_which_steps_run_in_parallel(monkeypatch):
    """Serial below PARALLEL_STEP_MIN_WORK multiply-adds, above
    PARALLEL_STEP_MAX_PARAMS parameters, with dropout, and on one thread."""
    monkeypatch.setattr(numba, "get_num_threads", lambda: 4)
    expected = 1 if blas.thread_count_functions() is None else 4
    assert engine.parallel_parts(engine.PARALLEL_STEP_MAX_PARAMS, [0.0, 0.0]) == expected
    assert engine.parallel_parts(engine.PARALLEL_STEP_MAX_PARAMS + 1, [0.0]) == 1
    assert engine.parallel_parts(100, [0.0, 0.1]) == 1
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert engine.parallel_parts(100, [0.0]) == 1


@needs_openblas
def test_small_steps_stay_serial(monkeypatch, parallel_steps):
    """A step below PARALLEL_STEP_MIN_WORK multiply-adds, or of fewer rows
    than parts, is the serial one."""
    X, y = batch(np.float64, 10)
    monkeypatch.setattr(engine, "PARALLEL_STEP_MIN_WORK", 138 * 10)  # 6*9 + 9*7 + 7*3 a row
    trainer = fastnet.StepTrainer(network(np.float64), fastnet.SGD(lr=0.1), batch_size=10)
    trainer.step(X[:9], y[:9])
    trainer.step(X, y)
    monkeypatch.setattr(engine, "PARALLEL_STEP_MIN_WORK", 0)
    trainer = fastnet.StepTrainer(network(np.float64), fastnet.SGD(lr=0.1), batch_size=10)
    trainer.step(X[:1], y[:1])
    trainer.step(X[:2], y[:2])
    assert parallel_steps == [2, 2]
