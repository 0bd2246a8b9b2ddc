"""The MNIST-1D and Montana & Davis studies, in their quick versions.

Oracles: the published MNIST-1D split sizes and a second, uncached call of
its generator; hand-counted weights (4*7+7 + 7*10+10 + 10*1+1 = 126); NumPy
sums of squared errors from the network's outputs; the GA's generation sizes
(50, then 48 with two elites); the files on disk.
"""
import json
import random

import numpy as np
import pytest
from mnist1d.data import get_dataset_args, make_dataset

import fastnet
from comparisons import studies
from comparisons.studies import mnist1d, montana_davis

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mnist1d_quick():
    return mnist1d.run(quick=True, seed=0)


@pytest.fixture(scope="module")
def montana_quick():
    return montana_davis.run(quick=True, seed=0)


def sse(net, X, y, params=None):
    """Sum of squared errors of a one-output network, in NumPy."""
    return float(((net.forward(X, params)[:, 0].astype(np.float64) - y) ** 2).sum())


# ------------------------------------------------------------------ MNIST-1D
def test_mnist1d_data_has_the_default_shapes_and_is_deterministic():
    X_train, y_train, X_test, y_test = mnist1d.load_data()
    assert X_train.shape == (4000, 40) and y_train.shape == (4000,)
    assert X_test.shape == (1000, 40) and y_test.shape == (1000,)
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    again = make_dataset(get_dataset_args())          # generated afresh, not cached
    random.seed(1)
    np.random.seed(1)
    state = np.random.get_state()[1].copy(), random.getstate()
    mnist1d._generated.__wrapped__()
    assert np.array_equal(np.random.get_state()[1], state[0]) and random.getstate() == state[1]
    np.testing.assert_array_equal(X_train, again["x"])
    np.testing.assert_array_equal(y_test, again["y_test"])
    X_train[0, 0] = 1e6                                 # a caller's copy, not the cache
    assert mnist1d.load_data()[0][0, 0] == again["x"][0, 0]


def test_mnist1d_quick_results_are_in_range(mnist1d_quick):
    result, _ = mnist1d_quick
    assert result["published_accuracy"] == {"logistic regression": 0.32, "MLP": 0.68,
                                            "CNN": 0.94}
    assert result["sizes"] == [40, 100, 100, 10]
    assert result["n_params"] == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    methods = result["methods"]
    assert set(methods) == {"backprop", "ga", "sep-cmaes", "es", "pso", "de", "random"}
    backprop = methods["backprop"]
    assert backprop["fpe"] == result["backprop"]["budget_fpe"] == 5 * 3 * 4000
    assert backprop["evals"] == result["backprop"]["steps"] == 5 * 40
    assert backprop["final_test_accuracy"] > 0.3          # 5 epochs learn well past chance
    best = max(summary["final_test_accuracy"] for method, summary in methods.items()
               if method != "backprop")
    assert result["best_gradient_free_accuracy"] == best
    reach = result["backprop_fpe_to_best_gradient_free"]
    assert 0 <= reach <= backprop["fpe"] and reach % (3 * 4000) == 0     # whole epochs
    for method, summary in methods.items():
        assert 0 <= summary["final_test_accuracy_q25"] <= summary["final_test_accuracy"] \
            <= summary["final_test_accuracy_q75"] <= 1
        assert summary["status"] == ["completed"], method
        if method != "backprop":
            assert 0 < summary["fpe"] <= result["gradient_free_budget_fpe"] == 5 * 5 * 3 * 4000
            assert summary["fpe"] == summary["evals"] * 4000
            assert summary["options"]["sigma0"] == result["gradient_free_sigma0"] == 0.05


def test_full_cmaes_counts_match_the_hand_count():
    net = mnist1d.problem(1).network()
    counts = mnist1d.full_cmaes_estimate(net, 4000, 1000)
    D = 15210
    assert counts["popsize"] == 4 + int(3 * np.log(D)) == 32 and counts["generations"] == 31
    # C, B and the eigensolver's workspace dominate the memory
    assert counts["memory_gib"] == pytest.approx(3 * D * D * 8 / 2 ** 30, rel=0.01)
    assert counts["own_gflop_per_generation"] == pytest.approx((2 * 32 + 16 + 1) * D * D / 1e9)
    assert counts["evaluation_gflop_per_generation"] == pytest.approx(
        2 * (40 * 100 + 100 * 100 + 100 * 10) * 4000 * 32 / 1e9)


def test_mnist1d_figure_draws_every_method_and_the_published_lines(mnist1d_quick):
    result, figures = mnist1d_quick
    assert list(figures) == ["mnist1d"]
    ax = figures["mnist1d"].axes[0]
    levels = sorted(line.get_ydata()[0] for line in ax.lines if line.get_gid() is None)
    assert levels == [0.32, 0.68, 0.94]
    labels = " ".join(text.get_text() for text in ax.texts)
    for model in ("logistic regression: 32%", "MLP: 68%", "CNN: 94%"):
        assert model in labels
    drawn = {line.get_gid() for line in ax.lines if line.get_gid()}
    assert drawn == {f"method:{method}" for method in result["methods"]}
    assert ax.get_xscale() == "log"


def test_mnist1d_section_quotes_the_result(mnist1d_quick):
    result, _ = mnist1d_quick
    text = "\n".join(mnist1d.section(result))
    for summary in result["methods"].values():
        assert f"{summary['final_test_accuracy']:.1%}" in text
    assert "68%" in text and "32%" in text
    assert f"{result['gradient_free_budget_fpe']:,}" in text
    assert f"after {result['backprop_fpe_to_best_gradient_free']:,.0f}" in text
    assert "![" in text and "figures/mnist1d.png" in text


def test_mnist1d_run_study_writes_the_files(mnist1d_quick, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist1d, "run", lambda quick, seed: mnist1d_quick)
    studies.run_study("mnist1d", tmp_path, quick=True, seed=0)
    assert (tmp_path / "figures" / "mnist1d.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "figures" / "mnist1d.svg").exists()
    stored = json.loads((tmp_path / "studies" / "mnist1d.json").read_text())
    assert stored["result"]["methods"]["backprop"]["final_test_accuracy"] == \
        mnist1d_quick[0]["methods"]["backprop"]["final_test_accuracy"]


# ------------------------------------------------------ Montana and Davis
def test_montana_davis_network_has_126_weights():
    assert montana_davis.n_weights() == 4 * 7 + 7 + 7 * 10 + 10 + 10 * 1 + 1 == 126
    assert montana_davis.network(0).n_params == 126
    assert montana_davis.n_weights((2, 3, 1)) == 2 * 3 + 3 + 3 + 1


def test_montana_davis_data_is_versicolor_against_virginica():
    X_train, y_train, X_test, y_test = montana_davis.load_data(0)
    assert X_train.shape[1] == 4 and len(X_train) + len(X_test) == 100
    assert set(np.unique(y_train)) == {0.0, 1.0} and y_train.mean() == 0.5
    _, y_all, _, y_test_all = fastnet.datasets.load("iris", seed=0)
    assert len(y_train) == np.isin(y_all, (1, 2)).sum()
    assert np.array_equal(y_test, (y_test_all[y_test_all > 0] == 2).astype(float))


def test_backprop_errors_are_the_sse_after_each_step():
    X, y, _, _ = montana_davis.load_data(0)
    optimizer = fastnet.SGD(lr=1.0, momentum=0.9)
    errors = montana_davis.backprop_errors(montana_davis.network(0), X, y, optimizer, 4)
    assert errors.shape == (5,)
    assert errors[0] == pytest.approx(sse(montana_davis.network(0), X, y), rel=1e-5)
    for steps in (2, 4):
        net = montana_davis.network(0)
        net.fit(X, y, optimizer=optimizer, epochs=steps, batch_size=len(X), shuffle=False)
        assert errors[steps] == pytest.approx(sse(net, X, y), rel=1e-5)


def test_ga_errors_count_whole_generations_and_keep_the_best():
    X, y, _, _ = montana_davis.load_data(0)
    net = montana_davis.network(0)
    spent, errors, best = montana_davis.ga_errors(net, X, y, seed=0, evaluations=300)
    # 50 first, then the 48 children of each generation (2 elites): 50 + 5 * 48 = 290
    np.testing.assert_array_equal(spent, [0, 50, 98, 146, 194, 242, 290])
    assert errors[0] == pytest.approx(sse(net, X, y), rel=1e-5)
    assert np.all(np.diff(errors) <= 0) and errors[-1] < errors[0]
    assert errors[-1] == pytest.approx(sse(net, X, y, best), rel=1e-4)


def test_montana_davis_quick_results_follow_their_accounting(montana_quick):
    result, figures = montana_quick
    methods = result["methods"]
    assert result["n_weights"] == 126 and result["published_evaluations"] == 10_000
    assert result["ga_evaluation_budget"] == 1000 and result["backprop_iterations"] == 500
    ga = methods["ga"]
    assert ga["evaluations"] == 50 + 19 * 48 and ga["iterations"] == ga["evaluations"] / 2
    assert methods["backprop"]["iterations"] == methods["adam"]["iterations"] == 500
    # forward-pass equivalents: the GA's 962 x 76, backprop's 3 x 76 per iteration
    assert ga["fpe"] == 962 * result["n_train"]
    assert result["backprop_fpe"] == 500 * 3 * result["n_train"]
    assert result["equal_fpe_iteration"] == 962 // 3
    grid = np.array(result["curves"]["iterations"])
    assert grid[-1] == pytest.approx(500)
    # the GA's curve stops where its evaluations / 2 end
    ga_curve = np.array(result["curves"]["ga"]["median"], dtype=float)
    assert np.isnan(ga_curve[grid > ga["iterations"]]).all()
    assert np.isfinite(ga_curve[grid <= ga["iterations"]]).all()
    line = next(line for line in figures["montana_davis"].axes[0].lines
                if line.get_gid() == "method:ga")
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    assert x[np.isfinite(y)].max() <= ga["iterations"] < x[np.isnan(y)].min()
    for summary in methods.values():
        sse_stats, accuracy = summary["final_train_sse"], summary["test_accuracy"]
        assert 0 <= sse_stats["q25"] <= sse_stats["median"] <= sse_stats["q75"] \
            <= result["n_train"]    # sigmoid outputs and 0/1 targets: each error <= 1
        assert sse_stats["median"] == pytest.approx(np.median(summary["final_train_sse_per_seed"]))
        assert 0 <= accuracy["q25"] <= accuracy["median"] <= accuracy["q75"] <= 1
    assert methods["backprop"]["final_train_sse"]["median"] < result["n_train"] / 4


def test_montana_davis_section_quotes_the_result_and_its_verdict(montana_quick):
    result, _ = montana_quick
    text = "\n".join(montana_davis.section(result))
    for summary in result["methods"].values():
        assert f"{summary['final_train_sse']['median']:.3g}" in text
        assert f"{summary['test_accuracy']['median']:.1%}" in text
    assert "figures/montana_davis.png" in text
    swapped = json.loads(json.dumps(result))
    swapped["methods"]["ga"]["final_train_sse"]["median"] = 1e-9
    swapped["ga_lower_than"] = {"backprop": 2, "adam": 2}
    verdicts = "\n".join(montana_davis.section(swapped))
    assert verdicts.count("conclusion holds") == 2 and "does not hold" not in verdicts
    swapped["methods"]["ga"]["final_train_sse"]["median"] = 1e9
    assert "\n".join(montana_davis.section(swapped)).count("does not hold") == 2


def test_montana_davis_run_study_writes_the_files(tmp_path):
    stored = studies.run_study("montana_davis", tmp_path, quick=True, seed=0)
    assert (tmp_path / "figures" / "montana_davis.png").read_bytes()[:8] == PNG_MAGIC
    on_disk = json.loads((tmp_path / "studies" / "montana_davis.json").read_text())
    assert on_disk["result"]["n_weights"] == 126 == stored["result"]["n_weights"]
