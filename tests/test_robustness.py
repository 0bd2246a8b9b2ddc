"""Faults and bad input a real user produces, and what each one gets.

* memory: fit does not copy data that is already in the network's dtype and
  C order (tracemalloc, NumPy's allocations); benchmarks/memory.py measures
  the same at 1e6 x 64;
* divergence in gradient-free runs: a loss that becomes NaN or inf for every
  candidate counts as the worst, and the run keeps its best finite one;
* Ctrl-C during a sweep: the finished runs are kept, the command returns 130;
* the bad-input audit: every case the issue lists that tests/test_errors.py,
  tests/test_io.py, tests/test_trainers.py and tests/test_checkpoints.py do
  not already cover, with the error type and the argument named.
"""
import gc
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import fastnet
from comparisons import minimize
from comparisons.__main__ import main as cli
from comparisons.results import ResultsStore, run_key
from comparisons.runs import run
from comparisons.sweep import sweep, tasks
from fastnet.engine import CpuEngine


def raises(exception, *words):
    """pytest.raises whose message must contain every one of ``words``."""
    pattern = "".join(f"(?=[\\s\\S]*{re.escape(word)})" for word in words)
    return pytest.raises(exception, match=pattern)


# ----------------------------------------------------------------- memory
def _peak_bytes(call):
    """Peak of NumPy's (and Python's) traced allocations during ``call``, above
    what was allocated before it. ``call`` runs once untraced first, so that
    compiling its kernels (on a cold Numba cache) is not counted."""
    call()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def wide():
    """2e4 x 64 float32 features, 10 classes, and a warmed-up 64-32-10 network."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 64), dtype=np.float32)
    y = rng.integers(0, 10, len(X))
    net = fastnet.Network([64, 32, 10], activation="relu", output="softmax", seed=0)
    net.fit(X[:256], y[:256], epochs=1, validation_split=0.2)   # load the kernels first
    return net, X, y


def test_fit_makes_no_copy_of_float32_c_contiguous_data(wide):
    """Peak = the one-hot targets (n x 10 float32) + two index vectors (the
    one-hot's row index, each epoch's permutation: int64, n each) + small
    buffers; not X, whatever the number of epochs."""
    net, X, y = wide
    one_hot = len(X) * 10 * 4
    indices = 2 * len(X) * 8
    for epochs in (1, 3):
        peak = _peak_bytes(lambda: net.fit(X, y, epochs=epochs, batch_size=32))
        assert peak <= one_hot + indices + 300_000, (epochs, peak)
        assert peak < X.nbytes / 4


def test_fit_makes_exactly_the_copies_it_must(wide):
    """float64 features for a float32 network: one converted copy of X.
    A validation split: X[train] and X[val], one copy of X between them."""
    net, X, y = wide
    one_hot, indices = len(X) * 10 * 4, 2 * len(X) * 8
    X64 = X.astype(np.float64)
    peak = _peak_bytes(lambda: net.fit(X64, y, epochs=1))
    assert X.nbytes <= peak <= X.nbytes + one_hot + indices + 300_000
    peak = _peak_bytes(lambda: net.fit(X, y, epochs=1, validation_split=0.2))
    assert X.nbytes <= peak <= X.nbytes + 2 * one_hot + 2 * indices + 300_000


def test_evaluation_makes_no_copy_of_the_data(wide):
    net, X, y = wide
    thetas = np.zeros((5, net.n_params), np.float32)
    for call in (lambda: net.loss(X, y), lambda: net.predict(X),
                 lambda: net.population_loss(thetas, X, y)):
        assert _peak_bytes(call) < X.nbytes / 2


def test_finiteness_check_allocates_nothing_the_size_of_the_data(wide):
    from fastnet._checks import check_matrix
    _, X, _ = wide
    assert _peak_bytes(lambda: check_matrix("X", X, np.float32)) < 10_000


# ----------------------------------------------- divergence without gradients
XOR_BUDGET = 20_000


def _faulty_population_loss(monkeypatch, after, value):
    """From call ``after`` on, every candidate's loss is ``value`` (a fault
    injected into the population kernel); returns the finite losses seen."""
    real = CpuEngine.population_loss
    seen = []

    def faulty(self, thetas, X, Y):
        losses = real(self, thetas, X, Y)
        if len(seen) >= after:
            return np.full(len(thetas), value)
        seen.append(losses)
        return losses

    monkeypatch.setattr(CpuEngine, "population_loss", faulty)
    return seen


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("method", ["ga", "sep-cmaes", "hillclimb"])
def test_run_keeps_its_best_finite_candidate_when_every_loss_turns_non_finite(
        monkeypatch, method, value):
    seen = _faulty_population_loss(monkeypatch, after=20, value=value)
    record = run("xor", method, seed=0, budget=XOR_BUDGET)
    assert len(seen) == 20
    assert record["status"] == "completed"
    best_finite = float(np.min(np.concatenate(seen)))
    train = record["trace"]["train_loss"]
    assert all(v is not None and math.isfinite(v) for v in train)
    assert np.all(np.diff(train) <= 0)
    assert train[-1] == best_finite                 # kept and recorded
    assert record["fpe"] > 20 * 4                   # and the run went on to its budget
    assert all(v is not None for v in record["trace"]["test_loss"])


def test_run_whose_every_candidate_overflows_is_marked_diverged(tmp_path):
    """Weights of ~1e25: every prediction is ~1e25 and its square overflows
    float32, so no candidate has a finite loss; the record says so and stays
    a valid results-store line."""
    record = run("sine", "random", seed=0, budget=40_000, options={"sigma0": 1e25})
    assert record["evals"] == 100                   # two generations of 50, all overflowing
    assert record["status"] == "diverged"
    assert "NaN or inf for every candidate" in record["message"]
    train = record["trace"]["train_loss"]
    assert math.isfinite(train[0]) and train[1:] == [None] * (len(train) - 1)
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(record)
    assert store.records()[0]["status"] == "diverged"


def test_minimize_on_a_network_keeps_the_best_finite_candidate():
    X, y, _, _ = fastnet.datasets.load("xor")
    net = fastnet.Network([2, 4, 1], activation="tanh", output="sigmoid", dtype=np.float64)
    finite = []

    def objective(thetas):
        losses = net.population_loss(thetas, X, y)
        if len(finite) >= 15:
            return np.full(len(thetas), np.nan)      # fault: the loss turns NaN everywhere
        finite.append(losses.min())
        return losses

    result = minimize(objective, net.params, method="sep-cmaes", max_evals=1000, seed=0,
                      vectorized=True)
    assert result.nfev == 1000 and result.fun == min(finite)
    assert net.loss(X, y, params=result.x) == pytest.approx(result.fun, rel=1e-13)
    assert [row["best_loss"] for row in result.history][15:] == [result.fun] * (result.nit - 15)


def test_minimize_with_no_finite_loss_returns_x0_and_says_so():
    x0 = np.array([0.5, -1.0, 2.0])
    result = minimize(lambda X: np.full(len(X), np.nan), x0, method="cmaes", max_evals=300,
                      vectorized=True)
    assert result.fun == math.inf and not result.success
    assert np.array_equal(result.x, x0)
    assert "no candidate had a finite loss" in result.message


# ------------------------------------------------------------ Ctrl-C, sweeps
def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_during_a_sweep_keeps_finished_runs_and_returns_130(tmp_path, jobs):
    results = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "comparisons", "run", "--problems", "xor", "--methods",
               "backprop,ga,de,hillclimb,random", "--seeds", "2", "--budget-scale", "0.02",
               "--no-scaling", "--no-progress", "--jobs", str(jobs), "--results", str(results)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _lines(results) < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the sweep finished before the signal arrived")
    assert process.returncode == 130, err
    assert "interrupted" in err and str(results) in err
    saved = ResultsStore(results).records()
    assert 1 <= len(saved) < 10
    assert _lines(results) == len(saved)            # whole lines only
    subprocess.run(command, env=env, check=True, capture_output=True)
    keys = [run_key(r) for r in ResultsStore(results).records()]
    assert len(keys) == len(set(keys)) == 10        # resumed: nothing lost, nothing twice


def test_sweep_reraises_keyboard_interrupt_after_saving(tmp_path, monkeypatch):
    import comparisons.sweep as sweep_module
    real = sweep_module.run_task
    done = []

    def interrupted_on_the_third(task):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(task)
        return real(task)

    monkeypatch.setattr(sweep_module, "run_task", interrupted_on_the_third)
    path = tmp_path / "results.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sweep(tasks(["xor"], ["ga", "random"], range(2), budget_scale=0.01), path,
              progress=False)
    assert len(ResultsStore(path).records()) == 2


@pytest.mark.parametrize("argv,words", [
    (["--methods", "gaa"], ("unknown method 'gaa'", "did you mean 'ga'")),
    (["--problems", "xorr"], ("unknown problem 'xorr'", "did you mean 'xor'")),
    (["--problems", "xor-w0"], ("xor-w0", "width")),
    (["--problems", "xor-wide"], ("xor-wide", "width")),
])
def test_cli_refuses_unknown_names(argv, words, tmp_path):
    with raises(SystemExit, *words):
        cli(["run", *argv, "--results", str(tmp_path / "r.jsonl"), "--no-progress"])
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--jobs", "-1"], ["--budget-scale", "nan"],
                                  ["--budget-scale", "inf"], ["--budget-scale", "x"],
                                  ["--device", "gpu"]])
def test_cli_refuses_bad_numbers(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli(["run", *argv, "--results", str(tmp_path / "r.jsonl"), "--no-progress"])
    assert error.value.code == 2   # argparse's usage error
    assert argv[0] in capsys.readouterr().err


# ------------------------------------------------------------- bad input
@pytest.fixture
def clf():
    return fastnet.Network([2, 3, 2], activation="tanh", output="softmax")


X4 = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def test_boolean_labels_are_classes_0_and_1(clf):
    as_bool = clf.loss(X4, np.array([False, True, True, False]))
    assert as_bool == clf.loss(X4, np.array([0, 1, 1, 0]))


def test_float64_values_that_overflow_float32_are_named(clf):
    X = X4.copy()
    X[2, 1] = 1e300
    for call in (lambda: clf.loss(X, [0, 1, 1, 0]), lambda: clf.fit(X, [0, 1, 1, 0]),
                 lambda: clf.forward(X)):
        with raises(ValueError, "X", "beyond the range of float32"):
            call()
    with raises(ValueError, "params", "beyond the range of float32"):
        clf.loss(X4, [0, 1, 1, 0], params=np.full(clf.n_params, 1e300))


def test_arrays_numpy_cannot_build_are_named(clf):
    ragged = [[0.0, 1.0], [0.0]]
    with raises(ValueError, "X", "cannot make an array"):
        clf.loss(ragged, [0, 1])
    with raises(ValueError, "y", "cannot make an array"):
        clf.loss(X4[:2], [[0, 1], [1]])
    with raises(ValueError, "params", "cannot make an array"):
        clf.loss(X4, [0, 1, 1, 0], params=[[0.0], [0.0, 1.0]])
    with raises(ValueError, "thetas", "cannot make an array"):
        clf.population_loss([[0.0], [0.0, 1.0]], X4, [0, 1, 1, 0])


def test_setting_params_is_checked_and_copies(clf):
    n = clf.n_params
    for bad, exception, words in [(np.zeros(n + 1), ValueError, ("params", f"({n},)")),
                                  (np.zeros((1, n)), ValueError, ("params", f"({n},)")),
                                  (np.zeros(n, int), TypeError, ("params", "int")),
                                  (np.full(n, np.nan), ValueError, ("params", "NaN")),
                                  ("weights", ValueError, ("params",))]:
        with raises(exception, *words):
            clf.params = bad
    vector = np.arange(n, dtype=np.float64) / n
    clf.params = vector                 # float64 into a float32 network: converted
    assert clf.params.dtype == np.float32 and clf.params.flags.c_contiguous
    vector[0] = 99.0
    assert clf.params[0] == 0.0         # a copy, not a view of the caller's array
    assert clf.loss(X4, [0, 1, 1, 0]) == clf.loss(X4, [0, 1, 1, 0], params=vector * 0 +
                                                   np.arange(n) / n)


@pytest.mark.parametrize("make,exception,words", [
    (lambda: fastnet.Network(None), TypeError, ("sizes",)),
    (lambda: fastnet.Network(5), TypeError, ("sizes",)),
    (lambda: fastnet.Network([2, 2 ** 31, 1]), ValueError, ("sizes", "parameters")),
    (lambda: fastnet.Network([2, 3, 1], dtype="float33"), TypeError, ("dtype", "float33")),
    (lambda: fastnet.Network([2, 3, 1], dtype=[("a", "f4")]), TypeError, ("dtype",)),
])
def test_network_construction(make, exception, words):
    with raises(exception, *words):
        make()


@pytest.mark.parametrize("options,exception,words", [
    (dict(shuffle="yes"), TypeError, ("shuffle",)),
    (dict(restore_best=None), TypeError, ("restore_best",)),
    (dict(progress=1), TypeError, ("progress",)),
    (dict(callbacks=print), TypeError, ("callbacks", "list")),
    (dict(callbacks=[print, 3]), TypeError, ("callbacks[1]",)),
    (dict(dropout=None), TypeError, ("dropout",)),
    (dict(optimizer=fastnet.SGD(lr=lambda epoch: float("nan"))), ValueError,
     ("learning rate of epoch 0",)),
    (dict(optimizer=fastnet.SGD(lr=lambda epoch: -1.0)), ValueError, ("learning rate",)),
    (dict(optimizer=fastnet.SGD(lr=lambda epoch: "0.1")), TypeError, ("learning rate",)),
])
def test_bad_fit_options_are_refused_before_training(clf, options, exception, words):
    before = clf.params.copy()
    with raises(exception, *words):
        clf.fit(X4, [0, 1, 1, 0], epochs=2, **options)
    np.testing.assert_array_equal(clf.params, before)


@pytest.mark.parametrize("X,y,exception,words", [
    (np.zeros(2), [0], ValueError, ("X", "2-D")),
    (np.zeros((2, 5)), [0, 1], ValueError, ("X", "5", "expected 2")),
    (np.zeros((2, 2)), [0, 1, 1], ValueError, ("X", "y", "2", "3")),
    (np.zeros((2, 2)), [0, 2], ValueError, ("y", "labels", "[0, 1]")),
    (np.zeros((2, 2)), [0.0, 1.0], TypeError, ("y", "integer")),
    (np.array([["a", "b"]]), [0], TypeError, ("X",)),
    (np.zeros((0, 2)), np.zeros(0, int), ValueError, ("X", "empty")),
    (np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32), ValueError, ("y", "(2, 3)")),
    (np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32), ValueError, ("X", "y")),
])
def test_step_trainer_refuses_bad_batches(clf, X, y, exception, words):
    trainer = fastnet.StepTrainer(clf, fastnet.SGD(lr=0.1))
    before = clf.params.copy()
    with raises(exception, *words):
        trainer.step(X, y)
    np.testing.assert_array_equal(clf.params, before)


def test_step_trainer_copies_read_only_batches_before_the_kernel(clf):
    """A read-only array would make Numba compile every kernel again."""
    trainer = fastnet.StepTrainer(clf, fastnet.SGD(lr=0.1))
    X = X4.astype(np.float32)
    Y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    seen = []
    real = trainer.runner.step
    trainer.runner.step = lambda X, Y, lr: seen.append((X, Y)) or real(X, Y, lr)
    X.setflags(write=False)
    Y.setflags(write=False)
    trainer.step(X, Y)
    assert all(a.flags.writeable for pair in seen for a in pair)


def test_step_trainer_schedule_is_checked_at_each_epoch(clf):
    trainer = fastnet.StepTrainer(clf, fastnet.SGD(lr=lambda epoch: 0.1 if epoch < 3 else -0.1))
    trainer.epoch = 2
    with raises(ValueError, "learning rate of epoch 3"):
        trainer.epoch = 3
    with raises(ValueError, "batch_size"):
        fastnet.StepTrainer(clf, batch_size=0)


@pytest.mark.parametrize("kwargs,exception,words", [
    (dict(budget=0), ValueError, ("budget",)),
    (dict(budget=-100), ValueError, ("budget",)),
    (dict(budget=float("nan")), TypeError, ("budget",)),
    (dict(budget="1000"), TypeError, ("budget",)),
    (dict(device="gpu"), ValueError, ("device", "cpu")),
    (dict(seed=-1), ValueError, ("seed",)),
    (dict(seed=1.5), TypeError, ("seed",)),
    (dict(options=[1]), TypeError, ("options",)),
    (dict(options={"popsize": 0}), ValueError, ("popsize",)),
    (dict(options={"sigma": 1.0}), ValueError, ("sigma", "sigma0")),
    (dict(method="cma-es"), ValueError, ("method", "did you mean")),
    (dict(problem="parity44"), ValueError, ("problem", "did you mean 'parity4'")),
    (dict(problem=42), TypeError, ("problem",)),
])
def test_bad_run_arguments(kwargs, exception, words):
    arguments = dict(problem="xor", method="ga", seed=0, budget=1000)
    arguments.update(kwargs)
    with raises(exception, *words):
        run(**arguments)


@pytest.mark.parametrize("call,words", [
    (lambda: minimize(np.sum, [1 + 2j, 0.0]), ("x0",)),
    (lambda: minimize(np.sum, ["1.0", "2.0"]), ("x0", "real numbers")),
    (lambda: minimize(lambda X: X[:, 0] * 1j, np.zeros(2), vectorized=True), ("fun(X)",)),
    (lambda: minimize(lambda x: complex(x[0], 1), np.zeros(2)), ("fun(x)", "real number")),
    (lambda: minimize(lambda X: np.array(["1"] * len(X)), np.zeros(2), vectorized=True),
     ("fun(X)",)),
    (lambda: minimize(np.sum, np.zeros(2 ** 16), method="de"), ("popsize", "smaller")),
    (lambda: minimize(np.sum, np.zeros(3), popsize=2 ** 40), ("popsize",)),
])
def test_minimize_refuses_non_real_values_and_huge_populations(call, words):
    with raises(ValueError, *words):
        call()


def test_vectorized_objective_that_raises_is_named():
    def broken(X):
        raise ZeroDivisionError("inside the user's objective")

    with raises(RuntimeError, "fun raised", "population", "vectorized=True") as error:
        minimize(broken, np.zeros(3), vectorized=True)
    assert isinstance(error.value.__cause__, ZeroDivisionError)


def test_tell_refuses_complex_losses():
    from comparisons import get_trainer
    trainer = get_trainer("ga")(np.zeros(3), seed=0)
    X = trainer.ask()
    with raises(ValueError, "losses"):
        trainer.tell(np.zeros(len(X)) + 1j)
    trainer.tell(np.zeros(len(X)))


@pytest.mark.parametrize("kwargs,exception,words", [
    (dict(name=None), TypeError, ("name",)),
    (dict(seed=-1), ValueError, ("seed",)),
    (dict(seed=0.5), TypeError, ("seed",)),
    (dict(test_size=0.0), ValueError, ("test_size",)),
    (dict(test_size=1.0), ValueError, ("test_size",)),
    (dict(test_size=float("nan")), ValueError, ("test_size",)),
    (dict(test_size="0.2"), TypeError, ("test_size",)),
])
def test_bad_dataset_arguments(kwargs, exception, words):
    arguments = dict(name="iris")
    arguments.update(kwargs)
    with raises(exception, *words):
        fastnet.datasets.load(**arguments)


def test_results_store_survives_a_damaged_middle_line(tmp_path):
    """A line damaged by hand (not the partial last line a crash leaves) is skipped,
    and the runs around it are kept."""
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append({"problem": "p", "method": "m", "seed": 0, "budget": 1})
    with open(path, "ab") as file:
        file.write(b'{"problem": "p", "meth\xff\n')
    store.append({"problem": "p", "method": "m", "seed": 2, "budget": 1})
    assert [r["seed"] for r in store.records()] == [0, 2]
    assert json.loads(path.read_bytes().splitlines()[-1])["seed"] == 2


@pytest.mark.parametrize("kwargs,words", [
    (dict(max_evals=0), ("max_evals",)),
    (dict(max_evals=float("nan")), ("max_evals",)),
    (dict(max_evals=10.5), ("max_evals",)),
    (dict(target=float("nan")), ("target",)),
    (dict(sigma0=float("nan")), ("sigma0",)),
    (dict(sigma0=-1.0), ("sigma0",)),
    (dict(seed=-3), ("seed",)),
    (dict(vectorized="yes"), ("vectorized",)),
    (dict(callback=3), ("callback",)),
    (dict(fun=3), ("fun", "callable")),
    (dict(method="cma"), ("method", "'cmaes'")),
    (dict(popsize=1), ("popsize",)),
])
def test_bad_minimize_arguments(kwargs, words):
    arguments = dict(fun=lambda X: np.sum(X * X, axis=1), x0=np.zeros(3), vectorized=True,
                     max_evals=100)
    arguments.update(kwargs)
    with raises(ValueError, *words):
        minimize(**arguments)
