"""The gradient_flow and step_cosine studies.

Oracles: Monte Carlo draws of random unit vectors and the exact Gamma-function
mean of |cos| (and its sqrt(2/(pi D)) limit); cosines of hand-made vectors;
the mean-field decay of the backpropagated error through naive sigmoid
layers, 1 / (sigma'(0) sqrt(1/3)) = 4 sqrt(3) per layer; the definition of
clipping by global norm (a step of SGD is lr * g scaled to norm <= lr * c);
the files written to disk.
"""
import json
import math

import numpy as np
import pytest

from comparisons import studies
from comparisons.studies import gradient_flow, step_cosine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def flow():
    return gradient_flow.run(quick=True, seed=0)


@pytest.fixture(scope="module")
def cosines():
    return step_cosine.run(quick=True, seed=0)


# ------------------------------------------------------------- step_cosine
@pytest.mark.parametrize("dim", [50, 200])
def test_random_abs_cosine_matches_monte_carlo_and_its_limit(dim):
    rng = np.random.default_rng(dim)
    directions = rng.standard_normal((40_000, dim))
    fixed = rng.standard_normal(dim)
    cos = directions @ fixed / np.linalg.norm(directions, axis=1) / np.linalg.norm(fixed)
    exact = step_cosine.random_abs_cosine(dim)
    assert np.abs(cos).mean() == pytest.approx(exact, rel=0.02)
    assert step_cosine.random_abs_cosine_approx(dim) == pytest.approx(exact, rel=0.02)


def test_random_abs_cosine_in_low_dimensions_by_hand():
    # D = 1: cos is +-1; D = 2: E|cos theta| over the circle = 2 / pi;
    # D = 3: cos is uniform on [-1, 1] (Archimedes), so E|cos| = 1/2
    assert step_cosine.random_abs_cosine(1) == pytest.approx(1.0)
    assert step_cosine.random_abs_cosine(2) == pytest.approx(2 / math.pi)
    assert step_cosine.random_abs_cosine(3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="dim"):
        step_cosine.random_abs_cosine(0)


def test_linear_estimate_cosine_matches_monte_carlo():
    rng = np.random.default_rng(1)
    n, dim = 25, 67
    v = rng.standard_normal(dim)
    cos = []
    for _ in range(2000):
        eps = rng.standard_normal((n, dim))
        g = (eps @ v) @ eps
        cos.append(g @ v / np.linalg.norm(g) / np.linalg.norm(v))
    assert np.mean(cos) == pytest.approx(step_cosine.linear_estimate_cosine(n, dim), rel=0.03)


def test_cosine_of_hand_made_vectors():
    cosine = step_cosine.cosine
    assert cosine([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine([1, 0], [-5, 0]) == pytest.approx(-1.0)
    assert cosine([3, 4], [4, 3]) == pytest.approx(24 / 25)    # (12 + 12) / (5 * 5)
    assert math.isnan(cosine([0, 0], [1, 2]))
    with pytest.raises(ValueError, match="same length"):
        cosine([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        cosine([1, np.nan], [1, 2])


def test_running_median_by_hand():
    values = [5, 1, 4, np.nan, 2, 8]
    # windows of 3 centred, shrunk at the ends, NaN ignored
    assert step_cosine.running_median(values, 3) == pytest.approx([3, 4, 2.5, 3, 5, 5])


def test_search_mean_refuses_a_trainer_without_one():
    from comparisons.trainers import get_trainer
    with pytest.raises(ValueError, match="trainer must be ES, CMA-ES or sep-CMA-ES"):
        step_cosine.search_mean(get_trainer("ga")(np.zeros(3)))


def test_step_cosine_quick_run(cosines):
    result, figures = cosines
    assert result["D"] == 4 * 8 + 8 + 8 * 3 + 3
    assert result["baseline"] == pytest.approx(step_cosine.random_abs_cosine(result["D"]))
    methods = result["methods"]
    assert set(methods) == {"es", "es-estimate", "cmaes", "sep-cmaes"}
    for entry in methods.values():
        assert len(entry["cosines"]) == result["generations"]
        assert -1 <= entry["q25"] <= entry["median"] <= entry["q75"] <= 1
        assert entry["median"] == pytest.approx(np.nanmedian(entry["cosines"]))
    # ES's raw estimate on a still nearly linear loss: near the random-subspace value
    # sqrt(n / (n + D + 1)), far above a random direction's
    assert methods["es-estimate"]["median"] == pytest.approx(result["es_linear_cosine"],
                                                             abs=0.15)
    assert methods["es-estimate"]["median"] > 3 * result["baseline"]
    for method in ("es", "cmaes", "sep-cmaes"):
        losses = methods[method]["losses"]
        assert losses[-1] < losses[0]          # each method trained
    assert list(figures) == ["step_cosine"]


def test_step_cosine_section_quotes_the_result(cosines):
    result, _ = cosines
    text = "\n".join(step_cosine.section(result))
    assert f"{result['baseline']:.3f}" in text
    for entry in result["methods"].values():
        assert f"{entry['median']:.2f} (quartiles {entry['q25']:.2f} to {entry['q75']:.2f}" \
            in text
    assert f"D = {result['D']}" in text
    assert "![" in text and "(figures/step_cosine.png)" in text


# ----------------------------------------------------------- gradient_flow
def test_naive_sigmoid_gradient_vanishes_towards_the_input(flow):
    result, _ = flow
    sigmoid = result["settings"]["sigmoid"]
    depth = result["hidden_layers"]
    # mean-field: each hidden layer divides the error by 4 sqrt(3) ~ 6.9
    assert sigmoid["growth_per_layer_init"] == pytest.approx(4 * math.sqrt(3), rel=0.2)
    assert sigmoid["ratio_init"] < (4 * math.sqrt(3)) ** -(depth - 2)
    for key in ("relu_he", "sigmoid_bn"):
        assert 0.2 < result["settings"][key]["ratio_init"] < 5


def test_gradient_norms_recorded_are_the_gradients_norms(flow):
    import fastnet
    result, _ = flow
    net = gradient_flow.network(gradient_flow.SETTINGS["sigmoid"], result["sizes"], seed=0)
    X, y = fastnet.datasets.load(result["dataset"])[:2]
    rows = np.random.default_rng(0).choice(len(X), result["probe_size"], replace=False)
    _, grad = net.loss_and_grad(X[rows], y[rows])
    expected = [np.linalg.norm(layer[0]) for layer in net.unflatten(grad)]
    assert result["settings"]["sigmoid"]["layer_norms_init"] == pytest.approx(expected,
                                                                             rel=1e-5)


def test_growth_per_layer_and_log_running_median_by_hand():
    # hidden layers' norms 1, 10, 100: a factor 10 per layer; the ends are ignored
    assert gradient_flow.growth_per_layer([7.0, 1.0, 10.0, 100.0, 0.5]) == pytest.approx(10)
    # spread 1.5: step 1 sees step 1; 2 sees 2-3; 3 sees 2-4; 4 sees 3-5; 5 sees 4-5
    assert gradient_flow.log_running_median([4, 1, 3, 2, 5], spread=1.5) == pytest.approx(
        [4, 2, 2, 3, 3.5])


def test_scaled_initialisation_scales_every_weight_not_the_biases():
    setting = gradient_flow.SETTINGS["exploding"]
    sizes = [4, 5, 5, 3]
    plain = gradient_flow.network(gradient_flow.SETTINGS["relu_he"], sizes, seed=2)
    scaled = gradient_flow.network(setting, sizes, seed=2)
    for (W, b), (W_scaled, b_scaled) in zip(plain.unflatten(plain.params),
                                            scaled.unflatten(scaled.params)):
        assert W_scaled == pytest.approx(setting.init_scale * W)
        assert b_scaled == pytest.approx(b)


def test_clipping_bounds_every_step_and_the_unclipped_run_diverges(flow):
    result, _ = flow
    lr, clip = result["learning_rate"], result["clip_norm"]
    clipped = result["settings"]["clipped"]
    grads, steps = np.array(clipped["step_grad_norms"]), np.array(clipped["step_norms"])
    assert grads.max() > clip                   # clipping had something to do
    # plain SGD clipped by global norm: step = lr * g * min(1, c / |g|)
    assert steps == pytest.approx(lr * np.minimum(grads, clip), rel=1e-3)
    exploding = result["settings"]["exploding"]
    assert exploding["diverged_step"] is not None and math.isnan(exploding["final_loss"])
    assert np.array(exploding["step_norms"]) == pytest.approx(
        lr * np.array(exploding["step_grad_norms"]), rel=1e-3)
    assert exploding["peak_loss"] > 1e3 * exploding["step_losses"][0]
    assert clipped["diverged_step"] is None
    assert clipped["final_loss"] < clipped["epoch_losses"][0]


def test_gradient_flow_section_quotes_the_result(flow):
    result, _ = flow
    s = result["settings"]
    text = "\n".join(gradient_flow.section(result))
    for key in ("sigmoid", "relu_he", "sigmoid_bn"):
        assert f"{s[key]['ratio_init']:.2g}" in text
        assert f"{s[key]['final_loss']:.3g}" in text
        assert f"{s[key]['test_accuracy']:.1%}" in text
    assert f"{s['sigmoid']['growth_per_layer_init']:.2f}" in text
    assert f"NaN or inf at step {s['exploding']['diverged_step'] + 1}" in text
    assert f"{max(s['clipped']['step_norms']):.3g}" in text
    assert "(figures/gradient_flow.png)" in text


# ----------------------------------------------------------------- files
@pytest.mark.parametrize("name", ["gradient_flow", "step_cosine"])
def test_run_study_writes_the_figure_and_the_result(name, tmp_path):
    stored = studies.run_study(name, tmp_path, quick=True, seed=0)
    assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "figures" / f"{name}.svg").exists()
    on_disk = json.loads((tmp_path / "studies" / f"{name}.json").read_text())
    assert on_disk["figures"] == [name]
    assert on_disk["result"].keys() == stored["result"].keys()
    lines = studies.sections([on_disk])
    assert lines[0] == f"## {studies.study(name).TITLE}"


@pytest.mark.parametrize("module", [gradient_flow, step_cosine])
def test_a_negative_seed_is_refused_by_name(module):
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        module.run(quick=True, seed=-1)
