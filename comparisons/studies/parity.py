"""XOR and n-bit parity: the cost to solve as the number of bits grows.

n-bit parity asks for 1 when an odd number of the n binary inputs are 1; the
data are all 2^n patterns, trained on and judged on, as in the historical
benchmarks (D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning
internal representations by error propagation", in Parallel Distributed
Processing, vol. 1, MIT Press, 1986, where XOR and parity are the first
problems backprop is shown to solve). XOR is 2-bit parity: fastnet's 'xor'
and 'parity2' are the same table.

Every method trains an n-2n-1 tanh network (sigmoid output, binary
cross-entropy; parity needs n hidden units, this gives twice as many) until
every pattern is right by the 40-20-40 rule, counted by the two-spirals
study's ``cost_to_solve``. Each method may evaluate the whole table
``cap_evals`` times (backprop: ``cap_evals / 3`` full-batch epochs), the
same forward-pass equivalents for all; unsolved runs are censored there.
"""
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import fastnet
from comparisons import plots
from comparisons.budget import BACKPROP_FPE_PER_SAMPLE
from comparisons.studies.two_spirals import BACKPROP_LR, cost_to_solve, fmt, summarise

NAME = "parity"
TITLE = "XOR and n-bit parity: cost to solve as n grows"

METHODS = ("backprop", "ga", "cmaes", "es", "pso", "de")
#: bits, seeds, and the cap in whole-table evaluations (FPE: cap_evals x 2^n)
SIZES = {True: {"bits": (2, 3), "seeds": 2, "cap_evals": 3_000},
         False: {"bits": (2, 3, 4, 5, 6), "seeds": 10, "cap_evals": 30_000}}
CAP_STYLE = {"color": "#999999", "linestyle": ":", "linewidth": 1.3}


def network(bits, seed):
    """The n-2n-1 tanh network with a sigmoid output and binary cross-entropy."""
    return fastnet.Network([bits, 2 * bits, 1], activation="tanh", output="sigmoid",
                           loss="bce", seed=seed)


def run(quick=False, seed=0):
    sizes = SIZES[bool(quick)]
    seeds = list(range(seed, seed + sizes["seeds"]))
    cap_evals = sizes["cap_evals"]
    result = {"bits": list(sizes["bits"]), "seeds": seeds, "cap_evals": cap_evals,
              "cap_epochs": cap_evals // BACKPROP_FPE_PER_SAMPLE, "cap_fpe": [],
              "patterns": [], "networks": [], "n_params": [],
              "backprop": {"optimizer": "adam", "lr": BACKPROP_LR, "batch": "all patterns"},
              "methods": {method: [] for method in METHODS}}
    for bits in sizes["bits"]:
        X, y, _, _ = fastnet.datasets.load(f"parity{bits}")
        cap_fpe = cap_evals * len(X)
        net = network(bits, seed)
        result["cap_fpe"].append(cap_fpe)
        result["patterns"].append(len(X))
        result["networks"].append("-".join(map(str, net.sizes)))
        result["n_params"].append(net.n_params)
        for method in METHODS:
            outcomes = [cost_to_solve(network(bits, s), X, y, method, s, cap_fpe)
                        for s in seeds]
            result["methods"][method].append(summarise(outcomes))
    return result, {NAME: _figure(result)}


# ------------------------------------------------------------- figure
def _offsets(count, width=0.3):
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(1)


def _draw_method(ax, bits, summaries, cap_fpe, method, offset):
    """Median (filled; open, at the cap, when more than half are unsolved) and
    the interquartile range as a bar, which stops at the cap when the upper
    quartile lies past it. The line breaks at a censored median."""
    colour, linestyle, marker = plots.method_style(method)
    gid = f"method:{method}"
    x = np.asarray(bits, dtype=float) + offset
    low, median, high = (np.array([s["fpe_quartiles"][i] for s in summaries]) for i in range(3))
    censored = np.isnan(median)
    ax.plot(x, median, color=colour, linestyle=linestyle, linewidth=1.2, zorder=3, gid=gid)
    ax.scatter(x[~censored], median[~censored], color=colour, marker=marker, s=30, zorder=5,
               gid=gid)
    ax.scatter(x[censored], cap_fpe[censored], facecolor="white", edgecolor=colour,
               marker=marker, s=30, zorder=5, gid=gid)
    ax.vlines(x, np.where(np.isnan(low), cap_fpe, low), np.where(np.isnan(high), cap_fpe, high),
              color=colour, linewidth=1.2, zorder=4, gid=gid)


def _figure(result):
    bits, methods = result["bits"], result["methods"]
    cap_fpe = np.array(result["cap_fpe"], dtype=float)
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(8.6, 6.6), layout="constrained")
        cost, solved = figure.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
        for method, offset in zip(methods, _offsets(len(methods))):
            _draw_method(cost, bits, methods[method], cap_fpe, method, offset)
            colour, linestyle, marker = plots.method_style(method)
            fraction = [s["solved"] / s["runs"] for s in methods[method]]
            solved.plot(np.asarray(bits) + offset, fraction, color=colour, linestyle=linestyle,
                        marker=marker, markersize=5, linewidth=1.2, gid=f"method:{method}")
        cost.plot(bits, cap_fpe, zorder=2, **CAP_STYLE)
        cost.set_yscale("log")
        cost.set_ylabel("forward-pass equivalents to zero 40-20-40 errors")
        cost.set_title(f"Median over {len(result['seeds'])} seeds; bars: interquartile range "
                       "(ending on the cap: past it); open marker: median past the cap",
                       loc="left")
        solved.set_ylim(-0.05, 1.05)
        solved.set_ylabel("fraction solved")
        solved.set_xticks(bits, [f"{n}\n({network})" + ("\nXOR" if n == 2 else "")
                                 for n, network in zip(bits, result["networks"])])
        solved.set_xlabel("bits n (network n-2n-1)")
        extra = [Line2D([], [], label=f"cap: {result['cap_evals']:,} evaluations\n"
                        f"x 2^n patterns", **CAP_STYLE)]
        handles = [plots.method_handle(method, marker=True) for method in methods]
        figure.legend(handles=handles + extra, loc="outside right center", frameon=False)
        figure.suptitle("n-bit parity: cost to get all 2^n patterns right by the 40-20-40 rule")
    return figure


# ------------------------------------------------------------ section
def _cell(summary):
    median = summary["fpe_quartiles"][1]
    cost = fmt(median) if math.isfinite(median) else "> cap"
    return f"{cost} ({summary['solved']}/{summary['runs']})"


def _growth(result, method):
    """How ``method``'s median FPE grew from the smallest to the largest n it solved."""
    medians = [(n, s["fpe_quartiles"][1]) for n, s in zip(result["bits"],
                                                          result["methods"][method])]
    finite = [(n, m) for n, m in medians if math.isfinite(m)]
    if not finite:
        return f"{method}: median past the cap at every n"
    if len(finite) == 1:
        return f"{method}: median below the cap at n = {finite[0][0]} only"
    (n0, m0), (n1, m1) = finite[0], finite[-1]
    return f"{method}: {fmt(m0)} FPE at n = {n0} to {fmt(m1)} at n = {n1} ({m1 / m0:,.1f}x)"


def section(result):
    bits, methods = result["bits"], result["methods"]
    lines = [
        f"n-bit parity for n = {bits[0]}..{bits[-1]} (n = 2 is XOR): every method trains an "
        "n-2n-1 tanh network (sigmoid output, binary cross-entropy) on all 2^n patterns "
        "until every pattern is right by the 40-20-40 rule (output above 0.6 for 1, below "
        f"0.4 for 0), over {len(result['seeds'])} seeds, with a cap of "
        f"{result['cap_evals']:,} evaluations of the whole table (forward-pass equivalents "
        f"{', '.join(f'{c:,}' for c in result['cap_fpe'])}; backprop: "
        f"{result['cap_epochs']:,} full-batch Adam steps at learning rate "
        f"{result['backprop']['lr']:g}, one per epoch of 3 x 2^n FPE). Runs not solved "
        "within the cap are censored: they count in the fraction solved and push a median "
        "past the cap, never out of the statistics.",
        "",
        "Median FPE to solve (solved/runs; \"> cap\": more than half unsolved):",
        "",
        "| method | " + " | ".join(f"n = {n}" for n in bits) + " |",
        "|---|" + "---:|" * len(bits),
    ]
    for method, summaries in methods.items():
        lines.append(f"| {method} | " + " | ".join(_cell(s) for s in summaries) + " |")
    backprop_steps = [s["evals_quartiles"][1] for s in methods["backprop"]]
    lines += [
        "",
        "Backprop's median full-batch steps: " + ", ".join(
            f"{fmt(v) if math.isfinite(v) else '> cap'} at n = {n}"
            for n, v in zip(bits, backprop_steps)) + ". Growth of the median FPE with n: "
        + "; ".join(_growth(result, method) for method in methods) + ".",
        "",
        f"![FPE to solve n-bit parity against n, median and interquartile range per method, "
        f"and the fraction of seeds solved](figures/{NAME}.png)",
    ]
    return lines
