"""Weight attribution, input saliency and pruning curves (comparisons.attribution), and the
saliency study.

Oracles: central finite differences of ``net.loss`` with respect to each input; the actual
loss change when one weight is removed (whose gap to the first-order estimate must shrink
as the weight squared); weight positions in the flat layout written out by hand for a
3-4-2 network; hand-computed Gini coefficients and prunable fractions.
"""
import json

import numpy as np
import pytest

import fastnet
from comparisons import attribution, studies
from comparisons.studies import saliency

STEP = 1e-6


def _network(output, sizes=(5, 4, 3), batch_norm=False, seed=0):
    return fastnet.Network(list(sizes), activation="tanh", output=output, dtype=np.float64,
                           seed=seed, batch_norm=batch_norm)


def _data(net, n=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, net.n_inputs))
    if net.loss_name == "cross_entropy":
        return X, rng.integers(0, net.n_outputs, n)
    return X, rng.integers(0, 2, (n, net.n_outputs)).astype(float)


def _finite_difference_saliency(net, X, Y):
    """dL_i/dx_i by central differences of the loss of sample i alone."""
    out = np.empty(X.shape)
    for i in range(len(X)):
        for j in range(X.shape[1]):
            up, down = X[i:i + 1].copy(), X[i:i + 1].copy()
            up[0, j] += STEP
            down[0, j] -= STEP
            out[i, j] = (net.loss(up, Y[i:i + 1]) - net.loss(down, Y[i:i + 1])) / (2 * STEP)
    return out


@pytest.mark.parametrize("output, sizes, batch_norm", [
    ("softmax", (5, 4, 3), False),
    ("sigmoid", (5, 4, 2), False),
    ("sigmoid", (5, 4, 3, 1), False),
    ("softmax", (5, 4, 3), True),   # inference mode: the running statistics
])
def test_input_saliency_matches_finite_differences(output, sizes, batch_norm):
    net = _network(output, sizes, batch_norm)
    if batch_norm:
        rng = np.random.default_rng(3)
        net.params = net.params + 0.3 * rng.normal(size=net.n_params)   # gamma != 1, beta != 0
        net.running_stats = np.concatenate([rng.normal(size=4), rng.uniform(0.5, 2, 4)])
    X, y = _data(net)
    expected = _finite_difference_saliency(net, X, net.targets(y))
    got = attribution.input_saliency(net, X, y)
    assert got.shape == X.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert np.abs(expected).max() > 1e-3       # a real signal, not zeros matching zeros


def test_input_saliency_uses_given_params():
    net = _network("softmax")
    X, y = _data(net)
    moved = net.copy()
    moved.params = net.params * 1.5
    got = attribution.input_saliency(net, X, y, params=moved.params)
    np.testing.assert_allclose(got, _finite_difference_saliency(moved, X, net.targets(y)),
                               rtol=1e-6, atol=1e-9)
    assert not np.allclose(got, attribution.input_saliency(net, X, y))


def test_weight_attribution_is_gradient_times_weight():
    net = _network("softmax")
    X, y = _data(net, n=6)
    _, grad = net.loss_and_grad(X, y)
    np.testing.assert_array_equal(attribution.weight_attribution(net, X, y),
                                  np.abs(grad * net.params))


def test_weight_attribution_predicts_the_loss_change_of_removing_a_small_weight():
    net = _network("softmax", sizes=(3, 4, 2))
    X, y = _data(net, n=8)
    index = 5                                          # W_1[1, 1]
    gaps = []
    for value in (0.02, 0.01):
        params = net.params.copy()
        params[index] = value
        removed = params.copy()
        removed[index] = 0.0
        actual = net.loss(X, y, removed) - net.loss(X, y, params)
        _, grad = net.loss_and_grad(X, y, params)
        predicted = -grad[index] * value               # L(w - w_i e_i) - L(w), first order
        assert attribution.weight_attribution(net, X, y, params)[index] == \
            pytest.approx(abs(actual), rel=0.05)
        gaps.append(abs(actual - predicted))
    # the error is second order: halving the weight quarters it
    assert gaps[0] / gaps[1] == pytest.approx(4, rel=0.1)


def _hand_weight_indices():
    """3-4-2 layout: W_1 (12) at 0..11, b_1 at 12..15, W_2 (8) at 16..23, b_2 at 24, 25."""
    return np.r_[0:12, 16:24]


def test_weight_mask_marks_the_weight_matrices():
    net = _network("softmax", sizes=(3, 4, 2))
    assert net.n_params == 26
    np.testing.assert_array_equal(np.flatnonzero(attribution.weight_mask(net)),
                                  _hand_weight_indices())


def test_pruned_zeroes_exactly_the_lowest_scored_weights():
    net = _network("softmax", sizes=(3, 4, 2))
    scores = np.random.default_rng(2).permutation(26).astype(float)
    for fraction, count in ((0.0, 0), (0.25, 5), (0.5, 10), (1.0, 20)):
        vector = attribution.pruned(net, net.params, scores, fraction)
        zeroed = np.flatnonzero(vector != net.params)
        assert zeroed.size == count and (vector[zeroed] == 0).all()
        weights = _hand_weight_indices()
        lowest = weights[np.argsort(scores[weights])[:count]]
        assert set(zeroed) == set(lowest)
        assert set(zeroed) <= set(weights)             # biases are never removed


def test_pruning_curve_scores_the_pruned_networks():
    net = _network("softmax", sizes=(3, 4, 2))
    X, y = _data(net, n=30)
    scores = np.abs(net.params)
    curve = attribution.pruning_curve(net, X, y, None, scores, [0.0, 0.5])
    assert curve["fractions"] == [0.0, 0.5] and curve["removed"] == [0, 10]
    assert curve["loss"][0] == pytest.approx(net.loss(X, y))
    assert curve["score"][0] == pytest.approx(net.score(X, y))
    weights = _hand_weight_indices()
    by_hand = net.params.copy()
    by_hand[weights[np.argsort(scores[weights])[:10]]] = 0
    assert curve["loss"][1] == pytest.approx(net.loss(X, y, by_hand))
    assert curve["score"][1] == pytest.approx(net.score(X, y, by_hand))
    assert curve["loss"][1] != pytest.approx(curve["loss"][0])


@pytest.mark.parametrize("call, message", [
    (lambda net, X, y: attribution.weight_attribution(net, X, y, params=np.ones(3)),
     r"params must be a real vector of shape \(26,\)"),
    (lambda net, X, y: attribution.weight_attribution(net, X, y, params=np.full(26, np.nan)),
     "params contains NaN"),
    (lambda net, X, y: attribution.input_saliency(net, X[:, :2], y), "X has 2 features"),
    (lambda net, X, y: attribution.input_saliency(net, X, y[:3]),
     "X and y must have the same number of samples"),
    (lambda net, X, y: attribution.pruning_curve(net, X, y, None, np.ones(25), [0.5]),
     r"scores must be a real vector of shape \(26,\)"),
    (lambda net, X, y: attribution.pruning_curve(net, X, y, None, np.full(26, np.nan), [0.5]),
     "scores contains NaN"),
    (lambda net, X, y: attribution.pruning_curve(net, X, y, None, np.ones(26), [0.5, 1.5]),
     r"fractions\[1\] must be a finite number in \[0.0, 1.0\], got 1.5"),
    (lambda net, X, y: attribution.pruning_curve(net, X, y, None, np.ones(26), []),
     "fractions must be a non-empty 1-D list"),
])
def test_bad_inputs_are_refused_with_a_clear_message(call, message):
    net = _network("softmax", sizes=(3, 4, 2))
    X, y = _data(net, n=5)
    with pytest.raises((ValueError, TypeError), match=message):
        call(net, X, y)


def test_gini_and_prunable_fraction_on_hand_cases():
    assert saliency.gini([2.0, 2.0, 2.0, 2.0]) == pytest.approx(0.0)
    assert saliency.gini([0.0, 0.0, 0.0, 5.0]) == pytest.approx(0.75)   # (n - 1) / n
    fractions = [0.0, 0.1, 0.2, 0.3, 0.4]
    assert saliency.prunable_fraction(fractions, [0.9, 0.905, 0.891, 0.88, 0.95]) == 0.2
    assert saliency.prunable_fraction(fractions, [0.9, 0.5, 0.9, 0.9, 0.9]) == 0.0


# ------------------------------------------------------------------- the study
@pytest.fixture(scope="module")
def quick_run():
    return saliency.run(quick=True, seed=0)


def test_quick_study_returns_sane_numbers(quick_run):
    result, figures = quick_run
    counts = np.bincount(saliency.get_problem("digits").data(seed=0)[3])
    assert set(figures) == {"saliency_maps", "saliency_pruning"}
    assert len(figures["saliency_maps"].axes) == 3 * 10 + 3      # 30 images, 3 colour bars
    assert result["n_weights"] == 64 * 32 + 32 * 10
    assert result["uniform_central_share"] == 16 / 64
    for method in ("backprop", "ga"):
        entry = result["methods"][method]
        curves = entry["pruning"]
        for criterion in saliency.CRITERIA:           # nothing removed: the unpruned network
            assert curves[criterion][0] == pytest.approx(entry["test_accuracy"])
            assert entry["prunable_fraction"][criterion] in result["fractions"]
        assert 0 < entry["central_share"] < 1 and 0 <= entry["gini"] < 1
        assert -1 <= entry["attribution_magnitude_spearman"] <= 1
        assert -1 <= entry["class_saliency_vs_loss_r"] <= 1
        # the per-class test losses, weighted by class size, make the whole test loss
        np.testing.assert_allclose(np.dot(entry["class_test_loss"], counts) / counts.sum(),
                                   entry["test_loss"], rtol=1e-4)
    assert result["methods"]["backprop"]["test_accuracy"] > 0.9   # digits is easy for backprop
    assert result["methods"]["ga"]["budget"]["evaluations"] == saliency.SETTINGS[True]["ga_evals"]
    assert -1 <= result["saliency_correlation"] <= 1
    assert len(result["saliency_correlation_per_class"]) == 10
    json.dumps(result, allow_nan=True)


def test_section_quotes_the_numbers(quick_run):
    result, _ = quick_run
    text = "\n".join(saliency.section(result))
    bp, ga = result["methods"]["backprop"], result["methods"]["ga"]
    for value in (bp["test_accuracy"], ga["test_accuracy"], bp["central_share"],
                  ga["central_share"], ga["prunable_fraction"]["attribution"]):
        assert f"{100 * value:.1f}%" in text
    assert f"r = {result['saliency_correlation']:.2f}" in text
    assert f"r = {result['saliency_correlation_within_class_mean']:.2f}" in text
    assert f"r = {ga['class_saliency_vs_loss_r']:.2f} for the GA" in text
    assert f"{bp['gini']:.2f} for backprop" in text
    assert "figures/saliency_maps.png" in text and "figures/saliency_pruning.png" in text


def test_run_study_writes_the_files(tmp_path, monkeypatch, quick_run):
    monkeypatch.setattr(saliency, "run", lambda quick, seed: quick_run)
    stored = studies.run_study("saliency", tmp_path, quick=True, seed=0)
    for name in ("saliency_maps", "saliency_pruning"):
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "figures" / f"{name}.svg").exists()
    on_disk = json.loads((tmp_path / "studies" / "saliency.json").read_text())
    assert on_disk["result"]["methods"]["ga"]["test_accuracy"] == \
        stored["result"]["methods"]["ga"]["test_accuracy"]
