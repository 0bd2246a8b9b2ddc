"""The scale guard checked against the trainers it guards, on the digits network as it widens.

``comparisons.scale`` estimates, before a run, each trainer's memory and its own
work per generation. Here the estimates meet measurements on the digits
problem's network with every hidden layer K units wide (D = 75 K + 10
parameters):

- memory: every array a trainer holds after a few generations, plus the
  population it asks for;
- the trainer's own seconds per generation: ask and tell timed over a few
  generations that do not decompose C (the median), plus, for full CMA-ES,
  ``np.linalg.eigh`` of its C timed alone (the fastest of a few) and spread
  over its ``eigen_gap`` generations (the way CMA-ES pays for it);
- the population's evaluation: ``Network.population_loss`` of the trainer's
  population on the 1,347 training samples.

The guard decides at fixed reference rates (see ``comparisons.scale``); its
decision is computed for widths far past what is measured.
"""
import time

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from comparisons import plots, scale
from comparisons.problems import get_problem
from comparisons.runs import prepared_data
from comparisons.trainers import get_trainer
from comparisons.trainers.cmaes import CMAES, CMAParameters, SepCMAES

NAME = "scale_guard"
TITLE = "Scale guard: what full CMA-ES costs as the network grows, estimated and measured"

METHODS = ("cmaes", "sep-cmaes", "ga")
#: hidden widths measured (quick, full) and the widths the estimate is drawn over
MEASURED_WIDTHS = {True: (1, 2, 4), False: (1, 4, 13, 32)}
DRAWN_WIDTHS = tuple(int(k) for k in np.unique(np.geomspace(1, 1024, 41).round()))
#: generations timed per trainer, and repeats of each timed call: the fastest
#: repeat (or the median generation) is the cost, the rest is other processes
TIMED_GENERATIONS = 9
REPEATS = 5


def held_bytes(trainer, population):
    """Bytes of every array the trainer holds, plus the population it asked for."""
    arrays = [value for value in vars(trainer).values() if isinstance(value, np.ndarray)]
    return int(sum(a.nbytes for a in arrays) + population.nbytes)


def trainer_seconds(trainer, rng):
    """(median seconds of a generation's ask + tell, excluding evaluation and any
    decomposition of C; the population last asked for)."""
    population = trainer.ask()                  # generation 0 decomposes C (full CMA-ES)
    trainer.tell(rng.random(len(population)))
    generations = []
    for _ in range(TIMED_GENERATIONS):
        start = time.perf_counter()
        population = trainer.ask()
        asked = time.perf_counter() - start
        losses = rng.random(len(population))    # stand-in losses: evaluation is timed apart
        start = time.perf_counter()
        trainer.tell(losses)
        generations.append(asked + time.perf_counter() - start)
    return float(np.median(generations)), population


def decomposition_seconds(trainer):
    """Full CMA-ES: one eigendecomposition of its C spread over ``eigen_gap``; else 0."""
    if not isinstance(trainer, CMAES) or isinstance(trainer, SepCMAES):
        return 0.0
    return min(_seconds(lambda: np.linalg.eigh(trainer.C, UPLO="L"))
               for _ in range(REPEATS)) / trainer.params.eigen_gap


def evaluation_seconds(net, data, popsize, rng):
    """Seconds of one ``population_loss`` of ``popsize`` candidates (the fastest of
    ``2 * REPEATS``)."""
    thetas = net.params + 0.05 * rng.standard_normal((popsize, net.n_params)).astype(net.dtype)
    net.population_loss(thetas, data[0], data[1])            # warm-up (and compilation)
    return min(_seconds(lambda: net.population_loss(thetas, data[0], data[1]))
               for _ in range(2 * REPEATS))


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def evaluation_flops(net, n_train, popsize):
    return float(net.flops_per_sample() * n_train * popsize)


def measure(width, seed):
    """Measured and estimated memory and seconds of every method at hidden width ``width``."""
    problem = get_problem(f"digits-w{width}")
    net = problem.network(seed=seed)
    data = prepared_data(net, problem)
    rng = np.random.default_rng(seed)
    point = {"width": width, "D": net.n_params, "methods": {}}
    for method in METHODS:
        trainer = get_trainer(method)(np.zeros(net.n_params), seed=seed)
        own, population = trainer_seconds(trainer, rng)
        own += decomposition_seconds(trainer)
        flops = evaluation_flops(net, len(data[0]), trainer.popsize)
        estimate = scale.estimate(method, net.n_params, trainer.popsize, flops)
        point["methods"][method] = {
            "popsize": trainer.popsize, "memory": held_bytes(trainer, population),
            "memory_estimate": estimate.memory_bytes, "seconds": own,
            "seconds_estimate": estimate.trainer_seconds,
            "evaluation_seconds": evaluation_seconds(net, data, trainer.popsize, rng),
            "evaluation_estimate": estimate.evaluation_seconds}
    return point


def guard_curve(n_train):
    """Per drawn width: D, the estimates at reference rates, and the guard's decision."""
    curve = []
    for width in DRAWN_WIDTHS:
        net = get_problem(f"digits-w{width}").network()
        row = {"width": width, "D": net.n_params, "methods": {}}
        for method in METHODS:
            popsize = get_trainer(method).default_popsize(net.n_params)
            flops = evaluation_flops(net, n_train, popsize)
            estimate = scale.estimate(method, net.n_params, popsize, flops,
                                      rates=scale.REFERENCE_RATES)
            try:
                decision = scale.guard(method, net.n_params, popsize, flops)[0]
            except ValueError:
                decision = "refused"
            row["methods"][method] = {"memory": estimate.memory_bytes,
                                      "seconds": estimate.trainer_seconds,
                                      "evaluation": estimate.evaluation_seconds,
                                      "decision": decision}
        curve.append(row)
    return curve


def run(quick, seed):
    measured = [measure(width, seed) for width in MEASURED_WIDTHS[quick]]
    n_train = len(get_problem("digits").data(seed=0)[0])
    curve = guard_curve(n_train)
    switch = next((row for row in curve if row["methods"]["cmaes"]["decision"] != "cmaes"),
                  None)
    result = {"measured": measured, "curve": curve, "n_train": n_train,
              "max_overhead": scale.DEFAULT_MAX_OVERHEAD,
              "reference_rates": list(scale.REFERENCE_RATES),
              "machine_rates": list(scale.machine_rates()),
              "switch_width": switch and switch["width"], "switch_D": switch and switch["D"],
              "switch_to": switch and switch["methods"]["cmaes"]["decision"],
              "eigen_gap_at_switch": switch and CMAParameters(
                  switch["D"], CMAES.default_popsize(switch["D"])).eigen_gap}
    return result, {NAME: figure(result)}


# ---------------------------------------------------------------- figure
def figure(result):
    with matplotlib.rc_context(plots.STYLE):
        fig = Figure(figsize=(11, 4.4), layout="constrained")
        memory_ax, time_ax = fig.subplots(1, 2)
        D_curve = [row["D"] for row in result["curve"]]
        D_points = [p["D"] for p in result["measured"]]
        for method in METHODS:
            colour, linestyle, marker = plots.method_style(method)
            estimates = [row["methods"][method] for row in result["curve"]]
            points = [p["methods"][method] for p in result["measured"]]
            memory_ax.plot(D_curve, [e["memory"] for e in estimates], color=colour,
                           linestyle=linestyle, label=f"{method}: estimate")
            memory_ax.plot(D_points, [p["memory"] for p in points], marker, color=colour,
                           linestyle="none", label=f"{method}: measured")
            time_ax.plot(D_curve, [e["seconds"] for e in estimates], color=colour,
                         linestyle=linestyle)
            time_ax.plot(D_points, [p["seconds"] for p in points], marker, color=colour,
                         linestyle="none")
        time_ax.plot(D_curve, [row["methods"]["cmaes"]["evaluation"] for row in result["curve"]],
                     color="#555555", linestyle=":",
                     label="evaluating CMA-ES's population: estimate")
        time_ax.plot(D_points, [p["methods"]["cmaes"]["evaluation_seconds"]
                                for p in result["measured"]],
                     "o", mfc="none", color="#555555", label="... measured")
        if result["switch_D"]:
            for ax in (memory_ax, time_ax):
                ax.axvline(result["switch_D"], color="#999999", linewidth=1)
            time_ax.text(result["switch_D"], 0.03,
                         f" guard: {result['switch_to']}\n from D = {result['switch_D']:,}",
                         transform=time_ax.get_xaxis_transform(), fontsize=8,
                         color="#555555")
        for ax, title, label in (
                (memory_ax, "(a) memory a trainer holds", "bytes"),
                (time_ax, "(b) the trainer's own work per generation (lines: arithmetic)",
                 "seconds per generation")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("parameters D (digits network, hidden width K: D = 75 K + 10)")
            ax.set_ylabel(label)
            ax.set_title(title, loc="left")
        memory_ax.legend(fontsize=7.5, ncol=2)
        time_ax.legend(fontsize=7.5)
        fig.suptitle("Scale guard: estimates (lines, at the reference machine's rates) against "
                     "measurements on this machine (markers)")
    return fig


# ---------------------------------------------------------------- section
def _ratio_range(measured, method, key, estimate_key):
    ratios = [p["methods"][method][key] / p["methods"][method][estimate_key] for p in measured]
    return f"{min(ratios):.2g}-{max(ratios):.2g}"


def _microseconds(measured, method):
    seconds = [p["methods"][method]["seconds"] * 1e6 for p in measured]
    return f"{min(seconds):.3g}-{max(seconds):.3g} µs"


def _below_evaluation(measured, methods):
    return all(p["methods"][m]["seconds"] < p["methods"][m]["evaluation_seconds"]
               for p in measured for m in methods)


def section(result):
    measured = result["measured"]
    largest = measured[-1]
    cma = largest["methods"]["cmaes"]
    lines = [
        "Before a run, the scale guard (`comparisons.scale`) estimates each trainer's memory "
        "and its own work per generation; full CMA-ES is O(D²) in memory and O(D²) to "
        "O(D³) in time (the eigendecomposition of C, every `eigen_gap` generations). The "
        "markers are measured on this machine on the digits network with every hidden layer "
        f"K = {', '.join(str(p['width']) for p in measured)} units wide "
        f"(D = {', '.join(format(p['D'], ',') for p in measured)}); the lines are the "
        "estimates. Measured over estimated memory: "
        + "; ".join(f"{m} {_ratio_range(measured, m, 'memory', 'memory_estimate')}"
                    for m in METHODS)
        + ". For full CMA-ES the time estimate (flops, the eigendecomposition and the "
        "passes over C at this machine's measured rates) gives measured over estimated "
        f"{_ratio_range(measured, 'cmaes', 'seconds', 'seconds_estimate')} (the most at the "
        "smallest D, where interpreter work dominates). For the O(P D) methods it counts their arithmetic only, a lower bound: a "
        "generation is a few NumPy passes over P x D arrays plus interpreter work, measured "
        "at " + "; ".join(f"{m} {_microseconds(measured, m)}" for m in ("sep-cmaes", "ga"))
        + " per generation, which grows only linearly with D and "
        + ("stays below" if _below_evaluation(measured, ("sep-cmaes", "ga")) else
           "is not always below")
        + " the time their population's evaluation takes. Full CMA-ES at "
        f"D = {largest['D']:,} (population {cma['popsize']}) holds "
        f"{cma['memory'] / 2 ** 20:.3g} MiB (estimate {cma['memory_estimate'] / 2 ** 20:.3g}) "
        f"and spends {cma['seconds'] * 1e3:.3g} ms per generation on its own work (estimate "
        f"at this machine's rates {cma['seconds_estimate'] * 1e3:.3g} ms), against "
        f"{cma['evaluation_seconds'] * 1e3:.3g} ms evaluating its population on the "
        f"{result['n_train']:,} training samples "
        f"({cma['seconds'] / cma['evaluation_seconds']:.3g} times as long; the guard's "
        f"estimate of the evaluation, at the GEMM rate: {cma['evaluation_estimate'] * 1e3:.3g} "
        "ms).",
        ""]
    if result["switch_D"]:
        lines += [
            "The guard decides at fixed reference rates, so that a loaded machine does not "
            "change which method a sweep runs; it lets full CMA-ES spend up to "
            f"{result['max_overhead']:g} times the evaluation's time on its own work and "
            "half the machine's memory. On this family it switches full CMA-ES to "
            f"{result['switch_to']} from K = {result['switch_width']} (D = "
            f"{result['switch_D']:,}), where C alone is "
            f"{8 * result['switch_D'] ** 2 / 2 ** 20:,.0f} MiB and it would re-decompose C every "
            f"{result['eigen_gap_at_switch']} generations.", ""]
    return lines + [f"![Estimated and measured memory and time per generation]"
                    f"(figures/{NAME}.png)"]
