"""Two spirals, under the benchmark's historical rules.

K. J. Lang and M. J. Witbrock, "Learning to tell two spirals apart", Proc.
1988 Connectionist Models Summer School, 52-59: 194 points on two spirals
that coil three times around the origin; backprop on a 2-5-5-5-1 network
with shortcut connections (every layer connected to every later one) took
about 18,000 epochs to get every point right.

S. E. Fahlman's CMU benchmark collection (the "two-spirals" entry) fixes the
rules: train on the 194 points until every output is right, judged by the
40-20-40 criterion (outputs in [0, 1]: above 0.6 counts as 1, below 0.4 as
0, anything between is wrong), and report the time it took.

Here every method trains the same plain MLP (fastnet has no shortcut
connections): backprop counts epochs, the gradient-free methods count
evaluations, and both are put on one axis in forward-pass equivalents (FPE,
``comparisons.budget``). A run that is not solved within the cap is censored
there: drawn at the cap and counted in "k of n solved", never dropped.
``cost_to_solve`` (the cost of one run to zero 40-20-40 errors) is shared
with the parity study.
"""
import dataclasses
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import fastnet
from fastnet._checks import check_int, check_name, check_same_length
from comparisons import plots, runs
from comparisons.budget import BACKPROP_FPE_PER_SAMPLE
from comparisons.problems import get_problem
from comparisons.trainers import get_trainer

NAME = "two_spirals"
TITLE = "Two spirals under the 40-20-40 rule, against Lang & Witbrock's 18,000 epochs"

#: Fahlman's 40-20-40 thresholds on an output in [0, 1]
LOW, HIGH = 0.4, 0.6
#: With zero 40-20-40 errors every output's binary cross-entropy is below
#: -ln(0.6) (target 1, output > 0.6; target 0, output < 0.4, -ln(1 - output)
#: likewise), and so is their mean: a candidate whose mean loss is not below
#: it cannot be solved and is not checked. The margin covers float32 rounding.
SOLVABLE_LOSS = math.log(1 / HIGH) + 1e-3
#: backprop: full-batch Adam at the comparison's learning rate, one step per epoch
BACKPROP_LR = runs.BACKPROP_OPTIONS["lr"]
#: sep-CMA-ES rather than full CMA-ES: at 337 parameters the full method's
#: covariance algebra costs more seconds per generation than the network does
METHODS = ("backprop", "ga", "sep-cmaes", "es", "pso", "de")
#: Lang & Witbrock's backprop, and its cost on this study's axis (an epoch of
#: backprop on the 194 points = 3 x 194 FPE)
REFERENCE_EPOCHS = 18_000
N_POINTS = 194
REFERENCE_FPE = REFERENCE_EPOCHS * BACKPROP_FPE_PER_SAMPLE * N_POINTS
#: seeds and the cap (forward-pass equivalents per run, every method alike)
SIZES = {True: {"seeds": 2, "cap_fpe": 150_000},
         False: {"seeds": 5, "cap_fpe": 4_000_000}}
REFERENCE_STYLE = {"color": "#777777", "linestyle": "--", "linewidth": 1.3}
CAP_STYLE = {"color": "#aaaaaa", "linestyle": ":", "linewidth": 1.2}
CLASS_COLOURS = ("#00467a", "#a33c00")   # target 0, target 1
REGION_COLOURS = ("#cfe3f1", "#eeeeee", "#f6d9c4")   # below 0.4, between, above 0.6


# -------------------------------------------------------- the criterion
def wrong_40_20_40(outputs, targets):
    """Which outputs the 40-20-40 rule counts wrong: a target 1 needs an output
    above 0.6, a target 0 one below 0.4 (NaN is wrong). ``outputs`` has the
    shape of ``targets`` (0 or 1), after any leading axes (one per candidate)."""
    outputs = np.asarray(outputs, dtype=float)
    targets = np.asarray(targets)
    if targets.ndim == 0 or outputs.shape[outputs.ndim - targets.ndim:] != targets.shape:
        raise ValueError(f"outputs must end with the targets' shape {targets.shape}, got "
                         f"shape {outputs.shape}")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError(f"targets must be 0 or 1, got values {np.unique(targets).tolist()}")
    return np.where(targets == 1, ~(outputs > HIGH), ~(outputs < LOW))


def errors_40_20_40(outputs, targets):
    """The number of outputs ``wrong_40_20_40``, per leading index of ``outputs``."""
    targets = np.asarray(targets)
    return wrong_40_20_40(outputs, targets).sum(axis=tuple(range(-targets.ndim, 0)))


def count_errors(net, params, X, Y):
    """40-20-40 errors of the network ``params`` on prepared arrays X, Y."""
    return int(errors_40_20_40(net.engine.forward(params, X), Y))


# ---------------------------------------------------- the cost counter
@dataclasses.dataclass
class Outcome:
    """One run's cost to zero 40-20-40 errors, or to the cap (censored).

    ``evals``: backprop steps (full batch: one per epoch) or candidate
    evaluations; ``fpe``: forward-pass equivalents spent; ``errors``: those
    of ``params`` (the solving network, else the run's last / best one);
    ``stopped``: "solved", "cap", "diverged" or the trainer's stop reasons.
    """
    method: str
    seed: int
    solved: bool
    evals: int
    fpe: int
    errors: int
    stopped: str
    params: np.ndarray = dataclasses.field(repr=False)


def cost_to_solve(net, X, y, method, seed, cap_fpe):
    """Train ``net`` (sigmoid output, binary cross-entropy) on X, y with
    ``method`` until no output is wrong by the 40-20-40 rule, or until the
    next epoch or generation would pass ``cap_fpe`` forward-pass equivalents.

    A network that is solved before training costs nothing. Backprop (which
    trains ``net`` in place) is full-batch Adam, checked after every epoch
    (3 FPE per sample); a
    gradient-free method is checked on every candidate it evaluates (1 FPE
    per sample) and pays for its whole last generation. The checks
    themselves are not counted, like a trace's logged points in runs.py.
    """
    method = check_name("method", method, runs.METHODS)
    seed = check_int("seed", seed, 0)
    cap_fpe = check_int("cap_fpe", cap_fpe, 0)
    if net.loss_name != "bce":
        raise ValueError(f"net must have a sigmoid output and loss 'bce' (the 40-20-40 rule "
                         f"judges outputs in [0, 1]), got loss {net.loss_name!r}")
    X, Y = net._inputs(X), net.targets(y)
    check_same_length("X", X, "y", Y)
    if count_errors(net, net.params, X, Y) == 0:
        return Outcome(method, seed, True, 0, 0, 0, "solved", net.params.copy())
    if method == "backprop":
        return _backprop(net, X, Y, seed, cap_fpe)
    return _gradient_free(net, X, Y, method, seed, cap_fpe)


def _backprop(net, X, Y, seed, cap_fpe):
    trainer = fastnet.StepTrainer(net, fastnet.Adam(lr=BACKPROP_LR), seed=seed,
                                  batch_size=len(X))
    per_epoch = BACKPROP_FPE_PER_SAMPLE * len(X)
    epochs, stopped = 0, "cap"
    while (epochs + 1) * per_epoch <= cap_fpe:
        try:
            trainer.step(X, Y)
        except ValueError:   # the loss became NaN or inf: the step updated nothing
            stopped = "diverged"
            break
        epochs += 1
        trainer.sync()
        if count_errors(net, net.params, X, Y) == 0:
            stopped = "solved"
            break
    params = net.params.copy()
    return Outcome("backprop", seed, stopped == "solved", epochs, epochs * per_epoch,
                   count_errors(net, params, X, Y), stopped, params)


def _gradient_free(net, X, Y, method, seed, cap_fpe):
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=seed,
                                  **runs.METHOD_OPTIONS[method])
    evals, stopped, solution = 0, "cap", None
    while solution is None:
        candidates = trainer.ask()
        if (evals + len(candidates)) * len(X) > cap_fpe:
            break
        with np.errstate(over="ignore"):   # a huge candidate becomes inf: its loss is worst
            thetas = np.ascontiguousarray(candidates, dtype=net.dtype)
        losses = net.engine.population_loss(thetas, X, Y)
        trainer.tell(losses)
        evals += len(candidates)
        solution = _first_solved(net, thetas, losses, X, Y)
        if solution is None and trainer.stop():
            stopped = "; ".join(f"{reason} ({value})" for reason, value
                                in trainer.stop().items())
            break
    if solution is not None:
        return Outcome(method, seed, True, evals, evals * len(X), 0, "solved", solution)
    params = np.ascontiguousarray(trainer.best, dtype=net.dtype)
    return Outcome(method, seed, False, evals, evals * len(X),
                   count_errors(net, params, X, Y), stopped, params)


def _first_solved(net, thetas, losses, X, Y):
    """The first candidate (lowest loss first) with zero errors, or None."""
    for i in np.argsort(losses):
        if not losses[i] < SOLVABLE_LOSS:   # the rest cannot be solved (NaN sorts last)
            return None
        if count_errors(net, thetas[i], X, Y) == 0:
            return thetas[i].copy()
    return None


# --------------------------------------------------------- summaries
def native_unit(method):
    return "epochs" if method == "backprop" else "evaluations"


def summarise(outcomes):
    """A JSON-able summary of one method's runs. Quartiles count an unsolved
    run as infinitely costly (it is censored at the cap), so a quartile that
    falls on unsolved runs is NaN: more than the cap, value unknown."""
    solved = [outcome.solved for outcome in outcomes]

    def quartiles(values):
        censored = [value if ok else math.inf for value, ok in zip(values, solved)]
        return [value if math.isfinite(value) else math.nan
                for value in plots.quantiles(censored).tolist()]

    fpe = [outcome.fpe for outcome in outcomes]
    evals = [outcome.evals for outcome in outcomes]
    return {"unit": native_unit(outcomes[0].method), "runs": len(outcomes),
            "solved": sum(solved), "seeds": [outcome.seed for outcome in outcomes],
            "solved_runs": solved, "fpe": fpe, "evals": evals,
            "errors": [outcome.errors for outcome in outcomes],
            "stopped": [outcome.stopped for outcome in outcomes],
            "fpe_quartiles": quartiles(fpe), "evals_quartiles": quartiles(evals)}


def best_outcome(outcomes):
    """The run with the fewest errors left, the cheapest among equals."""
    return min(outcomes, key=lambda outcome: (outcome.errors, outcome.fpe))


def fmt(value):
    """A count with thousands separators, or "—" for an unknown (NaN) value."""
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def median_phrase(summary, cap_evals):
    """"median 1,234 epochs (IQR 1,000–1,500)", or why there is none."""
    low, median, high = summary["evals_quartiles"]
    if math.isnan(median):
        return f"median above the cap of {fmt(cap_evals)} {summary['unit']}"
    spread = f"{fmt(low)}–{fmt(high)}" if math.isfinite(high) else f"{fmt(low)}–(above the cap)"
    return f"median {fmt(median)} {summary['unit']} (interquartile {spread})"


# --------------------------------------------------------------- study
def run(quick=False, seed=0):
    sizes = SIZES[bool(quick)]
    seeds = list(range(seed, seed + sizes["seeds"]))
    cap_fpe = sizes["cap_fpe"]
    problem = get_problem("spirals")
    X, y, _, _ = problem.data()
    outcomes = {method: [cost_to_solve(problem.network(seed=s), X, y, method, s, cap_fpe)
                         for s in seeds]
                for method in METHODS}
    net = problem.network(seed=seed)
    result = {
        "network": "-".join(map(str, net.sizes)), "n_params": net.n_params,
        "activation": problem.activation, "n_points": len(X), "seeds": seeds,
        "cap_fpe": cap_fpe,
        "cap_epochs": cap_fpe // (BACKPROP_FPE_PER_SAMPLE * len(X)),
        "cap_evals": cap_fpe // len(X),
        "backprop": {"optimizer": "adam", "lr": BACKPROP_LR, "batch_size": len(X)},
        "reference": {"epochs": REFERENCE_EPOCHS, "fpe": REFERENCE_FPE,
                      "network": "2-5-5-5-1 network with shortcut connections",
                      "source": "Lang & Witbrock (1988)"},
        "methods": {method: summarise(method_outcomes)
                    for method, method_outcomes in outcomes.items()},
    }
    backprop = best_outcome(outcomes["backprop"])
    gradient_free = best_outcome([o for m in METHODS[1:] for o in outcomes[m]])
    result["regions"] = {name: {"method": o.method, "seed": o.seed, "errors": o.errors,
                                "solved": o.solved, "evals": o.evals, "fpe": o.fpe}
                         for name, o in (("backprop", backprop),
                                         ("gradient_free", gradient_free))}
    figure = _figure(result, net, X, y, (backprop, gradient_free))
    return result, {NAME: figure}


# ------------------------------------------------------------- figure
def draw_costs(ax, methods, summaries, cap_fpe, positions=None):
    """Per method its runs' FPE to solve (filled) or censored at the cap (open,
    drawn at the cap) and a bar at the median; returns nothing."""
    rng = np.random.default_rng(0)   # horizontal jitter only
    for i, method in enumerate(methods):
        summary = summaries[method]
        x = i if positions is None else positions[i]
        colour, _, marker = plots.method_style(method)
        jitter = x + rng.uniform(-0.15, 0.15, summary["runs"])
        solved = np.array(summary["solved_runs"])
        fpe = np.array(summary["fpe"], dtype=float)
        ax.scatter(jitter[solved], fpe[solved], color=colour, marker=marker, s=26,
                   zorder=4, gid=f"method:{method}")
        ax.scatter(jitter[~solved], np.full((~solved).sum(), cap_fpe), facecolor="white",
                   edgecolor=colour, marker=marker, s=26, zorder=4, gid=f"method:{method}")
        median = summary["fpe_quartiles"][1]
        ax.plot([x - 0.3, x + 0.3], [median if math.isfinite(median) else cap_fpe] * 2,
                color=colour, linewidth=2.4, solid_capstyle="butt", zorder=5,
                linestyle="-" if math.isfinite(median) else (0, (1, 1)),
                gid=f"method:{method}")


def _cost_panel(ax, result):
    methods = list(result["methods"])
    summaries, cap_fpe = result["methods"], result["cap_fpe"]
    draw_costs(ax, methods, summaries, cap_fpe)
    ax.axhline(REFERENCE_FPE, **REFERENCE_STYLE)
    ax.axhline(cap_fpe, **CAP_STYLE)
    ax.set_yscale("log")
    low = min([cap_fpe] + [f for s in summaries.values()
                           for f, ok in zip(s["fpe"], s["solved_runs"]) if ok and f > 0])
    ax.set_ylim(low / 3, max(REFERENCE_FPE, cap_fpe) * 4)
    ax.set_xticks(range(len(methods)),
                  [f"{m}\n{summaries[m]['solved']}/{summaries[m]['runs']} solved"
                   for m in methods])
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylabel("forward-pass equivalents to zero 40-20-40 errors")
    per_epoch = BACKPROP_FPE_PER_SAMPLE * result["n_points"]
    epochs_axis = ax.secondary_yaxis("right", functions=(lambda f: f / per_epoch,
                                                         lambda e: e * per_epoch))
    epochs_axis.set_ylabel(f"backprop epochs (FPE / {per_epoch})")
    for i, method in enumerate(methods):
        summary = summaries[method]
        median = summary["evals_quartiles"][1]
        unit = "epochs" if method == "backprop" else "evals"
        text = f"median\n{fmt(median)} {unit}" if math.isfinite(median) else "median\n> cap"
        ax.annotate(text, (i, ax.get_ylim()[0]), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color="#333333")
    ax.set_title(f"Cost to solve, {len(result['seeds'])} seeds per method", loc="left")
    handles = [Line2D([], [], label=f"Lang & Witbrock 1988: {REFERENCE_EPOCHS:,} epochs\n"
                      f"(2-5-5-5-1 with shortcuts) = {REFERENCE_FPE:,} FPE", **REFERENCE_STYLE),
               Line2D([], [], label=f"cap: {cap_fpe:,} FPE", **CAP_STYLE),
               Line2D([], [], color="#555555", marker="o", linestyle="none",
                      label="one seed, solved"),
               Line2D([], [], color="#555555", marker="o", markerfacecolor="white",
                      linestyle="none", label="one seed, unsolved (at the cap)"),
               Line2D([], [], color="#555555", linewidth=2.4, label="median")]
    ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.9)


def _region_panel(ax, net, X, y, outcome, label):
    span = np.abs(X).max() * 1.1
    grid = np.linspace(-span, span, 201)
    gx, gy = np.meshgrid(grid, grid)
    plane = np.column_stack([gx.ravel(), gy.ravel()])
    out = net.forward(plane, params=outcome.params).reshape(gx.shape)
    ax.contourf(gx, gy, out, levels=[0.0, LOW, HIGH, 1.0], colors=REGION_COLOURS)
    outputs = net.forward(X, params=outcome.params)[:, 0]
    wrong = wrong_40_20_40(outputs, y)
    for target in (0, 1):
        ax.scatter(*X[y == target].T, s=10, color=CLASS_COLOURS[target], zorder=3,
                   edgecolor="white", linewidth=0.3, label=f"target {target}")
    ax.scatter(*X[wrong].T, s=40, facecolor="none", edgecolor="#CC0000", linewidth=1.0,
               zorder=4, label="wrong (40-20-40)")
    state = "solved" if outcome.solved else "unsolved at the cap"
    cost = f"{outcome.evals:,} {native_unit(outcome.method)}"
    ax.set_title(f"{label}, seed {outcome.seed}\n{outcome.errors} of "
                 f"{len(X)} points wrong, {state}\nafter {cost}", loc="left", fontsize=8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _figure(result, net, X, y, shown):
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(11, 7.2), layout="constrained")
        axes = figure.subplot_mosaic([["cost", "backprop"], ["cost", "gradient_free"]],
                                     width_ratios=[1.7, 1])
        _cost_panel(axes["cost"], result)
        _region_panel(axes["backprop"], net, X, y, shown[0], "backprop's best run")
        _region_panel(axes["gradient_free"], net, X, y, shown[1],
                      f"best gradient-free run: {shown[1].method}")
        region_handles = [Patch(color=REGION_COLOURS[0], label="output < 0.4 (reads 0)"),
                          Patch(color=REGION_COLOURS[1], label="0.4–0.6 (an error)"),
                          Patch(color=REGION_COLOURS[2], label="output > 0.6 (reads 1)")]
        handles, _ = axes["backprop"].get_legend_handles_labels()
        figure.legend(handles=region_handles + handles, loc="outside lower right", ncol=3,
                      fontsize=7.5, frameon=False)
        figure.suptitle(f"Two spirals ({result['n_points']} points, {result['network']} "
                        f"{result['activation']} MLP, {result['n_params']} parameters): "
                        "cost to get every point right by the 40-20-40 rule")
    return figure


# ------------------------------------------------------------ section
def section(result):
    methods = result["methods"]
    backprop = methods["backprop"]
    lines = [
        f"Every method trains the same {result['network']} {result['activation']} network "
        f"(sigmoid output, binary cross-entropy, {result['n_params']} parameters; seeds "
        f"{', '.join(map(str, result['seeds']))}) on Lang & Witbrock's {result['n_points']} "
        "points, which are also the test set, until every point is right by Fahlman's "
        f"40-20-40 rule (an output above {HIGH} counts as 1, below {LOW} as 0, anything "
        f"between is an error), or until a cap of {result['cap_fpe']:,} forward-pass "
        f"equivalents (FPE: {result['cap_epochs']:,} backprop epochs, or "
        f"{result['cap_evals']:,} gradient-free evaluations). Backprop is full-batch Adam "
        f"(learning rate {result['backprop']['lr']:g}), one step per epoch of 3 x "
        f"{result['n_points']} FPE; a gradient-free evaluation costs {result['n_points']} FPE.",
        "",
        f"Backprop solved {backprop['solved']} of {backprop['runs']} seeds, "
        f"{median_phrase(backprop, result['cap_epochs'])}, against the "
        f"{result['reference']['epochs']:,} epochs ({result['reference']['fpe']:,} FPE, the "
        f"dashed line) that {result['reference']['source']} needed with a "
        f"{result['reference']['network']}."
        + _reference_ratio(backprop, result["reference"]["epochs"]),
        "",
    ]
    for method, summary in methods.items():
        if method == "backprop":
            continue
        lines.append(
            f"- {method}: {summary['solved']} of {summary['runs']} solved, "
            f"{median_phrase(summary, result['cap_evals'])}; errors left per seed: "
            f"{', '.join(map(str, summary['errors']))}.")
    regions = result["regions"]
    lines += [
        "",
        "Left: each dot is one seed's cost (open dots: not solved, drawn at the cap), the "
        "bar its method's median. Right: the output over the plane of the backprop network "
        f"with the fewest errors ({regions['backprop']['method']}, seed "
        f"{regions['backprop']['seed']}, {regions['backprop']['errors']} errors) and of the "
        f"best gradient-free one ({regions['gradient_free']['method']}, seed "
        f"{regions['gradient_free']['seed']}, {regions['gradient_free']['errors']} errors of "
        f"{result['n_points']}).",
        "",
        f"![FPE to zero 40-20-40 errors per method and seed on the two spirals, with Lang & "
        f"Witbrock's 18,000 epochs as a reference line, and decision regions](figures/{NAME}.png)",
    ]
    return lines


def _reference_ratio(summary, reference_epochs):
    median = summary["evals_quartiles"][1]
    if math.isnan(median):
        return ""
    return (f" The median is {median / reference_epochs:.1%} of that count (with Adam, "
            "which 1988 did not have, on a plain network without shortcuts).")
