"""Loss-landscape tools (comparisons.landscape) and the landscape study.

Oracles: column norms computed by NumPy on the unflattened parameters; a
Python loop of ``net.loss`` over the same points; points built exactly as
center + a d1 + b d2; a planted 2-D subspace; and, for the study, separate
``comparisons.runs.run`` calls of the same methods with the same budget.
"""
import math

import numpy as np
import pytest

import fastnet
from comparisons import landscape, runs, studies
from comparisons.problems import get_problem
from comparisons.trainers import get_trainer
from comparisons.studies import landscape as study


@pytest.fixture(scope="module")
def net():
    return fastnet.Network([3, 5, 4, 2], activation="tanh", output="softmax", seed=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 3)), rng.integers(0, 2, 20)


# ---------------------------------------------------------------- directions
def test_direction_columns_have_the_params_column_norms_and_zero_biases(net):
    params = net.params.astype(np.float64)
    direction = landscape.filter_normalized_direction(net, params, np.random.default_rng(3))
    assert direction.shape == (net.n_params,) and direction.dtype == np.float64
    for (weights, bias), (target, _) in zip(net.unflatten(direction), net.unflatten(params)):
        np.testing.assert_allclose(np.linalg.norm(weights, axis=0),
                                   np.linalg.norm(target, axis=0), rtol=1e-9)
        assert not np.allclose(weights, target)          # random, not a copy of params
        assert np.all(bias == 0)


def test_direction_is_reproducible_from_the_seed_and_zero_for_a_zero_column(net):
    params = net.params.astype(np.float64)
    first = net.unflatten(params)[0][0]
    first[:, 2] = 0.0
    a = landscape.filter_normalized_direction(net, params, 7)
    np.testing.assert_array_equal(a, landscape.filter_normalized_direction(net, params, 7))
    assert np.all(net.unflatten(a)[0][0][:, 2] == 0)


def test_direction_with_batch_norm_leaves_gamma_and_beta_at_zero():
    bn = fastnet.Network([3, 6, 2], batch_norm=True, seed=0)
    direction = landscape.filter_normalized_direction(bn, bn.params, 0)
    (weights, bias, gamma, beta), (out_weights, out_bias) = bn.unflatten(direction)
    assert np.all(bias == 0) and np.all(gamma == 0) and np.all(beta == 0)
    assert np.all(out_bias == 0)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=0),
                               np.linalg.norm(bn.unflatten(bn.params)[0][0], axis=0), rtol=1e-6)


# ---------------------------------------------------------------- losses
def test_plane_losses_equal_a_loop_of_net_loss(net, data):
    X, y = data
    center = net.params.astype(np.float64)
    d1 = landscape.filter_normalized_direction(net, center, 1)
    d2 = landscape.filter_normalized_direction(net, center, 2)
    alphas, betas = np.array([-1.0, 0.0, 0.5]), np.array([-0.5, 0.25, 1.0, 2.0])
    losses = landscape.plane_losses(net, center, d1, d2, X, y, alphas, betas)
    assert losses.shape == (3, 4)
    expected = [[net.loss(X, y, params=center + a * d1 + b * d2) for b in betas] for a in alphas]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert len(set(losses.ravel().round(6))) > 6           # the grid really varies


def test_plane_losses_in_chunks_equal_one_call(net, data, monkeypatch):
    X, y = data
    center = net.params.astype(np.float64)
    d1, d2 = np.eye(net.n_params)[:2]
    grid = np.linspace(-1, 1, 5)
    whole = landscape.plane_losses(net, center, d1, d2, X, y, grid, grid)
    calls = []
    population_loss = net.population_loss
    monkeypatch.setattr(net, "population_loss",
                        lambda thetas, X, y: calls.append(len(thetas)) or
                        population_loss(thetas, X, y))
    monkeypatch.setattr(landscape, "MAX_VALUES_PER_CALL", 7 * net.n_params)
    np.testing.assert_array_equal(landscape.plane_losses(net, center, d1, d2, X, y, grid, grid),
                                  whole)
    assert calls == [7, 7, 7, 4]


def test_interpolate_ends_equal_net_loss_at_start_and_end(net, data):
    X, y = data
    start = net.params.astype(np.float64)
    end = start + landscape.filter_normalized_direction(net, start, 4)
    alphas = np.array([0.0, 0.3, 1.0, 1.5])
    losses = landscape.interpolate(net, start, end, X, y, alphas)
    np.testing.assert_allclose(losses[[0, 2]], [net.loss(X, y, params=start),
                                                net.loss(X, y, params=end)], rtol=1e-6)
    np.testing.assert_allclose(losses[3], net.loss(X, y, params=-0.5 * start + 1.5 * end),
                               rtol=1e-5)


# ---------------------------------------------------------------- projections
def test_project_recovers_known_coordinates_with_fraction_one():
    rng = np.random.default_rng(5)
    center, d1, d2 = rng.standard_normal((3, 50))
    known = np.array([[0.5, -2.0], [3.0, 0.25], [0.0, 1.0]])
    trajectory = center + known @ np.vstack([d1, d2])
    coordinates, fractions = landscape.project(trajectory, center, d1, d2)
    np.testing.assert_allclose(coordinates, known, atol=1e-10)
    np.testing.assert_allclose(fractions, 1.0)


def test_project_gives_fraction_zero_for_an_orthogonal_offset_and_nan_at_the_center():
    center = np.zeros(4)
    d1, d2 = np.array([1.0, 1, 0, 0]), np.array([0.0, 1, 0, 0])   # not orthogonal
    trajectory = np.array([[0.0, 0, 3, -1], [0, 0, 0, 0], [2, 2, 0, 1]])
    coordinates, fractions = landscape.project(trajectory, center, d1, d2)
    np.testing.assert_allclose(coordinates[0], 0.0, atol=1e-12)
    assert fractions[0] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(fractions[1])
    np.testing.assert_allclose(coordinates[2], [2.0, 0.0], atol=1e-12)
    assert fractions[2] == pytest.approx(np.sqrt(8 / 9))          # ||(2,2,0,0)|| / ||(2,2,0,1)||


def test_pca_directions_recover_a_planted_plane():
    rng = np.random.default_rng(6)
    D = 40
    basis = np.linalg.qr(rng.standard_normal((D, 2)))[0]       # orthonormal columns
    center = rng.standard_normal(D)
    walks = [center + np.column_stack([scale * rng.standard_normal(30), rng.standard_normal(30)])
             @ basis.T for scale in (3.0, 2.0)]
    walks[1] += 1e-6 * rng.standard_normal(walks[1].shape)       # a little off the plane
    d1, d2, ratios = landscape.pca_directions(walks, center)
    found = np.vstack([d1, d2])
    np.testing.assert_allclose(found @ found.T, np.eye(2), atol=1e-12)
    # principal angles between span(d1, d2) and the planted plane: all cosines 1
    np.testing.assert_allclose(np.linalg.svd(found @ basis, compute_uv=False), 1.0, atol=1e-9)
    assert ratios[0] > ratios[1] > 0 and ratios.sum() == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_are_refused_with_clear_messages(net, data):
    X, y = data
    center = net.params.astype(np.float64)
    d1, d2 = np.eye(net.n_params)[:2]
    grid = [0.0, 1.0]
    with pytest.raises(ValueError, match=rf"params must have shape \({net.n_params},\)"):
        landscape.filter_normalized_direction(net, center[:-1], 0)
    with pytest.raises(ValueError, match="center contains NaN or inf"):
        landscape.plane_losses(net, np.full(net.n_params, np.nan), d1, d2, X, y, grid, grid)
    with pytest.raises(ValueError, match="d1 and d2 must span a plane"):
        landscape.plane_losses(net, center, d1, 2 * d1, X, y, grid, grid)
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D array"):
        landscape.plane_losses(net, center, d1, d2, X, y, grid, [])
    with pytest.raises(ValueError, match="alphas contains NaN or inf"):
        landscape.interpolate(net, center, center, X, y, [0.0, math.inf])
    with pytest.raises(TypeError, match="end must be a vector of real numbers"):
        landscape.interpolate(net, center, ["a"] * net.n_params, X, y, grid)
    with pytest.raises(ValueError, match=r"trajectory has 3 columns \(one per parameter, "
                                         r"as many as center has\); expected 4"):
        landscape.project(np.zeros((2, 3)), np.zeros(4), [1, 0, 0, 0], [0, 1, 0, 0])
    with pytest.raises(ValueError, match="at least 3 points"):
        landscape.pca_directions(np.eye(4)[:2], np.zeros(4))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        landscape.pca_directions(np.outer(np.arange(5.0), np.ones(4)), np.zeros(4))
    with pytest.raises(ValueError, match="same D"):
        landscape.pca_directions([np.zeros((3, 4)), np.zeros((3, 5))], np.zeros(4))


# ---------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def quick():
    return study.run(quick=True, seed=0)


def _gradient_free_run(method, budget):
    """(best loss, forward-pass equivalents) of the ask/tell loop of comparisons.runs,
    written out: the same start, options, seed and budget."""
    problem = get_problem(study.PROBLEM)
    net = problem.network(seed=0)
    X, y = problem.data(seed=0)[:2]
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=0,
                                  **runs.METHOD_OPTIONS[method])
    fpe = 0
    while not trainer.stop():
        candidates = trainer.ask()
        if fpe + len(candidates) * len(X) > budget:
            break
        trainer.tell(net.population_loss(candidates, X, y))
        fpe += len(candidates) * len(X)
    return trainer.best_loss, fpe


def test_quick_study_reports_what_separate_runs_report(quick):
    result, figures = quick
    assert sorted(figures) == [f"landscape_{name}" for name in
                               ("interpolation", "pca_plane", "random_plane")]
    assert result["same_start"] and result["methods"] == ["backprop", "ga", "cmaes"]
    budget = result["budget_fpe"]
    record = runs.run(study.PROBLEM, "backprop", seed=0, budget=budget["backprop"])
    assert result["final_loss"]["backprop"] == pytest.approx(record["trace"]["train_loss"][-1],
                                                             rel=1e-5)
    assert result["initial_loss"] == pytest.approx(record["trace"]["train_loss"][0], rel=1e-6)
    assert result["fpe_used"]["backprop"] == record["fpe"] <= budget["backprop"]
    for method in ("ga", "cmaes"):
        best_loss, fpe = _gradient_free_run(method, budget[method])
        assert result["final_loss"][method] == pytest.approx(best_loss, rel=1e-6)
        assert result["fpe_used"][method] == fpe <= budget[method]
    # the random and joint planes' centre is backprop's final parameters; each own
    # plane's centre is its method's final parameters
    for plane in (result["random_plane"], result["random_zoom"], result["pca_joint"]):
        assert plane["center_loss"] == pytest.approx(result["final_loss"]["backprop"], rel=1e-6)
    for method, plane in result["pca_own"].items():
        if plane is not None:
            assert plane["center_loss"] == pytest.approx(result["final_loss"][method], rel=1e-6)
    assert result["random_plane"]["loss_min"] <= result["random_plane"]["center_loss"] * (1 + 1e-6)
    assert result["random_plane"]["extent"] == [-1.0, 1.0, -1.0, 1.0]


def test_quick_study_numbers_are_consistent(quick):
    result, _ = quick
    random_plane, joint = result["random_plane"], result["pca_joint"]
    assert random_plane["isotropic_fraction"] == pytest.approx(math.sqrt(2 / result["n_params"]))
    planes = [joint] + [plane for plane in result["pca_own"].values() if plane is not None]
    assert len(planes) >= 2
    for plane in planes:
        ratios = plane["explained_variance"]
        assert 1 >= ratios[0] >= ratios[1] > 0 and sum(ratios) <= 1 + 1e-9
        assert all(0 <= f <= 1 + 1e-9 for f in plane["in_plane_fraction"].values())
    for method in result["methods"]:
        random_fraction = random_plane["in_plane_fraction"][method]
        assert 0 <= random_fraction < 0.5
        own = result["pca_own"][method]
        if own is not None:   # a plane fitted to the path holds more of it than a random one
            assert own["in_plane_fraction"][method] > random_fraction
        line = result["interpolation"][method]
        assert line["loss_end"] == result["final_loss"][method]
        assert line["loss_start"] == pytest.approx(result["initial_loss"])
        assert line["max_bump"] >= 0 and line["max_rise"] >= 0
        assert line["monotone"] == (line["max_rise"] <= study.MONOTONE_TOLERANCE
                                    * line["loss_start"])


def test_interpolation_summary_on_a_hand_made_bump():
    alphas = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    summary = study._interpolation_summary(alphas, np.array([9.0, 2.0, 2.5, 1.0, 5.0]))
    # chord at 0.5 is 1.5: the bump is 1.0; the rise from 2.0 to 2.5 is 0.5
    assert summary == {"loss_start": 2.0, "loss_end": 1.0, "max_bump": 1.0, "max_rise": 0.5,
                       "monotone": False, "min_loss": 1.0, "min_alpha": 1.0}
    falling = study._interpolation_summary(alphas, np.array([9.0, 2.0, 1.2, 1.0, 5.0]))
    assert falling["monotone"] and falling["max_rise"] == 0.0
    assert falling["max_bump"] == pytest.approx(0.0)


def test_section_quotes_the_numbers_and_the_figures(quick):
    result, figures = quick
    text = "\n".join(study.section(result))
    for name in figures:
        assert f"(figures/{name}.png)" in text
    assert f"{result['random_plane']['center_loss']:.3g}" in text
    assert f"{result['random_plane']['start_loss_on_plane']:.3g}" in text
    for method, own in result["pca_own"].items():
        if own is None:
            assert f"the {study.LABELS[method]} path spans fewer than 2 dimensions" in text
        else:
            assert f"{study.LABELS[method]} {100 * own['explained_variance'][0]:.1f}%" in text
            assert f"{own['start_loss_on_plane']:.3g}" in text
    for method in result["methods"]:
        label = study.LABELS[method]
        assert f"{result['random_plane']['in_plane_fraction'][method]:.3g}" in text
        assert f"{label} {result['final_loss'][method]:.3g}" in text
        line = result["interpolation"][method]
        if result["distance_from_start"][method] == 0:
            assert f"{label} ended where it started" in text
        elif line["max_bump"] > study.MONOTONE_TOLERANCE * line["loss_start"]:
            assert f"{line['max_bump']:.3g} above the chord" in text
        if not line["monotone"] and result["distance_from_start"][method] > 0:
            assert f"rises by up to {line['max_rise']:.3g}" in text
            assert f"lowest, {line['min_loss']:.3g}, at α = {line['min_alpha']:.2g}" in text
    assert f"{100 * result['pca_joint']['explained_variance'][0]:.1f}%" in text
    assert f"{result['pca_joint']['in_plane_fraction']['cmaes']:.3g}" in text
    for budget in result["budget_fpe"].values():
        assert f"{budget:,}" in text


def test_run_study_writes_the_files(tmp_path, quick, monkeypatch):
    monkeypatch.setattr(study, "run", lambda **_: quick)     # the fixture's run, not another
    stored = studies.run_study("landscape", tmp_path, quick=True, seed=0)
    for name in quick[1]:
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "figures" / f"{name}.svg").exists()
    assert (tmp_path / "studies" / "landscape.json").exists()
    assert stored["result"]["final_loss"] == quick[0]["final_loss"]
