"""Hybrids: the Memetic trainer, the hybrid runs and the hybrids study.

Oracles: the plain GA with the same seed (bit for bit), hand-built cases
where learning reverses the ranking, hand counts of forward-pass
equivalents, a plain GA run on the warm start's share of the budget, the
first Adam step's closed form (theta - lr * sign(g)), and hand-computed
medians on synthetic run records.
"""
import math

import numpy as np
import pytest

from comparisons import runs, studies
from comparisons.problems import get_problem
from comparisons.studies import hybrids
from comparisons.trainers import Memetic
from comparisons.trainers.ga import GA

IRIS_TRAIN = 114        # training samples of iris (seed 0 split)
GA_POPSIZE = 50


def sphere(X):
    return np.sum(X ** 2, axis=1)


def test_told_without_learned_vectors_it_is_the_plain_ga():
    memetic = Memetic(np.ones(5), seed=7, popsize=8)
    ga = GA(np.ones(5), seed=7, popsize=8)
    for _ in range(4):
        children = memetic.ask()
        np.testing.assert_array_equal(children, ga.ask())
        memetic.tell(sphere(children))
        ga.tell(sphere(children))
    assert memetic.best_loss == ga.best_loss
    np.testing.assert_array_equal(memetic.best, ga.best)
    np.testing.assert_array_equal(memetic.population, ga.population)


def _learned_far_away(trainer, offset=100.0):
    """Children that 'learn' by moving ``offset`` along every axis; loss |x - offset|^2."""
    children = trainer.ask()
    learned = children + offset
    trainer.tell(sphere(learned - offset) + 1.0, learned)
    return children, learned


def test_lamarckian_keeps_and_breeds_from_the_learned_vectors():
    trainer = Memetic(np.zeros(3), seed=0, popsize=6, inheritance="lamarckian")
    children, learned = _learned_far_away(trainer)
    best = int(np.argmin(sphere(children)))
    np.testing.assert_array_equal(trainer.best, learned[best])
    np.testing.assert_array_equal(trainer.population, learned)
    # the learned vectors sit near 100, the genomes near 0 (sigma0 0.5): the next
    # children are bred from the former
    assert np.all(trainer.ask() > 50)


def test_baldwinian_keeps_the_genomes_and_breeds_from_them():
    trainer = Memetic(np.zeros(3), seed=0, popsize=6, inheritance="baldwinian")
    children, learned = _learned_far_away(trainer)
    np.testing.assert_array_equal(trainer.best, learned[np.argmin(sphere(children))])
    np.testing.assert_array_equal(trainer.population, children)
    assert np.all(np.abs(trainer.ask()) < 50)


@pytest.mark.parametrize("inheritance", ["lamarckian", "baldwinian"])
def test_selection_ranks_by_the_learned_losses(inheritance):
    """Four children; without learning child 0 is best, after learning child 3 is.
    With one elite, the survivor of the next generation shows who was ranked first."""
    genome_losses = np.array([0.1, 0.2, 0.3, 0.4])
    learned_losses = genome_losses[::-1].copy()
    survivors = {}
    for told in ("genomes", "learned"):
        trainer = Memetic(np.zeros(2), seed=1, popsize=4, n_elite=1, inheritance=inheritance)
        children = trainer.ask()
        learned = children + np.arange(4)[:, None]
        if told == "learned":
            trainer.tell(learned_losses, learned)
        else:
            trainer.tell(genome_losses)
        trainer.tell(np.full(len(trainer.ask()), 10.0))     # all worse than the elite
        survivors[told] = trainer.population[0]
    np.testing.assert_array_equal(survivors["genomes"], children[0])
    expected = learned[3] if inheritance == "lamarckian" else children[3]
    np.testing.assert_array_equal(survivors["learned"], expected)
    assert trainer.population_losses[0] == learned_losses[3] == trainer.best_loss
    np.testing.assert_array_equal(trainer.best, learned[3])


@pytest.mark.parametrize("learned, message", [
    (np.zeros((4, 3)), r"learned must have the shape of the last ask, \(5, 3\), got \(4, 3\)"),
    (np.zeros((5, 2)), r"learned must have the shape of the last ask, \(5, 3\), got \(5, 2\)"),
    (np.array([[0, 0, 0]] * 3 + [[0, np.nan, 0], [np.inf, 0, 0]]),
     r"learned must be finite, got non-finite values in rows \[3, 4\]"),
    ([["a", "b", "c"]] * 5, "learned must be real numbers"),
])
def test_bad_learned_vectors_are_refused_and_the_ask_stays_open(learned, message):
    trainer = Memetic(np.zeros(3), seed=0, popsize=5)
    children = trainer.ask()
    with pytest.raises(ValueError, match=message):
        trainer.tell(sphere(children), learned)
    with pytest.raises(ValueError, match=r"losses must have shape \(5,\)"):
        trainer.tell([1.0, 2.0], children + 1)
    trainer.tell(sphere(children + 1), children + 1)          # still open, and still works
    assert trainer.nfev == 5 and trainer.generation == 1
    np.testing.assert_array_equal(trainer.population, children + 1)


def test_bad_inheritance_is_named():
    with pytest.raises(ValueError, match=r"inheritance must be one of \['baldwinian', "
                                         r"'lamarckian'\], got 'lamark'"):
        Memetic(np.zeros(3), inheritance="lamark")


def test_memetic_state_dict_resumes_bit_for_bit():
    first = Memetic(np.ones(4), seed=3, popsize=6, inheritance="baldwinian")
    for _ in range(2):
        _learned_far_away(first, offset=1.0)
    second = Memetic.from_state_dict(first.state_dict())
    for trainer in (first, second):
        _learned_far_away(trainer, offset=1.0)
    np.testing.assert_array_equal(first.ask(), second.ask())
    assert second.inheritance == "baldwinian"


# ------------------------------------------------------------------- runs
def test_hybrids_are_run_but_not_in_the_sweep_default():
    assert set(runs.HYBRID_METHODS) == {"ga+bp", "cmaes+bp", "memetic", "memetic-baldwin"}
    assert not set(runs.HYBRID_METHODS) & set(runs.METHODS)
    assert runs.METHODS == ("backprop", "ga", "pso", "de", "cmaes", "sep-cmaes", "es",
                            "anneal", "hillclimb", "random")


@pytest.mark.parametrize("method, switch", [("ga+bp", 0.5), ("cmaes+bp", 0.3)])
def test_warm_start_switches_at_its_fraction_then_spends_the_budget_on_epochs(method, switch):
    budget = 60_000
    record = runs.run("iris", method, seed=0, budget=budget, options={"switch": switch})
    hybrid, trace = record["hybrid"], record["trace"]
    # the scale guard, timing this machine, may run full CMA-ES as sep-CMA-ES
    assert record["status"] == "completed"
    assert record["runs_as"] == f"{hybrid['gradient_free']}+bp"
    assert record["fpe"] <= budget
    assert np.all(np.diff(trace["fpe"]) >= 0)
    # the gradient-free part stops at the first generation that would pass switch x budget
    popsize = runs.get_trainer(hybrid["gradient_free"]).default_popsize(67)
    generation = popsize * IRIS_TRAIN
    assert hybrid["switch_budget"] == int(switch * budget)
    assert hybrid["switch_budget"] - generation < hybrid["switch_fpe"] <= hybrid["switch_budget"]
    assert hybrid["switch_fpe"] in trace["fpe"]
    # then whole epochs of backprop (3 FPE per sample) until the next would pass the budget
    epoch = 3 * IRIS_TRAIN
    epochs, rest = divmod(record["fpe"] - hybrid["switch_fpe"], epoch)
    assert rest == 0 and budget - epoch < record["fpe"]
    assert record["evals"] == hybrid["switch_evals"] + epochs * math.ceil(IRIS_TRAIN / 32)
    assert trace["train_loss"][-1] < hybrid["switch_loss"]


def test_warm_start_is_the_plain_trainer_up_to_the_switch():
    record = runs.run("iris", "ga+bp", seed=2, budget=40_000)
    plain = runs.run("iris", "ga", seed=2, budget=record["hybrid"]["switch_budget"])
    assert plain["fpe"] == record["hybrid"]["switch_fpe"]
    assert plain["trace"]["train_loss"][-1] == record["hybrid"]["switch_loss"]
    switch = record["trace"]["fpe"].index(plain["fpe"])
    assert record["trace"]["train_loss"][switch] == record["hybrid"]["switch_loss"]


def test_backprop_part_starts_from_the_trainers_best_vector(monkeypatch):
    started_from = []
    descend = runs._descend

    def spy(net, *args):
        started_from.append(net.params.copy())
        return descend(net, *args)

    monkeypatch.setattr(runs, "_descend", spy)
    record = runs.run("iris", "ga+bp", seed=1, budget=30_000)
    # the oracle: a GA by hand, on the same start and seed, within the switch budget
    problem = get_problem("iris")
    net = problem.network(seed=1)
    X, Y = runs.prepared_data(net, problem)[:2]
    ga = GA(net.params.astype(np.float64), seed=1, sigma0=0.5)
    spent = 0
    while spent + len(candidates := ga.ask()) * len(X) <= 15_000:
        ga.tell(net.engine.population_loss(candidates.astype(net.dtype), X, Y))
        spent += len(candidates) * len(X)
    np.testing.assert_array_equal(started_from[0], ga.best.astype(net.dtype))
    assert record["hybrid"]["switch_fpe"] == spent
    assert record["hybrid"]["switch_loss"] == ga.best_loss


def test_memetic_counts_forward_pass_equivalents_by_hand(monkeypatch):
    told = []
    tell = Memetic.tell

    def spy(trainer, losses, learned=None):
        told.append((trainer.asked.copy(), learned))
        return tell(trainer, losses, learned)

    monkeypatch.setattr(Memetic, "tell", spy)
    # a child: 2 Adam steps on 8 samples (2 x 3 x 8 = 48) + its loss on 114 samples = 162
    # generations: 6 children (972), then 6 - 2 elite = 4 children (648) each:
    # 972 + 6 x 648 = 4,860 <= 5,000 < 4,860 + 648
    options = {"popsize": 6, "local_steps": 2, "batch_size": 8}
    record = runs.run("iris", "memetic", seed=0, budget=5_000, options=options)
    assert len(told) == 7
    for children, learned in told:           # every child learned, and moved
        assert learned.shape == children.shape and np.all(np.any(learned != children, axis=1))
    assert record["status"] == "completed"
    assert record["hybrid"] == {"gradient_free": "ga", "inheritance": "lamarckian",
                                "local_steps": 2, "batch_size": 8, "fpe_per_child": 162,
                                "evals_per_child": 3}
    assert record["fpe"] == 4_860
    assert record["evals"] == (6 + 6 * 4) * 3
    assert set(record["trace"]["fpe"]) <= {0, *(972 + 648 * g for g in range(7))}
    baldwin = runs.run("iris", "memetic-baldwin", seed=0, budget=5_000, options=options)
    assert baldwin["hybrid"]["inheritance"] == "baldwinian" and baldwin["fpe"] == 4_860


def test_a_budget_below_one_memetic_generation_is_skipped_with_the_numbers():
    record = runs.run("iris", "memetic", seed=0, budget=1_000, options={"popsize": 6})
    assert record["status"] == "skipped" and record["evals"] == 0
    assert record["message"] == ("the budget of 1,000 forward-pass equivalents is less than "
                                 "one generation (6 candidates x 594 forward-pass "
                                 "equivalents)")


def test_learning_takes_adam_steps_and_a_diverging_child_is_told_as_born():
    problem = get_problem("iris")
    net = problem.network(seed=0)
    data = runs.prepared_data(net, problem)
    X, Y = data[0], data[1]
    # one step on the whole training set: Adam's first step is lr * g / (|g| + eps)
    learn = runs._learning(net, data, seed=0, backprop={"lr": 0.01, "batch_size": 1000},
                           steps=1)
    start = net.params.astype(np.float64)
    children = np.vstack([start, start + 0.1, np.full_like(start, 1e300)])
    losses, learned = learn(children)
    _, grad = net.engine.loss_and_grad(net.params, X, Y)
    clear = np.abs(grad) > 1e-3          # summation order may flip the sign of a tiny g
    np.testing.assert_allclose(learned[0][clear], (start - 0.01 * np.sign(grad))[clear],
                               rtol=0, atol=1e-6)
    assert losses[0] == pytest.approx(net.engine.loss(learned[0].astype(net.dtype), X, Y),
                                      rel=1e-5)
    assert losses[0] < net.engine.loss(net.params, X, Y)
    assert losses[2] == math.inf
    np.testing.assert_array_equal(learned[2], children[2])


@pytest.mark.parametrize("method, options, error, message", [
    ("memetic", {"local_steps": 0}, ValueError, "local_steps must be an integer >= 1, got 0"),
    ("ga+bp", {"switch": 1.5}, ValueError, r"switch must be a finite number in \[0.0, 1.0\]"),
    ("ga+bp", {"switch": "half"}, TypeError, "switch must be a real number"),
    ("memetic", {"switch": 0.5}, ValueError, "unknown option 'switch' for 'memetic'"),
])
def test_bad_hybrid_options_are_named(method, options, error, message):
    with pytest.raises(error, match=message):
        runs.run("xor", method, seed=0, budget=10_000, options=options)


# ------------------------------------------------------------------ study
def _record(problem, method, seed, loss, score):
    record = {"problem": problem, "method": method, "seed": seed, "status": "completed",
              "seconds": 1.0, "runs_as": method,
              "trace": {"fpe": [0, 10, 100], "train_loss": [1.0, 0.9, loss],
                        "test_score": [0.0, 0.5, score]}}
    if method in hybrids.SWITCHING:
        record["hybrid"] = {"switch_fpe": 40 + seed, "switch_loss": 0.5}
    return record


def test_summary_takes_medians_and_compares_each_hybrid_with_its_better_parent():
    losses = {"backprop": 0.1, "ga": 0.4, "cmaes": 0.05, "ga+bp": 0.02, "cmaes+bp": 0.1,
              "memetic": 0.2, "memetic-baldwin": None}    # None: a non-finite final loss
    records = [_record("iris", method, seed, None if loss is None else loss * (seed + 1),
                       0.9 - 0.1 * seed)
               for method, loss in losses.items() for seed in range(3)]
    result = hybrids.summarise(records, {"iris": 1000}, [0, 1, 2])
    # medians of loss x (1, 2, 3) and of scores (0.9, 0.8, 0.7)
    assert result["train_loss"]["iris"]["ga+bp"] == pytest.approx(0.04)
    assert result["train_loss"]["iris"]["memetic-baldwin"] == math.inf
    assert result["test_score"]["iris"]["ga"] == pytest.approx(0.8)
    assert result["switch_fpe"]["iris"] == {"ga+bp": 41.0, "cmaes+bp": 41.0}
    gains = result["against_parents"]["iris"]
    assert gains["ga+bp"]["better_parent"] == "backprop"
    assert gains["ga+bp"]["loss_ratio"] == pytest.approx(0.2 / 0.04)
    assert gains["cmaes+bp"]["better_parent"] == "cmaes"
    assert gains["cmaes+bp"]["loss_ratio"] == pytest.approx(0.1 / 0.2)
    assert gains["memetic-baldwin"]["loss_ratio"] == 0.0
    assert result["wins"] == {"ga+bp": 1, "cmaes+bp": 0, "memetic": 0, "memetic-baldwin": 0}


def test_quick_study_writes_files_and_quotes_its_numbers(tmp_path):
    stored = studies.run_study("hybrids", tmp_path, quick=True, seed=0)
    result = stored["result"]
    assert (tmp_path / "figures" / "hybrids_loss_fpe.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figures" / "hybrids_loss_fpe.svg").exists()
    assert (tmp_path / "studies" / "hybrids.json").exists()
    assert result["budgets"] == hybrids.QUICK["budgets"]
    for problem, budget in result["budgets"].items():
        initial = runs.run(problem, "ga", seed=0, budget=1)["trace"]["train_loss"][0]
        for method in hybrids.METHODS:
            assert 0 < result["train_loss"][problem][method] < initial
            assert 0 <= result["test_score"][problem][method] <= 1
        for method in hybrids.SWITCHING:
            # a generation: at most 50 candidates x 300 samples (moons; iris has 114)
            assert budget / 2 - GA_POPSIZE * 300 < result["switch_fpe"][problem][method] \
                <= budget / 2
    text = "\n".join(hybrids.section(result))
    entry = result["against_parents"]["iris"]["ga+bp"]
    assert f"iris {entry['hybrid_loss']:.3g} against {entry['better_parent']}'s " \
           f"{entry['parent_loss']:.3g}" in text
    assert f"ga+bp after {result['switch_fpe']['moons']['ga+bp']:,.0f}" in text
    assert f"beats both parents on {result['wins']['memetic']} of 2 problems" in text
    assert "![" in text and "(figures/hybrids_loss_fpe.png)" in text


def test_figure_marks_the_switch_where_the_hybrid_switched():
    records = [runs.run("iris", method, seed=0, budget=30_000) for method in hybrids.METHODS]
    result = hybrids.summarise(records, {"iris": 30_000}, [0])
    figure = hybrids.figure(records, result)
    markers = [line for line in figure.axes[0].lines
               if line.get_gid() == "method:cmaes+bp" and line.get_marker() == "d"]
    assert len(markers) == 1
    assert markers[0].get_xdata()[0] == records[4]["hybrid"]["switch_fpe"]
    labels = [text.get_text() for text in figure.legends[0].texts]
    assert "cmaes+bp\n(marker: switch to backprop)" in labels and "memetic" in labels
