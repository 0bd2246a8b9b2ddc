"""The two-spirals and parity studies: the 40-20-40 rule, the cost counter
(checked by hand-counted cases and by re-running one step short of the
reported cost), and the quick studies end to end."""
import math
import os

import numpy as np
import pytest

import fastnet
from comparisons import studies
from comparisons.problems import get_problem
from comparisons.runs import METHOD_OPTIONS
from comparisons.trainers import get_trainer
from comparisons.studies import parity, two_spirals
from comparisons.studies.two_spirals import (Outcome, cost_to_solve, errors_40_20_40,
                                             summarise, wrong_40_20_40)


def reference_errors(outputs, y):
    """The 40-20-40 rule written out: 1 needs > 0.6, 0 needs < 0.4."""
    outputs = np.ravel(outputs)
    return int(sum((out <= 0.6) if target == 1 else (out >= 0.4)
                   for out, target in zip(outputs, np.ravel(y))))


# ------------------------------------------------------------- criterion
def test_40_20_40_on_hand_made_outputs():
    outputs = [0.61, 0.5, 0.5, 0.39, 0.6, 0.4, 0.99, 0.01]
    targets = [1, 1, 0, 0, 1, 0, 0, 1]
    assert wrong_40_20_40(outputs, targets).tolist() == [False, True, True, False,
                                                        True, True, True, True]
    assert errors_40_20_40(outputs, targets) == 6


def test_40_20_40_counts_per_candidate_and_nan_is_wrong():
    targets = np.array([[1], [0]])
    outputs = np.array([[[0.9], [0.1]], [[0.9], [0.45]], [[np.nan], [0.5]]])
    assert errors_40_20_40(outputs, targets).tolist() == [0, 1, 2]


def test_40_20_40_refuses_bad_input():
    with pytest.raises(ValueError, match="outputs must end with the targets' shape"):
        errors_40_20_40([0.5, 0.5], [1, 0, 1])
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        errors_40_20_40([0.5, 0.5], [1, 2])


def test_solvable_loss_bounds_every_solved_network():
    # the worst solved outputs sit just past the thresholds: their BCE is -ln(0.6)
    just_solved = np.array([0.6 + 1e-7, 0.4 - 1e-7])
    targets = np.array([1, 0])
    assert errors_40_20_40(just_solved, targets) == 0
    bce = -np.mean(targets * np.log(just_solved) + (1 - targets) * np.log(1 - just_solved))
    assert bce < two_spirals.SOLVABLE_LOSS < bce + 2e-3


# --------------------------------------------------------- cost counter
def and_network():
    """A 2-1 sigmoid unit that already computes AND on {0, 1}^2 (by hand:
    z = 10 x1 + 10 x2 - 15 gives -15, -5, -5, 5: outputs 0.0000003, 0.0067,
    0.0067, 0.9933)."""
    net = fastnet.Network([2, 1], output="sigmoid", loss="bce", seed=0)
    net.params = np.array([10.0, 10.0, -15.0], dtype=net.dtype)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    return net, X, np.array([0, 0, 0, 1])


@pytest.mark.parametrize("method", two_spirals.METHODS + ("cmaes",))
def test_a_solved_network_costs_nothing(method):
    net, X, y = and_network()
    outcome = cost_to_solve(net, X, y, method, seed=0, cap_fpe=10_000)
    assert (outcome.solved, outcome.evals, outcome.fpe, outcome.errors) == (True, 0, 0, 0)
    assert outcome.stopped == "solved"


def spirals():
    return fastnet.datasets.load("spirals")[:2]


def test_a_backprop_epoch_on_the_spirals_costs_3_x_194():
    X, y = spirals()
    net = get_problem("spirals").network(seed=0)
    outcome = cost_to_solve(net, X, y, "backprop", seed=0, cap_fpe=10 * 3 * 194 + 500)
    assert (outcome.solved, outcome.evals, outcome.fpe) == (False, 10, 10 * 3 * 194)
    assert outcome.stopped == "cap"
    assert outcome.errors == reference_errors(net.forward(X, params=outcome.params), y) > 0


def test_a_gradient_free_evaluation_costs_194_and_whole_generations():
    X, y = spirals()
    net = get_problem("spirals").network(seed=0)
    cap = 1_000 * 194
    outcome = cost_to_solve(net, X, y, "de", seed=0, cap_fpe=cap)
    popsize = METHOD_OPTIONS["de"]["popsize"]   # DE asks for its whole population each time
    assert not outcome.solved and outcome.fpe == 194 * outcome.evals
    assert outcome.evals % popsize == 0 and cap - popsize * 194 < outcome.fpe <= cap
    assert outcome.errors == reference_errors(net.forward(X, params=outcome.params), y)


@pytest.mark.parametrize("method, per_eval", [("backprop", 3 * 4), ("cmaes", 4)])
def test_the_cost_is_the_first_that_solves(method, per_eval):
    X, y = fastnet.datasets.load("xor")[:2]
    outcome = cost_to_solve(parity.network(2, 0), X, y, method, 0, cap_fpe=200_000)
    assert outcome.solved and outcome.errors == 0 and outcome.fpe == per_eval * outcome.evals
    assert reference_errors(parity.network(2, 0).forward(X, params=outcome.params), y) == 0
    # one epoch (or generation) less is not enough: the same run stops short, censored
    step = 1 if method == "backprop" else get_trainer("cmaes").default_popsize(17)
    short = cost_to_solve(parity.network(2, 0), X, y, method, 0,
                          cap_fpe=(outcome.evals - step) * per_eval)
    assert not short.solved and short.evals == outcome.evals - step and short.errors > 0


def test_cost_to_solve_refuses_bad_input():
    net, X, y = and_network()
    with pytest.raises(ValueError, match="method='newton' is not known"):
        cost_to_solve(net, X, y, "newton", 0, 1_000)
    with pytest.raises(ValueError, match="cap_fpe"):
        cost_to_solve(net, X, y, "ga", 0, -1)
    regression = fastnet.Network([2, 1], loss="mse")
    with pytest.raises(ValueError, match="loss 'bce'"):
        cost_to_solve(regression, X, y, "ga", 0, 1_000)


def test_summaries_censor_unsolved_runs():
    params = np.zeros(1)
    outcomes = [Outcome("ga", 0, True, 100, 400, 0, "solved", params),
                Outcome("ga", 1, True, 200, 800, 0, "solved", params),
                Outcome("ga", 2, False, 300, 1_200, 3, "cap", params)]
    summary = summarise(outcomes)
    assert (summary["runs"], summary["solved"], summary["unit"]) == (3, 2, "evaluations")
    # sorted costs 100, 200, censored (infinite): median 200, lower quartile 150,
    # upper quartile between 200 and the censored run: unknown
    low, median, high = summary["evals_quartiles"]
    assert (low, median) == (150, 200) and math.isnan(high)
    assert summary["fpe_quartiles"][:2] == [600, 800]
    assert summary["stopped"] == ["solved", "solved", "cap"] and summary["errors"][2] == 3


def test_xor_is_two_bit_parity():
    for a, b in zip(fastnet.datasets.load("xor"), fastnet.datasets.load("parity2")):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------ quick studies
@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, {name: studies.run_study(name, str(out), quick=True, seed=0, force=True)
                 for name in ("two_spirals", "parity")}


def test_run_study_writes_the_files(stored):
    out, results = stored
    for name, entry in results.items():
        assert entry["figures"] == [name]
        for extension in ("png", "svg"):
            assert os.path.getsize(os.path.join(out, "figures", f"{name}.{extension}")) > 1000
        assert studies.load_result(str(out), name)["result"].keys() == entry["result"].keys()


def check_summary(summary, cap_fpe, per_eval, runs):
    assert summary["runs"] == runs == len(summary["fpe"]) == len(summary["solved_runs"])
    assert summary["solved"] == sum(summary["solved_runs"])
    for fpe, evals, solved, errors, stopped in zip(summary["fpe"], summary["evals"],
                                                   summary["solved_runs"], summary["errors"],
                                                   summary["stopped"]):
        assert fpe == evals * per_eval and 0 <= fpe <= cap_fpe
        assert solved == (errors == 0) == (stopped == "solved")
    # unsolved runs sort last as infinite costs: the median (the middle run, or
    # the mean of the middle two) is known only when more than half are solved
    assert math.isfinite(summary["fpe_quartiles"][1]) == (summary["solved"] * 2 > runs)


def test_quick_two_spirals(stored):
    result = stored[1]["two_spirals"]["result"]
    assert result["n_points"] == 194 and result["network"] == "2-16-16-1"
    assert result["reference"]["fpe"] == 18_000 * 3 * 194
    assert result["cap_epochs"] == result["cap_fpe"] // (3 * 194)
    assert result["cap_evals"] == result["cap_fpe"] // 194
    assert list(result["methods"]) == list(two_spirals.METHODS)
    for method, summary in result["methods"].items():
        per_eval = 3 * 194 if method == "backprop" else 194
        check_summary(summary, result["cap_fpe"], per_eval, len(result["seeds"]))
    for shown in result["regions"].values():
        errors = result["methods"][shown["method"]]["errors"]
        assert shown["errors"] == min(errors)


def test_quick_parity(stored):
    result = stored[1]["parity"]["result"]
    assert result["bits"] == [2, 3] and result["patterns"] == [4, 8]
    assert result["networks"] == ["2-4-1", "3-6-1"] and result["n_params"] == [17, 31]
    assert result["cap_fpe"] == [result["cap_evals"] * 4, result["cap_evals"] * 8]
    for method, per_n in result["methods"].items():
        for patterns, cap_fpe, summary in zip(result["patterns"], result["cap_fpe"], per_n):
            per_eval = 3 * patterns if method == "backprop" else patterns
            check_summary(summary, cap_fpe, per_eval, len(result["seeds"]))
    assert result["methods"]["backprop"][0]["solved"] == len(result["seeds"])


def test_censored_runs_are_kept(stored):
    summaries = [summary for entry in stored[1].values()
                 for per_method in entry["result"]["methods"].values()
                 for summary in (per_method if isinstance(per_method, list) else [per_method])]
    censored = [summary for summary in summaries if summary["solved"] < summary["runs"]]
    assert censored, "the quick caps are meant to leave some runs unsolved"
    for summary in censored:
        assert len(summary["fpe"]) == summary["runs"]
        assert any(stopped != "solved" for stopped in summary["stopped"])


def test_sections_quote_the_numbers(stored):
    spirals = stored[1]["two_spirals"]["result"]
    text = "\n".join(two_spirals.section(spirals))
    assert f"{spirals['cap_fpe']:,}" in text and "18,000 epochs" in text
    assert f"{spirals['reference']['fpe']:,}" in text
    for method, summary in spirals["methods"].items():
        assert f"{summary['solved']} of {summary['runs']}" in text
    assert "figures/two_spirals.png" in text

    result = stored[1]["parity"]["result"]
    text = "\n".join(parity.section(result))
    for method, per_n in result["methods"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
        for summary in per_n:
            median = summary["fpe_quartiles"][1]
            assert f"({summary['solved']}/{summary['runs']})" in row
            assert (f"{median:,.0f}" if math.isfinite(median) else "> cap") in row
    assert "figures/parity.png" in text
