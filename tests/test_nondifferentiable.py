"""The 0-1 objective, a run on any population objective, and the non-differentiable study.

Oracles: a NumPy forward pass of the MLP written here from the documented
layout (W fan_in x fan_out in C order, then b, layer by layer); hand-worked
ties; central differences (the true gradient of a step network and of the
0-1 loss); XOR, which a 2-4-1 network solves exactly; and the files on disk.
"""
import json
import math

import numpy as np
import pytest

import fastnet
from comparisons import objectives, runs, studies
from comparisons.problems import get_problem
from comparisons.studies import nondifferentiable as study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def numpy_predictions(sizes, activation, output, theta, X):
    """Predicted labels of the MLP ``theta``: first largest output for softmax (its
    argmax is the logits' argmax, ties to the first index), 1 iff sigmoid > 0.5."""
    a, offset = np.asarray(X, dtype=np.float64), 0
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        b = theta[offset:offset + fan_out]
        offset += fan_out
        z = a @ W + b
        if layer < len(sizes) - 2:
            a = np.tanh(z) if activation == "tanh" else (z > 0).astype(np.float64)
    assert offset == theta.size
    if output == "softmax":
        return np.argmax(z, axis=1)
    return (1 / (1 + np.exp(-z[:, 0])) > 0.5).astype(np.int64)


CASES = [([4, 5, 3], "tanh", "softmax"), ([3, 6, 4, 1], "step", "sigmoid"),
         ([2, 7, 1], "tanh", "sigmoid")]


@pytest.mark.parametrize("sizes, activation, output", CASES)
def test_zero_one_losses_match_a_numpy_forward_pass(sizes, activation, output):
    rng = np.random.default_rng(len(sizes))
    net = fastnet.Network(sizes, activation=activation, output=output, dtype=np.float64)
    X = rng.normal(size=(57, sizes[0]))
    classes = 3 if output == "softmax" else 2
    y = rng.integers(0, classes, 57)
    thetas = rng.normal(0, 1.5, (6, net.n_params))
    errors = objectives.zero_one_losses(net, thetas, X, y)
    expected = [np.mean(numpy_predictions(sizes, activation, output, theta, X) != y)
                for theta in thetas]
    np.testing.assert_allclose(errors, expected, rtol=0, atol=1e-12)
    assert errors.shape == (6,) and errors.dtype == np.float64
    assert len(set(errors)) > 1           # the candidates differ: not a constant answer
    # the same rule as the network's own accuracy
    np.testing.assert_allclose(errors, [1 - net.score(X, y, params=t) for t in thetas],
                               atol=1e-12)


def test_ties_sigmoid_exactly_one_half_predicts_0_and_softmax_the_first_class():
    X = np.arange(10.0).reshape(5, 2)
    binary = fastnet.Network([2, 3, 1], activation="step", output="sigmoid")
    # all-zero parameters: every hidden step unit sees z = 0 (off), the output is
    # sigmoid(0) = 0.5 exactly, which predicts 0: the error is the share of 1s, 3/5
    zeros = np.zeros((1, binary.n_params))
    assert objectives.zero_one_losses(binary, zeros, X, [0, 1, 1, 0, 1])[0] == pytest.approx(0.6)
    # softmax of equal logits: three equal outputs, the first index (class 0) wins
    softmax = fastnet.Network([2, 3, 3], activation="tanh", output="softmax")
    labels = [0, 2, 1, 0, 0]
    error = objectives.zero_one_losses(softmax, np.zeros((1, softmax.n_params)), X, labels)
    assert error[0] == pytest.approx(2 / 5)
    # one-hot rows are the same labels
    one_hot = np.eye(3)[labels]
    assert objectives.zero_one_losses(softmax, np.zeros((1, softmax.n_params)), X,
                                      one_hot)[0] == pytest.approx(2 / 5)


def test_zero_one_losses_refuse_bad_inputs_by_name():
    net = fastnet.Network([2, 3, 1], activation="tanh", output="sigmoid")
    X, y = np.ones((4, 2)), np.array([0, 1, 1, 0])
    good = np.zeros((2, net.n_params))
    with pytest.raises(TypeError, match="net must be a fastnet.Network, got str"):
        objectives.zero_one_losses("net", good, X, y)
    regression = fastnet.Network([2, 3, 1], activation="tanh", loss="mse")
    with pytest.raises(ValueError, match="needs a classifier.*loss='mse'"):
        objectives.zero_one_losses(regression, good, X, y)
    with pytest.raises(ValueError, match=r"thetas must have shape \(P, 13\).*got shape \(13,\)"):
        objectives.zero_one_losses(net, good[0], X, y)
    with pytest.raises(ValueError, match="thetas has 12 parameters per row; expected 13"):
        objectives.zero_one_losses(net, good[:, :12], X, y)
    bad = good.copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"thetas contains NaN or inf \(first at index \(1, 4"):
        objectives.zero_one_losses(net, bad, X, y)
    with pytest.raises(ValueError, match="y must hold hard labels"):
        objectives.zero_one_losses(net, good, X, [0, 0.3, 1, 0])
    with pytest.raises(ValueError, match="X and y must have the same number of samples"):
        objectives.zero_one_losses(net, good, X, y[:3])
    with pytest.raises(ValueError, match="X has 3 features"):
        objectives.zero_one_losses(net, good, np.ones((4, 3)), y)
    softmax = fastnet.Network([2, 3, 3], activation="tanh", output="softmax")
    with pytest.raises(ValueError, match="rows must be one-hot"):
        objectives.zero_one_losses(softmax, np.zeros((1, softmax.n_params)), X,
                                   [[1, 1, 0]] * 4)


def test_the_step_network_has_no_true_gradient_but_the_surrogate_trains_it():
    """Central differences: the loss does not move with any parameter before the
    output layer (the step is flat there), and does move with the output layer's,
    as loss_and_grad says. Descending the surrogate beats descending the true
    gradient (the hidden part zeroed) by far on XOR-like quadrants."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    net = fastnet.Network([2, 4, 1], activation="step", output="sigmoid", dtype=np.float64,
                          seed=1)
    hidden = net.n_params - 5                  # the output layer: 4 weights and a bias
    h = 1e-6
    shifts = h * np.eye(net.n_params)
    central = (net.population_loss(net.params + shifts, X, y)
               - net.population_loss(net.params - shifts, X, y)) / (2 * h)
    assert np.all(central[:hidden] == 0)
    value, surrogate = net.loss_and_grad(X, y)
    np.testing.assert_allclose(central[hidden:], surrogate[hidden:], rtol=1e-6, atol=1e-9)
    assert np.all(surrogate[:hidden] != 0)

    def descend(gradient_of_hidden, steps=300, lr=0.5):
        theta = net.params.copy()
        for _ in range(steps):
            grad = net.loss_and_grad(X, y, params=theta)[1]
            if not gradient_of_hidden:
                grad[:hidden] = 0                 # the true gradient, almost everywhere
            theta -= lr * grad
        return net.loss(X, y, params=theta)

    surrogate_loss, true_loss = descend(True), descend(False)
    assert surrogate_loss < value - 0.2
    assert surrogate_loss < true_loss - 0.1


def test_the_zero_one_loss_has_a_zero_gradient_almost_everywhere():
    rng = np.random.default_rng(1)
    net = fastnet.Network([2, 5, 1], activation="tanh", output="sigmoid", dtype=np.float64)
    X, y = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    shifts = 1e-7 * np.eye(net.n_params)
    difference = (objectives.zero_one_losses(net, net.params + shifts, X, y)
                  - objectives.zero_one_losses(net, net.params - shifts, X, y))
    assert np.all(difference == 0)
    # a finite move does change it: the function is piecewise constant, not constant
    far = net.params + rng.normal(0, 2, (20, net.n_params))
    assert len(set(objectives.zero_one_losses(net, far, X, y))) > 1


def xor_problem(activation):
    return study.problem("xor", activation)


def test_a_run_on_the_zero_one_loss_solves_xor_within_its_budget():
    record = runs.run(xor_problem("tanh"), "de", 0, budget=4 * 3000, objective="zero_one")
    trace = record["trace"]
    assert record["objective"] == "zero_one" and record["n_train"] == 4
    assert record["fpe"] == 4 * record["evals"] <= 4 * 3000
    assert trace["fpe"] == [4 * evals for evals in trace["evals"]]
    # best so far: never rises, and only takes the values k / 4 of 4 points
    losses = trace["train_loss"]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert all(4 * loss == round(4 * loss) for loss in losses)
    assert losses[-1] == 0 and trace["test_score"][-1] == 1.0   # XOR: test = train
    assert record["fpe_to_target"] is None      # the problem's target is a loss value


def test_a_zero_one_run_reports_cmaes_stopping_on_a_flat_plateau():
    """Every candidate at the same 0-1 loss for several generations is CMA-ES's
    tolfun stop; the run ends there, under its budget, and says so."""
    record = runs.run(xor_problem("tanh"), "cmaes", 0, budget=4 * 3000, objective="zero_one")
    assert "trainer stopped: {'tolfun': 1e-12}" in record["message"]
    assert record["evals"] < 3000 and record["trace"]["train_loss"][-1] == 0.25


def test_the_objective_is_checked_and_only_gradient_free_methods_take_another():
    problem = xor_problem("step")
    with pytest.raises(ValueError, match="objective='hinge' is not known"):
        runs.run(problem, "de", 0, 4000, objective="hinge")
    with pytest.raises(ValueError, match="objective='zero_one' needs a gradient-free method"):
        runs.run(problem, "backprop", 0, 4000, objective="zero_one")
    with pytest.raises(ValueError, match="objective='zero_one' needs a gradient-free method"):
        runs.run(problem, "ga+bp", 0, 4000, objective="zero_one")


# ------------------------------------------------------------------ the study
@pytest.fixture(scope="module")
def quick():
    return study.run(quick=True, seed=0)


def test_quick_study_returns_every_setting_with_error_rates_of_the_test_set(quick):
    result, figures = quick
    assert set(result["datasets"]) == set(study.DATASETS)
    assert result["seeds"] == [0]
    for dataset, info in result["datasets"].items():
        X_train, _, X_test, _ = get_problem(dataset).data(seed=0)
        assert (info["n_train"], info["n_test"]) == (len(X_train), len(X_test))
        final = info["final_test_error"]
        assert set(final) == {"step/loss", "step/zero_one", "tanh/zero_one", "tanh/loss"}
        for setting, per_method in final.items():
            expected = set(study.GRADIENT_FREE) | ({"backprop"} if setting.endswith("/loss")
                                                   else set())
            assert set(per_method) == expected
            for stats in per_method.values():
                assert stats["runs"] == 1
                assert stats["q25"] <= stats["median"] <= stats["q75"]
                # an error rate on the test set: a whole number of mistakes
                mistakes = stats["median"] * info["n_test"]
                assert 0 <= mistakes <= info["n_test"]
                assert mistakes == pytest.approx(round(mistakes), abs=1e-6)
        # backprop on the tanh net beats chance on the test set
        assert final["tanh/loss"]["backprop"]["median"] < 0.5
    assert json.loads(json.dumps(result, allow_nan=True)) == result
    assert set(figures) == {"nondifferentiable_curves", "nondifferentiable_final"}


def test_the_study_gradient_check_finds_only_the_output_layer_moving(quick):
    for dataset, info in quick[0]["datasets"].items():
        check = info["gradient_check"]
        sizes = info["sizes"]
        output = (sizes[-2] + 1) * sizes[-1]
        assert check["output_params"] == output
        assert check["hidden_params"] == check["n_params"] - output
        assert check["step_loss_nonzero_hidden"] == 0
        assert check["step_loss_nonzero_output"] == output
        assert check["step_surrogate_nonzero_hidden"] == check["hidden_params"]
        assert check["step_zero_one_nonzero"] == check["tanh_zero_one_nonzero"] == 0


def test_figures_draw_every_method_in_its_colour(quick):
    from comparisons.plots import METHOD_COLOURS
    from matplotlib.colors import to_hex
    for name, figure in quick[1].items():
        figure.canvas.draw()
        colours = {}
        for ax in figure.axes:
            for artist in ax.get_children():
                gid = artist.get_gid()
                if gid and gid.startswith("method:") and hasattr(artist, "get_color"):
                    colours.setdefault(gid[7:], set()).add(to_hex(artist.get_color()))
        assert set(colours) == set(study.GRADIENT_FREE) | {"backprop"}, name
        for method, seen in colours.items():
            assert seen == {METHOD_COLOURS[method].lower()}, (name, method)


def test_section_quotes_the_results_numbers(quick):
    result = quick[0]
    text = "\n".join(study.section(result))
    for dataset, info in result["datasets"].items():
        check = info["gradient_check"]
        assert (f"non-zero for {check['step_loss_nonzero_output']} of the "
                f"{check['output_params']} output-layer parameters") in text
        for per_method in info["final_test_error"].values():
            for stats in per_method.values():
                assert f"{100 * stats['median']:.1f}%" in text
        stopped = [(method, stats) for per_method in info["final_test_error"].values()
                   for method, stats in per_method.items() if stats["stopped"]]
        for method, stats in stopped:
            assert f"{method} in {stats['stopped']} of {stats['runs']} runs" in text
        if not stopped:
            assert "Every run spent its whole budget." in text
        zero_one = info["final_test_error"]["tanh/zero_one"]
        best = min(study.GRADIENT_FREE, key=lambda m: zero_one[m]["median"])
        assert (f"trained on the 0-1 loss directly, it is {best} at "
                f"{100 * zero_one[best]['median']:.1f}% (IQR") in text
    assert "surrogate gradient" in text and "1/(1+|z|)²" in text
    assert "![Test 0-1 error against forward-pass equivalents]" \
           "(figures/nondifferentiable_curves.png)" in text
    assert "(figures/nondifferentiable_final.png)" in text


def test_run_study_writes_the_figures_and_the_result(quick, tmp_path, monkeypatch):
    monkeypatch.setattr(study, "run", lambda quick, seed: ran)   # run once, by the fixture
    ran = quick
    stored = studies.run_study("nondifferentiable", tmp_path, quick=True, seed=0, force=True)
    for name in ("nondifferentiable_curves", "nondifferentiable_final"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / "figures" / f"{name}.svg").stat().st_size > 0
    on_disk = json.loads((tmp_path / "studies" / "nondifferentiable.json").read_text())
    assert on_disk == stored and on_disk["result"] == quick[0]
    assert not math.isnan(on_disk["seconds"])
