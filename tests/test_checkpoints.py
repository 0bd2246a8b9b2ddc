"""Checkpoints: a fit or a gradient-free run that is stopped (by a callback,
Ctrl-C, a fixed epoch count, or SIGKILL) and resumed ends bit for bit where
the uninterrupted run ends; files are written atomically, never pickled, and
a checkpoint from another run is refused with the argument named."""
import json
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnet
from fastnet.checkpoint import FIT_FORMAT, FIT_VERSION

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def moons():
    X, y, X_test, y_test = fastnet.datasets.load("moons", seed=0)
    return X.astype(np.float32), y, X_test.astype(np.float32), y_test


def _without_seconds(history):
    record = history.as_dict()
    seconds = record.pop("seconds")
    assert len(seconds) == len(history.epoch)
    assert seconds == sorted(seconds)
    return record


# Each setting is (network kwargs, fit kwargs, epochs): Adam with dropout and a
# validation split; SGD with momentum and a step schedule; RMSprop in float64
# without shuffling; AdamW with clipping and validation data; and a run that
# early-stops (40 noisy points, a big network: the validation loss turns up).
SETTINGS = {
    "adam-dropout-split": (
        dict(sizes=[2, 16, 16, 2], activation="relu", output="softmax"),
        dict(optimizer=fastnet.Adam(lr=0.01), batch_size=16, dropout=0.3,
             validation_split=0.2), 8),
    "sgd-momentum-schedule": (
        dict(sizes=[2, 12, 2], activation="tanh", output="softmax"),
        dict(optimizer=fastnet.SGD(lr=fastnet.StepDecay(lr=0.1, step_size=2, gamma=0.5),
                                   momentum=0.9, nesterov=True), batch_size=32,
             dropout=[0.2]), 8),
    "rmsprop-float64-noshuffle": (
        dict(sizes=[2, 8, 8, 1], activation=["elu", "sigmoid"], output="sigmoid",
             dtype=np.float64),
        dict(optimizer=fastnet.RMSprop(lr=0.01), batch_size=50, shuffle=False,
             dropout=[0.1, 0.0]), 8),
    "adamw-cosine-validation-data": (
        dict(sizes=[2, 16, 2], activation="leaky_relu", output="softmax"),
        dict(optimizer=fastnet.AdamW(lr=fastnet.CosineAnnealing(lr=0.02, t_max=6),
                                     clip_norm=1.0), batch_size=24, validation_data=True), 8),
}


def _fit(moons, setting, path=None, epochs=None, **extra):
    X, y, X_test, y_test = moons
    net_kwargs, fit_kwargs, default_epochs = SETTINGS[setting]
    fit_kwargs = dict(fit_kwargs)
    if fit_kwargs.get("validation_data") is True:
        fit_kwargs["validation_data"] = (X_test, y_test)
    net = fastnet.Network(**net_kwargs, seed=3)
    if path is not None:
        fit_kwargs["checkpoint"] = path
    history = net.fit(X, y, epochs=epochs or default_epochs, **fit_kwargs, **extra)
    return net, history


def _assert_same_run(net, history, reference_net, reference_history):
    np.testing.assert_array_equal(net.params, reference_net.params)
    assert _without_seconds(history) == _without_seconds(reference_history)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_fit_stopped_by_epochs_then_resumed_is_bit_identical(moons, setting, tmp_path):
    expected = _fit(moons, setting)
    path = tmp_path / "run.npz"
    net, first = _fit(moons, setting, path, epochs=3)
    assert first.epoch == [0, 1, 2]
    assert os.listdir(tmp_path) == ["run.npz"]   # no temporary file left beside it
    net, history = _fit(moons, setting, path, resume=True)
    _assert_same_run(net, history, *expected)
    assert history.seconds[2] == first.seconds[2]   # the clock goes on from the file


@pytest.mark.parametrize("setting", ["adam-dropout-split", "sgd-momentum-schedule"])
def test_fit_stopped_by_a_callback_then_resumed_twice(moons, setting, tmp_path):
    expected = _fit(moons, setting)
    path = tmp_path / "run.npz"
    _, first = _fit(moons, setting, path, callbacks=[lambda net, epoch, logs: epoch == 1])
    assert first.stopped == "callback" and first.epoch == [0, 1]
    _, second = _fit(moons, setting, path, resume=True,
                     callbacks=[lambda net, epoch, logs: epoch == 4])
    assert second.stopped == "callback" and second.epoch == list(range(5))
    net, history = _fit(moons, setting, path, resume=True)
    _assert_same_run(net, history, *expected)
    again, history_again = _fit(moons, setting, path, resume=True)   # nothing left to do
    _assert_same_run(again, history_again, *expected)


@pytest.mark.parametrize("every", [1, 3])
def test_keyboard_interrupt_raised_mid_epoch_checkpoints_the_last_whole_epoch(
        moons, every, tmp_path):
    """A KeyboardInterrupt raised by a callback at epoch 4 (before that epoch is
    committed): the file holds epochs 0-3 whatever checkpoint_every is."""
    setting = "adam-dropout-split"
    expected = _fit(moons, setting)
    path = tmp_path / "run.npz"

    def interrupt(net, epoch, logs):
        if epoch == 4:
            raise KeyboardInterrupt

    _, interrupted = _fit(moons, setting, path, callbacks=[interrupt], checkpoint_every=every)
    assert interrupted.stopped == "interrupted" and interrupted.epoch == list(range(5))
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes().decode())
    assert header["epoch"] == 4 and header["history"]["epoch"] == [0, 1, 2, 3]
    net, history = _fit(moons, setting, path, resume=True)
    _assert_same_run(net, history, *expected)


def test_ctrl_c_stops_after_the_epoch_and_checkpoints_it(moons, tmp_path):
    """A real SIGINT to this process during epoch 2: the epoch finishes, fit
    returns 'interrupted' with three epochs, and the file holds all three."""
    setting = "sgd-momentum-schedule"
    expected = _fit(moons, setting)
    path = tmp_path / "run.npz"

    def ctrl_c(net, epoch, logs):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    net, history = _fit(moons, setting, path, callbacks=[ctrl_c], checkpoint_every=5)
    assert history.stopped == "interrupted" and history.epoch == [0, 1, 2]
    assert "interrupted" in history.message
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(archive["header"].tobytes().decode())["epoch"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back
    net, history = _fit(moons, setting, path, resume=True)
    _assert_same_run(net, history, *expected)


def _overfitting(path=None, epochs=300, **extra):
    X, y, X_val, y_val = fastnet.datasets.load("moons", seed=0)
    net = fastnet.Network([2, 64, 64, 2], activation="relu", output="softmax", seed=0)
    history = net.fit(X[:40], y[:40], optimizer=fastnet.Adam(lr=0.01), epochs=epochs,
                      batch_size=8, validation_data=(X_val, y_val), early_stopping=10,
                      checkpoint=path, **extra)
    return net, history


def test_early_stopping_resumes_to_the_same_stop_and_best(tmp_path):
    expected_net, expected = _overfitting()
    assert expected.stopped == "early_stopping"
    stop_at = len(expected.epoch)
    for k in (expected.best_epoch, stop_at - 3, stop_at):   # before, after the best, at the stop
        path = tmp_path / f"run{k}.npz"
        _overfitting(path, epochs=k)
        net, history = _overfitting(path, resume=True)
        _assert_same_run(net, history, expected_net, expected)
        assert history.stopped == "early_stopping" and history.message == expected.message
        assert history.best_epoch == expected.best_epoch


def test_resume_of_an_early_stopped_run_does_not_train_on(tmp_path):
    path = tmp_path / "run.npz"
    net, history = _overfitting(path)
    again, resumed = _overfitting(path, resume=True, epochs=1000)
    _assert_same_run(again, resumed, net, history)


def test_diverged_run_resumes_to_the_same_divergence(tmp_path):
    X, y, _, _ = fastnet.datasets.load("sine")

    def run(path=None, epochs=50, **extra):
        net = fastnet.Network([1, 16, 1], activation="tanh", dtype=np.float64, seed=0)
        history = net.fit(X, y, optimizer=fastnet.SGD(lr=1.0), epochs=epochs, batch_size=32,
                          checkpoint=path, **extra)
        return net, history

    expected_net, expected = run()
    assert expected.stopped == "diverged" and len(expected.epoch) > 2
    path = tmp_path / "run.npz"
    run(path, epochs=2)
    net, history = run(path, resume=True)
    _assert_same_run(net, history, expected_net, expected)
    assert history.stopped == "diverged" and history.message == expected.message


def test_resume_without_a_file_starts_afresh(moons, tmp_path):
    path = tmp_path / "new.npz"
    expected = _fit(moons, "adam-dropout-split")
    net, history = _fit(moons, "adam-dropout-split", path, resume=True)
    _assert_same_run(net, history, *expected)
    assert path.exists()


def test_checkpoint_file_is_plain_arrays_and_json(moons, tmp_path):
    path = tmp_path / "run.npz"
    net, history = _fit(moons, "adam-dropout-split", path, epochs=2)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["best_params", "header", "m", "params", "v"]
        header = json.loads(archive["header"].tobytes().decode())
        np.testing.assert_array_equal(archive["params"], net.params)
        assert archive["m"].dtype == archive["v"].dtype == np.float32
        assert np.any(archive["v"] > 0)
    assert header["format"] == FIT_FORMAT and header["version"] == FIT_VERSION
    assert header["epoch"] == 2 and header["step"] == 2 * 15   # 240 rows, batches of 16
    assert header["history"]["loss"] == history.loss
    assert header["rng"]["bit_generator"] == "PCG64"
    assert header["arguments"]["batch_size"] == 16
    assert header["arguments"]["optimizer"]["type"] == "Adam"


# ------------------------------------------------------------ mismatches
@pytest.mark.parametrize("change,argument", [
    (dict(batch_size=8), "batch_size"),
    (dict(optimizer=fastnet.Adam(lr=0.02)), "optimizer"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(dropout=0.1), "dropout"),
    (dict(shuffle=False), "shuffle"),
    (dict(validation_split=0.3), "validation_split"),
    (dict(seed=5), "seed"),
    (dict(X="shifted"), "X"),
    (dict(y="flipped"), "y"),
    (dict(sizes=[2, 16, 8, 2]), "network"),
    (dict(dtype=np.float64), "network"),
])
def test_resume_with_other_arguments_is_refused(moons, tmp_path, change, argument):
    X, y, _, _ = moons
    path = tmp_path / "run.npz"
    options = dict(optimizer=fastnet.Adam(lr=0.01), batch_size=16, dropout=0.3,
                   validation_split=0.2, epochs=2, checkpoint=path)
    net_options = dict(sizes=[2, 16, 16, 2], activation="relu", output="softmax")
    fastnet.Network(**net_options).fit(X, y, **options)
    change = dict(change)
    if change.pop("X", None):
        X = X + np.float32(0.5)
    if change.pop("y", None):
        y = 1 - y
    for key in ("sizes", "dtype"):
        if key in change:
            net_options[key] = change.pop(key)
    net = fastnet.Network(**net_options)
    before = net.params.copy()
    with pytest.raises(ValueError, match=rf"cannot resume .*{argument}") as error:
        net.fit(X, y, **{**options, **change}, resume=True)
    assert "run.npz" in str(error.value)
    np.testing.assert_array_equal(net.params, before)   # refused before training


def test_more_epochs_and_other_patience_may_change(moons, tmp_path):
    path = tmp_path / "run.npz"
    _fit(moons, "adam-dropout-split", path, epochs=2)
    _, history = _fit(moons, "adam-dropout-split", path, epochs=4, resume=True,
                      early_stopping=50)
    assert history.epoch == [0, 1, 2, 3]


# ------------------------------------------------------------ bad files
def _resume(moons, path):
    return _fit(moons, "adam-dropout-split", path, epochs=3, resume=True)


@pytest.mark.parametrize("keep", [0, 10, 200, 0.5, -10])
def test_truncated_checkpoint(moons, tmp_path, keep):
    path = tmp_path / "run.npz"
    _fit(moons, "adam-dropout-split", path, epochs=2)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match="run.npz"):
        _resume(moons, path)


def test_foreign_and_newer_checkpoints(moons, tmp_path):
    network_file = tmp_path / "net.npz"
    fastnet.save(fastnet.Network([2, 16, 16, 2], output="softmax"), network_file)
    with pytest.raises(ValueError, match=f"not a {FIT_FORMAT} file"):
        _resume(moons, network_file)
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ValueError, match="noise.npz"):
        _resume(moons, noise)
    path = tmp_path / "run.npz"
    _fit(moons, "adam-dropout-split", path, epochs=2)
    with np.load(path, allow_pickle=False) as archive:
        arrays = dict(archive)
    header = json.loads(arrays.pop("header").tobytes().decode())
    for changes, words in [({"version": FIT_VERSION + 1}, "newer"),
                           ({"history": {"epoch": [0]}}, "damaged"),
                           ({"rng": {"bit_generator": "MT19937"}}, "damaged"),
                           ({"step": -1}, "damaged")]:
        with open(path, "wb") as file:
            np.savez(file, header=np.frombuffer(json.dumps({**header, **changes}).encode(),
                                                np.uint8), **arrays)
        with pytest.raises(ValueError, match=words):
            _resume(moons, path)
    with open(path, "wb") as file:
        np.savez(file, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                 **{**arrays, "m": arrays["m"][:-1]})
    with pytest.raises(ValueError, match="damaged"):
        _resume(moons, path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_checkpoint_is_refused_and_not_run(moons, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "run.npz"
    _fit(moons, "adam-dropout-split", path, epochs=2)
    with np.load(path, allow_pickle=False) as archive:
        arrays = dict(archive)
    evil = np.empty(1, dtype=object)
    evil[0] = _Exploit(str(marker))
    with open(path, "wb") as file:
        np.savez(file, **{**arrays, "params": evil})
    with pytest.raises(ValueError, match="pickled"):
        _resume(moons, path)
    path.write_bytes(pickle.dumps({"params": _Exploit(str(marker))}))
    with pytest.raises(ValueError, match="run.npz"):
        _resume(moons, path)
    assert not marker.exists()


@pytest.mark.parametrize("options,exception,words", [
    (dict(checkpoint=3), TypeError, ("checkpoint",)),
    (dict(checkpoint=b"run.npz"), TypeError, ("checkpoint",)),
    (dict(checkpoint=""), TypeError, ("checkpoint",)),
    (dict(checkpoint="run.npz", checkpoint_every=0), ValueError, ("checkpoint_every",)),
    (dict(checkpoint="run.npz", checkpoint_every=1.5), TypeError, ("checkpoint_every",)),
    (dict(checkpoint="run.npz", resume="yes"), TypeError, ("resume",)),
    (dict(resume=True), ValueError, ("resume", "checkpoint")),
    (dict(checkpoint="no/such/dir/run.npz"), OSError, ("checkpoint", "no/such/dir")),
    (dict(checkpoint="."), OSError, ("checkpoint", "directory")),
])
def test_bad_checkpoint_arguments(moons, tmp_path, monkeypatch, options, exception, words):
    monkeypatch.chdir(tmp_path)
    X, y, _, _ = moons
    net = fastnet.Network([2, 4, 2], output="softmax")
    before = net.params.copy()
    with pytest.raises(exception) as error:
        net.fit(X, y, epochs=1, **options)
    assert all(word in str(error.value) for word in words), str(error.value)
    np.testing.assert_array_equal(net.params, before)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------- a process that is killed
SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastnet
    X, y, _, _ = fastnet.datasets.load("moons", seed=0)
    net = fastnet.Network([2, 16, 16, 2], activation="relu", output="softmax", seed=3)
    history = net.fit(X, y, optimizer=fastnet.Adam(lr=0.01), epochs=40, batch_size=16,
                      dropout=0.3, validation_split=0.2, checkpoint=sys.argv[1],
                      callbacks=[lambda net, epoch, logs: time.sleep(0.05)])
    print("stopped:", history.stopped, len(history.epoch))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_process_killed_mid_fit_resumes_to_the_same_run(tmp_path, sig):
    """SIGINT: the child finishes its epoch, writes it and exits cleanly.
    SIGKILL: nothing runs at all; the last file written is whole and resumes."""
    path = tmp_path / "run.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not path.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child wrote no checkpoint"
        time.sleep(0.01)
    time.sleep(0.2)
    child.send_signal(sig)
    out, err = child.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert child.returncode == 0, err
        assert out.startswith("stopped: interrupted"), out
    else:
        assert child.returncode == -signal.SIGKILL
    with np.load(path, allow_pickle=False) as archive:
        done = json.loads(archive["header"].tobytes().decode())["epoch"]
    assert 0 < done < 40
    X, y, _, _ = fastnet.datasets.load("moons", seed=0)

    def run(**extra):
        net = fastnet.Network([2, 16, 16, 2], activation="relu", output="softmax", seed=3)
        history = net.fit(X, y, optimizer=fastnet.Adam(lr=0.01), epochs=40, batch_size=16,
                          dropout=0.3, validation_split=0.2, **extra)
        return net, history

    _assert_same_run(*run(checkpoint=path, resume=True), *run())


# ------------------------------------------------------ gradient-free runs
from comparisons import TRAINERS, minimize  # noqa: E402


def rosenbrock(X):
    return (100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1.0 - X[:, :-1]) ** 2).sum(axis=1)


def _minimize(method, path=None, max_evals=1500, **extra):
    """A write costs an fsync (~ms): hill climbing's generations are one candidate
    each, so the runs below checkpoint every 20 generations unless told."""
    extra = {"checkpoint_every": 20, **extra} if path is not None else extra
    return minimize(rosenbrock, np.zeros(5), method=method, max_evals=max_evals, seed=4,
                    vectorized=True, checkpoint=path, **extra)


def _same_result(result, expected):
    assert np.array_equal(result.x, expected.x) and result.fun == expected.fun
    assert (result.nfev, result.nit, result.success, result.message) == \
        (expected.nfev, expected.nit, expected.success, expected.message)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"}
                     for row in expected.history]
    seconds = [row["seconds"] for row in result.history]
    assert seconds == sorted(seconds)


@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_minimize_stopped_then_resumed_is_bit_identical(method, tmp_path):
    """Stopped three ways: a budget that ends mid-population (the trainer has
    asked but not been told), a callback, and an objective that raises."""
    expected = _minimize(method)
    path = tmp_path / "run.npz"
    first = _minimize(method, path, max_evals=437, checkpoint_every=3)
    assert first.nfev == 437
    second = _minimize(method, path, max_evals=1500, resume=True,
                       callback=lambda trainer: trainer.nfev >= 800)
    assert second.message == "callback requested stop"
    calls = []

    def fails_later(X):
        calls.append(len(X))
        if sum(calls) > 300:
            raise ArithmeticError("a fault injected into the objective")
        return rosenbrock(X)

    with pytest.raises(RuntimeError, match="fun raised"):
        minimize(fails_later, np.zeros(5), method=method, max_evals=1500, seed=4,
                 vectorized=True, checkpoint=path, resume=True, checkpoint_every=7)
    result = _minimize(method, path, resume=True)
    _same_result(result, expected)
    again = _minimize(method, path, resume=True)   # nothing left to do
    _same_result(again, expected)


def test_minimize_ctrl_c_returns_and_resumes(tmp_path):
    expected = _minimize("sep-cmaes")
    path = tmp_path / "run.npz"
    calls = []

    def ctrl_c_once(X):
        calls.append(1)
        if len(calls) == 20:
            os.kill(os.getpid(), signal.SIGINT)   # arrives while this generation runs
        return rosenbrock(X)

    stopped = minimize(ctrl_c_once, np.zeros(5), method="sep-cmaes", max_evals=1500, seed=4,
                       vectorized=True, checkpoint=path, checkpoint_every=50)
    assert "interrupted" in stopped.message and stopped.nit == 20 and not stopped.success
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _same_result(_minimize("sep-cmaes", path, resume=True), expected)


def test_minimize_target_reached_before_the_checkpoint_stays_reached(tmp_path):
    path = tmp_path / "run.npz"
    first = _minimize("cmaes", path, max_evals=20000, target=1e-3)
    assert first.success
    again = _minimize("cmaes", path, max_evals=20000, target=1e-3, resume=True)
    _same_result(again, first)


@pytest.mark.parametrize("change,argument", [
    (dict(method="de"), "method"),
    (dict(seed=5), "seed"),
    (dict(sigma0=0.3), "sigma0"),
    (dict(popsize=20), "popsize"),
    (dict(x0=np.ones(5)), "x0"),
    (dict(tolfun=1e-6), "tolfun"),
])
def test_minimize_resume_with_other_arguments_is_refused(tmp_path, change, argument):
    path = tmp_path / "run.npz"
    _minimize("cmaes", path, max_evals=200)
    arguments = dict(method="cmaes", max_evals=400, seed=4, vectorized=True, checkpoint=path,
                     resume=True, x0=np.zeros(5))
    arguments.update(change)
    with pytest.raises(ValueError, match=rf"cannot resume .*{argument}"):
        minimize(rosenbrock, **arguments)


def test_minimize_bad_checkpoints_and_arguments(tmp_path):
    path = tmp_path / "run.npz"
    _minimize("ga", path, max_evals=200)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="run.npz"):
        _minimize("ga", path, resume=True)
    fit_file = tmp_path / "fit.npz"
    X, y, _, _ = fastnet.datasets.load("xor")
    fastnet.Network([2, 3, 2], output="softmax").fit(X, y, epochs=1, checkpoint=fit_file)
    with pytest.raises(ValueError, match="not a comparisons-minimize-checkpoint file"):
        _minimize("ga", fit_file, resume=True)
    with pytest.raises(TypeError, match="checkpoint"):
        _minimize("ga", 12)
    with pytest.raises(OSError, match="checkpoint"):
        _minimize("ga", tmp_path / "missing" / "run.npz")
    with pytest.raises(ValueError, match="checkpoint_every"):
        _minimize("ga", path, checkpoint_every=0)
    with pytest.raises(ValueError, match="resume"):
        _minimize("ga", path, resume=1)
    with pytest.raises(ValueError, match="checkpoint"):
        _minimize("ga", None, resume=True)
