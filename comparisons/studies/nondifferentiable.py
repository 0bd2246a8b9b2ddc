"""Where gradients cannot go: step (Heaviside) units and the 0-1 loss.

Two networks of the same topology, one with step hidden units (the
perceptron's Heaviside: 1 for z > 0, else 0) and one with tanh, are trained
on two objectives: the network's cross-entropy, and the 0-1 loss (the
training misclassification rate, ``comparisons.objectives.zero_one_losses``).

* The step network's true gradient is zero almost everywhere in every
  parameter before its last layer; backprop trains it only through a
  *surrogate*: the backward pass replaces the step's derivative by the fast
  sigmoid's, 1 / (1 + |z|)^2 (F. Zenke and S. Ganguli, "SuperSpike",
  Neural Computation 30(6), 2018; see ``fastnet.activations``).
* The 0-1 loss is piecewise constant in the parameters of any network, so
  its gradient is zero almost everywhere: backprop cannot minimise it at
  all, and is shown on cross-entropy (the usual surrogate) instead.

Gradient-free methods need only values, so they train on either objective.
Every method gets the same budget of forward-pass equivalents; every curve
is the test 0-1 error of the method's current parameters (gradient-free:
its best so far on its own objective). A central-difference check at the
initial parameters measures how much of each gradient is exactly zero.
"""
import dataclasses

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from threadpoolctl import threadpool_limits

from comparisons import objectives, plots, runs
from comparisons.problems import get_problem

NAME = "nondifferentiable"
TITLE = "Where gradients cannot go: step units and the 0-1 loss"

DATASETS = ("moons", "iris")
GRADIENT_FREE = ("ga", "cmaes", "es", "pso", "de")
#: (hidden activation, objective); backprop trains only the "loss" settings
SETTINGS = (("step", "loss"), ("step", "zero_one"), ("tanh", "zero_one"), ("tanh", "loss"))
SETTING_LABELS = {("step", "loss"): "step net, trained on cross-entropy",
                  ("step", "zero_one"): "step net, trained on the 0-1 loss",
                  ("tanh", "zero_one"): "tanh net, trained on the 0-1 loss",
                  ("tanh", "loss"): "tanh net, trained on cross-entropy"}
#: forward-pass equivalents per run, and seeds, by dataset
SIZES = {True: {"budgets": {"moons": 150_000, "iris": 100_000}, "seeds": 1},
         False: {"budgets": {"moons": 2_000_000, "iris": 1_000_000}, "seeds": 5}}
#: central-difference step of the gradient check, run in float64: small enough
#: that no step unit and no prediction flips (at 1e-3 some do: the nearest of a
#: few hundred samples sits about that close to a unit's threshold)
FD_STEP = 1e-6
REFERENCE_STYLE = {"color": "#777777", "linestyle": ":", "linewidth": 1.6}


def key(setting):
    return "/".join(setting)


def problem(dataset, activation):
    """The registered problem's topology and loss with ``activation`` hidden units."""
    return dataclasses.replace(get_problem(dataset), name=f"{dataset}-{activation}",
                               activation=activation)


def train(dataset, setting, method, seed, budget):
    """One run's record, with its trace's test 0-1 error added as ``test_error``."""
    activation, objective = setting
    task = problem(dataset, activation)
    record = runs.run(task, method, seed, budget=budget, objective=objective)
    record["trace"]["test_error"] = [None if score is None else 1.0 - score
                                     for score in record["trace"]["test_score"]]
    return record


def methods_of(setting):
    return GRADIENT_FREE + (("backprop",) if setting[1] == "loss" else ())


def gradient_check(dataset):
    """How many parameters move each objective, at the seed-0 initial parameters
    (in float64): counts of non-zero central differences, split between the
    output layer and the layers before it, and the surrogate gradient's."""
    X, y = training_set(dataset)
    check = {}
    for activation in ("step", "tanh"):
        net = problem(dataset, activation).network(seed=0).copy(dtype=np.float64)
        shifts = FD_STEP * np.eye(net.n_params)
        plus, minus = net.params + shifts, net.params - shifts
        check[f"{activation}_zero_one_nonzero"] = _nonzero(
            objectives.zero_one_losses(net, plus, X, y)
            - objectives.zero_one_losses(net, minus, X, y))
        if activation == "step":
            hidden = net.n_params - (net.sizes[-2] + 1) * net.sizes[-1]
            difference = net.population_loss(plus, X, y) - net.population_loss(minus, X, y)
            surrogate = net.loss_and_grad(X, y)[1]
            check.update(n_params=net.n_params, hidden_params=hidden,
                         output_params=net.n_params - hidden,
                         step_loss_nonzero_hidden=_nonzero(difference[:hidden]),
                         step_loss_nonzero_output=_nonzero(difference[hidden:]),
                         step_surrogate_nonzero_hidden=_nonzero(surrogate[:hidden]))
    return check


def training_set(dataset):
    """The training set every run trains on (the seed-0 split)."""
    X_train, y_train, _, _ = get_problem(dataset).data(seed=0)
    return X_train, y_train


def _nonzero(values):
    return int(np.count_nonzero(values))


def summary(records):
    """Quartiles of the runs' final test errors, and how many runs the trainer
    stopped itself before the budget (CMA-ES on a flat plateau of the 0-1 loss)."""
    errors = [record["trace"]["test_error"][-1] for record in records]
    low, median, high = plots.quantiles(np.asarray(errors, dtype=float))
    return {"median": float(median), "q25": float(low), "q75": float(high),
            "runs": len(records),
            "stopped": sum(record["message"].startswith("trainer stopped")
                           for record in records)}


def run(quick, seed):
    sizes = SIZES[bool(quick)]
    seeds = [seed + offset for offset in range(sizes["seeds"])]
    records, result = [], {"seeds": seeds, "fd_step": FD_STEP, "datasets": {}}
    # CMA-ES's eigendecompositions stall when two BLAS threads share a busy
    # machine's cores with Numba's (measured: 110 ms instead of 2 ms at n = 65)
    with threadpool_limits(limits=1, user_api="blas"):
        for dataset in DATASETS:
            budget = sizes["budgets"][dataset]
            for setting in SETTINGS:
                for method in methods_of(setting):
                    for run_seed in seeds:
                        record = train(dataset, setting, method, run_seed, budget)
                        record.update(dataset=dataset, setting=key(setting))
                        records.append(record)
            result["datasets"][dataset] = _dataset_result(dataset, budget, records)
    return result, {f"{NAME}_curves": curves_figure(records, result),
                    f"{NAME}_final": final_figure(result)}


def _dataset_result(dataset, budget, records):
    mine = [record for record in records if record["dataset"] == dataset]
    final = {}
    for setting in SETTINGS:
        final[key(setting)] = {
            method: summary([record for record in mine if record["setting"] == key(setting)
                             and record["method"] == method])
            for method in methods_of(setting)}
    X_train, _, X_test, _ = get_problem(dataset).data(seed=0)
    return {"budget": budget, "sizes": mine[0]["sizes"], "n_params": mine[0]["n_params"],
            "n_train": len(X_train), "n_test": len(X_test),
            "final_test_error": final, "gradient_check": gradient_check(dataset)}


# ---------------------------------------------------------------- figures
def _selected(records, dataset, setting, method=None):
    return [record for record in records if record["dataset"] == dataset
            and record["setting"] == key(setting)
            and (method is None or record["method"] == method)]


def _draw_percent(ax, grid, curve, method):
    scaled = curve._replace(low=100 * curve.low, median=100 * curve.median,
                            high=100 * curve.high)
    plots.draw_curve(ax, grid, scaled, method)


def _curves_panel(ax, records, dataset, setting):
    """The gradient-free methods on ``setting``, backprop on cross-entropy with the
    same hidden units, and on a step panel backprop on the tanh net, dotted."""
    activation = setting[0]
    grid, stats = plots.curves(_selected(records, dataset, setting), "fpe", "test_error")
    for method in GRADIENT_FREE:
        _draw_percent(ax, grid, stats[method], method)
    backprop = _selected(records, dataset, (activation, "loss"), "backprop")
    backprop_grid, backprop_stats = plots.curves(backprop, "fpe", "test_error")
    _draw_percent(ax, backprop_grid, backprop_stats["backprop"], "backprop")
    if activation == "step":
        tanh = _selected(records, dataset, ("tanh", "loss"), "backprop")
        tanh_grid, tanh_stats = plots.curves(tanh, "fpe", "test_error")
        ax.step(tanh_grid, 100 * tanh_stats["backprop"].median, where="post",
                **REFERENCE_STYLE)


def curves_figure(records, result):
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(14.5, 3.2 * len(DATASETS) + 0.9), layout="constrained")
        axes = figure.subplots(len(DATASETS), len(SETTINGS), squeeze=False, sharey="row",
                               sharex="row")
        for row, dataset in enumerate(DATASETS):
            info = result["datasets"][dataset]
            for ax, setting in zip(axes[row], SETTINGS):
                _curves_panel(ax, records, dataset, setting)
                ax.set_title(f"{dataset} ({'-'.join(map(str, info['sizes']))})\n"
                             f"{SETTING_LABELS[setting]}", loc="left", fontsize=8.5)
            first = min(min(x for x in record["trace"]["fpe"] if x > 0)
                        for record in records if record["dataset"] == dataset)
            axes[row][0].set_xscale("log")
            axes[row][0].set_xlim(first, info["budget"])
            axes[row][0].set_ylabel("test error, 0-1 loss (%)")
            axes[row][0].set_ylim(bottom=0)
        handles = [plots.method_handle(method) for method in GRADIENT_FREE]
        handles += [plots.method_handle("backprop", "backprop (Adam) on cross-entropy\n"
                                        "(step net: surrogate gradient)"),
                    Line2D([], [], label="backprop on the tanh net\n(reference, median)",
                           **REFERENCE_STYLE)]
        figure.legend(handles=handles, loc="outside right center", frameon=False,
                      handlelength=2.8)
        figure.supxlabel(plots.X_LABELS["fpe"])
        figure.suptitle("Test 0-1 error against forward-pass equivalents (median and "
                        f"interquartile range over {len(result['seeds'])} seeds)")
    return figure


def final_figure(result):
    methods = GRADIENT_FREE + ("backprop",)
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(6.0 * len(DATASETS) + 1.6, 3.6), layout="constrained")
        axes = figure.subplots(1, len(DATASETS), squeeze=False)[0]
        for ax, dataset in zip(axes, DATASETS):
            final = result["datasets"][dataset]["final_test_error"]
            for group, setting in enumerate(SETTINGS):
                for index, method in enumerate(methods):
                    if method not in final[key(setting)]:
                        continue
                    stats = final[key(setting)][method]
                    x = group + (index - (len(methods) - 1) / 2) * 0.13
                    colour, _, marker = plots.method_style(method)
                    ax.errorbar(x, 100 * stats["median"],
                                yerr=[[100 * (stats["median"] - stats["q25"])],
                                      [100 * (stats["q75"] - stats["median"])]],
                                color=colour, marker=marker, markersize=5, capsize=2,
                                linestyle="none", gid=f"method:{method}")
            ax.set_xticks(range(len(SETTINGS)),
                          [SETTING_LABELS[setting].replace(", ", ",\n") for setting in SETTINGS])
            ax.set_title(f"{dataset}: {result['datasets'][dataset]['budget']:,} "
                         "forward-pass equivalents per run", loc="left", fontsize=9)
            ax.set_ylim(bottom=0)
            ax.grid(False, axis="x")
        axes[0].set_ylabel("final test error, 0-1 loss (%)")
        figure.legend(handles=[plots.method_handle(method, marker=True) for method in methods],
                      loc="outside right center", frameon=False)
        figure.suptitle("Final test error (median and interquartile range over "
                        f"{len(result['seeds'])} seeds); backprop trains only on cross-entropy")
    return figure


# ---------------------------------------------------------------- section
def _percent(stats):
    return (f"{100 * stats['median']:.1f}% (IQR {100 * stats['q25']:.1f}–"
            f"{100 * stats['q75']:.1f}%)")


def _best(final, setting):
    """The gradient-free method(s) with the lowest median in ``setting``, with their numbers."""
    per_method = final[setting]
    lowest = min(per_method[method]["median"] for method in GRADIENT_FREE)
    parts = [f"{method} at {_percent(per_method[method])}" for method in GRADIENT_FREE
             if per_method[method]["median"] == lowest]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def _dataset_paragraph(dataset, info):
    final, check = info["final_test_error"], info["gradient_check"]
    return (
        f"**{dataset}** ({'-'.join(map(str, info['sizes']))}, {check['n_params']} parameters, "
        f"{info['n_train']} training and {info['n_test']} test samples, so one test mistake "
        f"is {100 / info['n_test']:.1f} points; {info['budget']:,} FPE per run). At the "
        f"initial step network, central differences (h = {FD_STEP:g}, float64) of the "
        f"cross-entropy are non-zero for "
        f"{check['step_loss_nonzero_output']} of the {check['output_params']} output-layer "
        f"parameters and for {check['step_loss_nonzero_hidden']} of the "
        f"{check['hidden_params']} before it, where the surrogate gradient is non-zero for "
        f"{check['step_surrogate_nonzero_hidden']} of those {check['hidden_params']}. "
        f"Central differences of the 0-1 training error are non-zero for "
        f"{check['step_zero_one_nonzero']} (step net) and {check['tanh_zero_one_nonzero']} "
        f"(tanh net) of the {check['n_params']} parameters. "
        f"Backprop with the surrogate gradient ends at a test error of "
        f"{_percent(final['step/loss']['backprop'])}, against "
        f"{_percent(final['tanh/loss']['backprop'])} for backprop on the tanh net. "
        f"The lowest median of a gradient-free method on the step net is, on "
        f"cross-entropy, {_best(final, 'step/loss')}, and on the 0-1 loss "
        f"{_best(final, 'step/zero_one')}. On the tanh net, trained on the 0-1 loss "
        f"directly, it is {_best(final, 'tanh/zero_one')}; on cross-entropy "
        f"{_best(final, 'tanh/loss')}. {_stopped_sentence(final)}")


def _stopped_sentence(final):
    stopped = [(method, setting, stats) for setting in SETTINGS
               for method, stats in final[key(setting)].items() if stats["stopped"]]
    if not stopped:
        return "Every run spent its whole budget."
    runs = "; ".join(f"{method} in {stats['stopped']} of {stats['runs']} runs "
                     f"({SETTING_LABELS[setting]})" for method, setting, stats in stopped)
    why = (" (CMA-ES's tolfun test fires when all its recent values are equal, as on a "
           "plateau of the 0-1 loss)" if any(method == "cmaes" for method, _, _ in stopped)
           else "")
    return f"Runs that stopped on their trainer's own criterion before the budget{why}: {runs}."


def _table(info):
    settings = [key(setting) for setting in SETTINGS]
    lines = ["| method | " + " | ".join(SETTING_LABELS[s] for s in SETTINGS) + " |",
             "|---|" + "---:|" * len(settings)]
    for method in GRADIENT_FREE + ("backprop",):
        cells = [_percent(info["final_test_error"][s][method])
                 if method in info["final_test_error"][s] else "—" for s in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def section(result):
    seeds = len(result["seeds"])
    lines = [
        "A network of step (Heaviside) units computes a piecewise-constant function of "
        "its parameters: moving a weight changes nothing until some unit flips, so its "
        "true gradient is zero almost everywhere in every layer before the output. "
        "Backprop trains it only with a *surrogate gradient*: the forward pass keeps the "
        "step, and the backward pass uses the slope of a smooth stand-in, here the fast "
        "sigmoid's 1/(1+|z|)² (Zenke and Ganguli's SuperSpike). The 0-1 loss (the "
        "misclassification rate) is piecewise constant for any network, tanh included, so "
        "backprop cannot train on it at all: it trains on cross-entropy, the differentiable "
        "surrogate, and is judged in 0-1 terms. Gradient-free methods (GA, CMA-ES, "
        "OpenAI-ES, PSO, DE) need only loss values and train either net on either "
        f"objective. Every run gets the same budget of forward-pass equivalents; "
        f"medians and interquartile ranges are over {seeds} seeds; errors are on the "
        "held-out test set.",
        ""]
    for dataset, info in result["datasets"].items():
        lines += [_dataset_paragraph(dataset, info), ""] + _table(info) + [""]
    lines += [f"![Test 0-1 error against forward-pass equivalents](figures/{NAME}_curves.png)",
              "",
              f"![Final test 0-1 error per method and setting](figures/{NAME}_final.png)"]
    return lines
