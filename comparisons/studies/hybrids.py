"""Hybrids against their parents: a gradient-free warm start then backprop, and memetic GAs.

Each problem is trained on one budget of forward-pass equivalents (FPE, see
comparisons/budget.py) by the two parents, backprop and a gradient-free
method (GA, CMA-ES: sep-CMA-ES where the scale guard switches it), and by
the hybrids of ``comparisons.runs``: ``ga+bp`` and ``cmaes+bp`` (the
trainer for half the budget, then backprop from its best vector) and the
memetic GAs (every child takes 5 Adam steps before selection; Lamarckian
or Baldwinian inheritance). A hybrid's whole run, both parts, is one trace
on the same FPE axis, so the curves compare cost for cost.
"""
import math

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from comparisons import plots, runs

NAME = "hybrids"
TITLE = "Hybrids: a gradient-free warm start before backprop, and GAs whose children learn"

PARENTS = {"ga+bp": ("ga", "backprop"), "cmaes+bp": ("cmaes", "backprop"),
           "memetic": ("ga", "backprop"), "memetic-baldwin": ("ga", "backprop")}
HYBRIDS = tuple(PARENTS)
METHODS = ("backprop", "ga", "cmaes") + HYBRIDS
#: hybrids that switch from the trainer to backprop, marked on the curves
SWITCHING = ("ga+bp", "cmaes+bp")
#: problem -> budget in FPE (a few per cent of the sweep's), and the number of seeds
FULL = {"budgets": {"iris": 400_000, "moons": 1_000_000, "digits": 2_000_000}, "seeds": 3}
QUICK = {"budgets": {"iris": 60_000, "moons": 150_000}, "seeds": 1}
#: losses are compared no finer than this: a float32 softmax or sigmoid cannot put a
#: probability closer to 1 than about 6e-8, so a cross-entropy this small is a perfect fit
LOSS_RESOLUTION = 1e-6


def run(quick, seed):
    setup = QUICK if quick else FULL
    seeds = list(range(seed, seed + setup["seeds"]))
    records = [runs.run(problem, method, run_seed, budget=budget)
               for problem, budget in setup["budgets"].items()
               for method in METHODS for run_seed in seeds]
    result = summarise(records, setup["budgets"], seeds)
    return result, {f"{NAME}_loss_fpe": figure(records, result)}


def final_value(record, column):
    """A run's last logged ``column`` (a non-finite value: the worst); NaN if it never ran."""
    if not plots.usable([record]):
        return math.nan
    return float(plots.column(record, column, plots.worst_value(column))[-1])


def _median(values):
    values = [value for value in values if not math.isnan(value)]
    return float(np.median(values)) if values else math.nan


def summarise(records, budgets, seeds):
    """Medians over seeds per problem and method, and each hybrid against its better parent."""
    groups = {}
    for record in records:
        groups.setdefault(record["problem"], {}).setdefault(record["method"], []).append(record)
    result = {"problems": list(budgets), "methods": list(METHODS), "seeds": seeds,
              "budgets": dict(budgets), "train_loss": {}, "test_score": {}, "seconds": {},
              "runs_as": {}, "switch_fpe": {}, "switch_loss": {}, "against_parents": {},
              "settings": {"switch": runs.HYBRID_OPTIONS["ga+bp"]["switch"],
                           "local_steps": runs.HYBRID_OPTIONS["memetic"]["local_steps"],
                           **runs.BACKPROP_OPTIONS}}
    for problem, by_method in groups.items():
        for key, column in (("train_loss", "train_loss"), ("test_score", "test_score")):
            result[key][problem] = {method: _median([final_value(r, column) for r in rs])
                                    for method, rs in by_method.items()}
        result["seconds"][problem] = {method: _median([r["seconds"] for r in rs])
                                      for method, rs in by_method.items()}
        result["runs_as"][problem] = {method: sorted({r.get("runs_as", method) for r in rs})
                                      for method, rs in by_method.items()}
        result["switch_fpe"][problem] = {
            method: _median([r["hybrid"]["switch_fpe"] for r in by_method[method]])
            for method in SWITCHING}
        result["switch_loss"][problem] = {
            method: _median([r["hybrid"]["switch_loss"] if r["hybrid"]["switch_loss"]
                             is not None else math.inf for r in by_method[method]])
            for method in SWITCHING}
        result["against_parents"][problem] = {
            hybrid: against_parents(result, problem, hybrid) for hybrid in HYBRIDS}
    result["wins"] = {hybrid: sum(result["against_parents"][problem][hybrid]["beats_both"]
                                  for problem in groups) for hybrid in HYBRIDS}
    return result


def against_parents(result, problem, hybrid):
    """The hybrid's median final loss against its better parent's (lower is better), both
    taken no lower than LOSS_RESOLUTION: ``loss_ratio`` > 1 when the hybrid is lower."""
    losses = result["train_loss"][problem]
    parent = min(PARENTS[hybrid], key=lambda name: (math.isnan(losses[name]), losses[name]))
    resolved = {name: max(losses[name], LOSS_RESOLUTION) for name in (parent, hybrid)}
    return {"better_parent": parent, "parent_loss": losses[parent],
            "hybrid_loss": losses[hybrid], "loss_ratio": resolved[parent] / resolved[hybrid],
            "beats_both": bool(resolved[hybrid] < resolved[parent]),
            "score_difference": (result["test_score"][problem][hybrid]
                                 - result["test_score"][problem][parent])}


def figure(records, result):
    """Training loss against FPE (median and IQR), one panel per problem, with a
    marker where ga+bp and cmaes+bp switch to backprop."""
    figure = plots.convergence_figure(records)
    with matplotlib.rc_context(plots.STYLE):
        for ax, problem in zip(figure.axes, plots.panel_problems(plots.usable(records))):
            for method in SWITCHING:
                colour, _, marker = plots.method_style(method)
                ax.plot(result["switch_fpe"][problem][method],
                        max(result["switch_loss"][problem][method], plots.LOSS_FLOOR),
                        marker=marker, markersize=8, color=colour, markeredgecolor="white",
                        linestyle="none", zorder=6, gid=f"method:{method}")
        # the sweep figure's legend, with the switch markers on the switching hybrids
        figure.legends.pop()
        methods = sorted({record["method"] for record in records}, key=plots.method_sort_key)
        handles = [plots.method_handle(method, marker=method in SWITCHING,
                                       label=f"{method}\n(marker: switch to backprop)"
                                       if method in SWITCHING else method)
                   for method in methods]
        handles.append(Line2D([], [], color="#555555", linestyle=(0, (1, 2)), linewidth=1,
                              label="target loss"))
        figure.legend(handles=handles, loc="outside right center", frameon=False,
                      handlelength=2.8)
        seeds = len(result["seeds"])
        figure.suptitle("Hybrids and their parents: training loss against forward-pass "
                        f"equivalents\n(median and interquartile range over {seeds} "
                        f"seed{'s' if seeds > 1 else ''})")
    return figure


def _loss(value):
    return f"{value:.3g}"


def _problem_sentence(result, problem):
    losses, scores = result["train_loss"][problem], result["test_score"][problem]
    ran = {method: "/".join(names) for method, names in result["runs_as"][problem].items()
           if names != [method]}
    parts = ", ".join(f"{method}{' (as ' + ran[method] + ')' if method in ran else ''} "
                      f"{_loss(losses[method])} ({scores[method]:.3f})"
                      for method in result["methods"])
    switches = ", ".join(f"{method} after {result['switch_fpe'][problem][method]:,.0f}"
                         for method in SWITCHING)
    return (f"- **{problem}** ({result['budgets'][problem]:,} FPE): median final training "
            f"loss (test score) {parts}; switched to backprop: {switches} FPE.")


def _verdict(ratio):
    if math.isnan(ratio):
        return "not comparable"
    if ratio == 0:
        return "no finite loss"
    if ratio == 1:
        return "a tie"
    return f"{ratio:.3g}x lower" if ratio > 1 else f"{1 / ratio:.3g}x higher"


def _hybrid_sentence(result, hybrid):
    problems = result["problems"]
    parts = []
    for problem in problems:
        entry = result["against_parents"][problem][hybrid]
        verdict = _verdict(entry["loss_ratio"])
        parts.append(f"{problem} {_loss(entry['hybrid_loss'])} against "
                     f"{entry['better_parent']}'s {_loss(entry['parent_loss'])} ({verdict}, "
                     f"test score {entry['score_difference']:+.3f})")
    return (f"- **{hybrid}** beats both parents on {result['wins'][hybrid]} of "
            f"{len(problems)} problems: " + "; ".join(parts) + ".")


def section(result):
    seeds, settings = len(result["seeds"]), result["settings"]
    lines = [
        "Does a hybrid beat both of its parents on the same budget? Each problem is "
        f"trained by backprop, the GA and CMA-ES, and by four hybrids, over {seeds} "
        f"seed{'s' if seeds > 1 else ''}, on one budget of forward-pass equivalents (FPE) counted alike for every "
        "part of a run (a candidate's loss on N samples costs N, a backprop step on a "
        f"batch of B costs 3B). ga+bp and cmaes+bp run the gradient-free trainer for "
        f"{settings['switch']:.0%} of the budget, then Adam (learning rate {settings['lr']:g}, "
        f"batches of {settings['batch_size']}, as the backprop method) from its best vector; "
        f"the memetic GAs let every child take {settings['local_steps']} such Adam steps "
        "before its loss on the training set is taken, and inherit the learned vector "
        "(memetic, Lamarckian) or only its loss (memetic-baldwin). Final values, medians "
        "over seeds:",
        "",
    ]
    lines += [_problem_sentence(result, problem) for problem in result["problems"]]
    if any(names != [method] for by_method in result["runs_as"].values()
           for method, names in by_method.items()):
        lines += ["", "\"as sep-cmaes\": the scale guard (comparisons/scale.py) judged full "
                  "CMA-ES's own arithmetic too slow against the evaluations on this machine and "
                  "ran sep-CMA-ES instead."]
    lines += ["", "Each hybrid against the better of its two parents (median final training "
              f"loss, ratios of losses taken no lower than {LOSS_RESOLUTION:g}, the float32 "
              "resolution of a perfect fit; then the test-score difference):", ""]
    lines += [_hybrid_sentence(result, hybrid) for hybrid in HYBRIDS]
    lines += ["", f"![Training loss against forward-pass equivalents for the hybrids and their "
              f"parents](figures/{NAME}_loss_fpe.png)"]
    return lines
