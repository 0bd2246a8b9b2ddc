"""The loss landscape of the digits network around the trained parameters, and
the paths that backprop, a genetic algorithm and CMA-ES take through it.

All three start from the same initial parameters (the problem's network for
the seed) and run as in a sweep (``comparisons.runs``: the same options and
budget accounting); the parameters are kept at every point the run logs
(log-spaced in cost). A gradient-free path is its incumbent, the best
candidate so far: the parameters the method returns. Full CMA-ES passes the
sweep's scale guard at 2,410 parameters (C takes 46 MB); a run the guard
switched would stop the study rather than draw the wrong method.

Budgets: backprop stops at 400,000 forward-pass equivalents (about 100
epochs), where its test accuracy has levelled off; trained further, its
float32 training cross-entropy reaches exactly 0 (after about 1.6 million)
and the plane's centre becomes a flat region of zeros. The gradient-free
methods get 50 times more.

Views (see ``comparisons.landscape``): the training loss on a plane through
backprop's final parameters along two random filter-normalised directions
(Li et al. 2018, section 4), with the paths projected onto it; on the plane
of the top two principal directions of all three paths, through the same
point, and of each path alone, through its own end (their section 7); and on
the straight line from the shared initial parameters to each method's final
ones (Goodfellow et al. 2015).
"""
import math

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from comparisons import landscape, plots, runs
from comparisons.problems import get_problem

NAME = "landscape"
TITLE = "Loss landscape: random and principal planes, and the line from the start"

PROBLEM = "digits"
METHODS = ("backprop", "ga", "cmaes")
SETTINGS = {
    True: {"budget": {"backprop": 100_000, "ga": 200_000, "cmaes": 200_000},
           "grid": 11, "line": 21},
    False: {"budget": {"backprop": 400_000, "ga": 20_000_000, "cmaes": 20_000_000},
            "grid": 31, "line": 41},
}
#: half-width of the random plane, in units of the filter-normalised directions
#: (at its edge each unit's weights move by their own norm), as in Li et al.'s figures
RANDOM_EXTENT = 1.0
#: a plane fitted to paths covers their projections plus this share of their range
MARGIN = 0.15
#: interpolation coefficients run over [-0.5, 1.5]; 0 and 1 lie on the grid
LINE_RANGE = (-0.5, 1.5)
#: a rise (or an excess over the chord) on [0, 1] below this share of the
#: start's loss is float rounding
MONOTONE_TOLERANCE = 1e-6
LABELS = {"backprop": "backprop (Adam)", "ga": "GA", "cmaes": "CMA-ES"}
LOSS_LABEL = "training cross-entropy (nats)"


# ---------------------------------------------------------------- runs
def _train(problem, method, seed, budget):
    """(path (T x D): the parameters at every logged point, the run's record)."""
    path = []
    record = runs.run(problem, method, seed, budget, on_log=path.append)
    if record["status"] != "completed" or record.get("runs_as", method) != method:
        raise RuntimeError(f"{method} on {problem.name} did not run as asked: "
                           f"{record['status']}, {record['message']}")
    return np.array(path), record


# ---------------------------------------------------------------- views
def _extent(projections):
    """(low, high) corners of a box around the projected paths and the centre."""
    points = np.concatenate([coordinates for coordinates, _ in projections.values()]
                            + [np.zeros((1, 2))])
    low, high = points.min(axis=0), points.max(axis=0)
    margin = MARGIN * np.maximum(high - low, 1e-12)
    return low - margin, high + margin


def _view(net, X, Y, center, d1, d2, paths, grid, extent=None):
    """The paths projected on the plane center + a d1 + b d2 and the loss on a
    grid x grid box (``extent`` = (low, high) corners; default: around the paths)."""
    projections = {m: landscape.project(path, center, d1, d2) for m, path in paths.items()}
    low, high = extent or _extent(projections)
    alphas, betas = np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid)
    losses = landscape.plane_losses(net, center, d1, d2, X, Y, alphas, betas)
    start = next(iter(projections.values()))[0][0]
    summary = {
        "extent": [float(low[0]), float(high[0]), float(low[1]), float(high[1])],
        "grid": grid, "loss_min": float(losses.min()), "loss_max": float(losses.max()),
        "center_loss": float(landscape.plane_losses(net, center, d1, d2, X, Y, [0], [0])[0, 0]),
        "start_loss_on_plane": float(
            landscape.plane_losses(net, center, d1, d2, X, Y, start[:1], start[1:])[0, 0]),
        "in_plane_fraction": {m: float(np.nanmedian(fractions))
                              for m, (_, fractions) in projections.items()},
    }
    return {"alphas": alphas, "betas": betas, "losses": losses,
            "projections": projections}, summary


def _pca_view(net, X, Y, center, paths, grid):
    """The view on the paths' principal plane through ``center``; (None, None) when
    the paths span fewer than 2 dimensions (a run that never moved, say)."""
    try:
        d1, d2, explained = landscape.pca_directions(list(paths.values()), center)
    except ValueError:
        return None, None
    view, summary = _view(net, X, Y, center, d1, d2, paths, grid)
    return view, {**summary, "explained_variance": [float(r) for r in explained]}


def _interpolation_summary(alphas, losses):
    """On alpha in [0, 1]: whether the loss falls monotonically, its largest rise
    between neighbouring points, its largest excess over the chord
    (1 - a) L(0) + a L(1), and its lowest value and where that lies."""
    inside = (alphas >= 0) & (alphas <= 1)
    a, values = alphas[inside], losses[inside]
    chord = (1 - a) * values[0] + a * values[-1]
    max_rise = float(max(np.diff(values).max(initial=0.0), 0.0))
    lowest = int(np.argmin(values))
    return {"loss_start": float(values[0]), "loss_end": float(values[-1]),
            "max_bump": float((values - chord).max()), "max_rise": max_rise,
            "monotone": bool(max_rise <= MONOTONE_TOLERANCE * values[0]),
            "min_loss": float(values[lowest]), "min_alpha": float(a[lowest])}


def run(quick, seed):
    settings = SETTINGS[bool(quick)]
    grid = settings["grid"]
    problem = get_problem(PROBLEM)
    net = problem.network(seed=seed)
    X, Y = runs.prepared_data(net, problem)[:2]
    trained = {method: _train(problem, method, seed, settings["budget"][method])
               for method in METHODS}
    paths = {method: path for method, (path, _) in trained.items()}
    start, center = paths["backprop"][0], paths["backprop"][-1]

    rng = np.random.default_rng(seed)
    d1 = landscape.filter_normalized_direction(net, center, rng)
    d2 = landscape.filter_normalized_direction(net, center, rng)
    whole = (-RANDOM_EXTENT, -RANDOM_EXTENT), (RANDOM_EXTENT, RANDOM_EXTENT)
    random_view, random_summary = _view(net, X, Y, center, d1, d2, paths, grid, whole)
    zoom_view, zoom_summary = _view(net, X, Y, center, d1, d2, paths, grid)
    joint_view, joint_summary = _pca_view(net, X, Y, center, paths, grid)
    own = {m: _pca_view(net, X, Y, path[-1], {m: path}, grid) for m, path in paths.items()}

    line = np.round(np.linspace(*LINE_RANGE, settings["line"]), 12)
    lines = {m: landscape.interpolate(net, start, path[-1], X, Y, line)
             for m, path in paths.items()}

    result = {
        "problem": PROBLEM, "sizes": list(net.sizes), "n_params": net.n_params,
        "n_train": len(X), "methods": list(METHODS),
        "budget_fpe": dict(settings["budget"]),
        "fpe_used": {m: int(record["fpe"]) for m, (_, record) in trained.items()},
        "train_seconds": {m: float(record["seconds"]) for m, (_, record) in trained.items()},
        "path_points": {m: len(path) for m, path in paths.items()},
        "same_start": bool(all(np.array_equal(path[0], start) for path in paths.values())),
        "initial_loss": float(lines["backprop"][line == 0][0]),
        "final_loss": {m: float(values[line == 1][0]) for m, values in lines.items()},
        "distance_from_start": {m: float(np.linalg.norm(path[-1] - start))
                                for m, path in paths.items()},
        "random_plane": {**random_summary, "isotropic_fraction": math.sqrt(2 / net.n_params)},
        "random_zoom": zoom_summary,
        "pca_joint": joint_summary,
        "pca_own": {m: summary for m, (_, summary) in own.items()},
        "interpolation": {"alphas": list(LINE_RANGE), "points": len(line),
                          **{m: _interpolation_summary(line, v) for m, v in lines.items()}},
    }
    figures = {
        f"{NAME}_random_plane": _random_figure(random_view, zoom_view, result),
        f"{NAME}_pca_plane": _pca_figure(joint_view, {m: view for m, (view, _) in own.items()},
                                         result),
        f"{NAME}_interpolation": _interpolation_figure(line, lines, result),
    }
    return result, figures


# ---------------------------------------------------------------- figures
def _network_line(result):
    budgets = ", ".join(f"{LABELS[m]} {b:,}" for m, b in result["budget_fpe"].items())
    return (f"{result['problem']} {'-'.join(map(str, result['sizes']))} ReLU "
            f"({result['n_params']:,} parameters)\nbudgets in forward-pass equivalents: "
            f"{budgets}")


def _draw_plane(ax, figure, view, subtitle, axis_labels):
    """Filled log-scale contours of the loss, the projected paths ending in their
    method's marker, and the shared start circled in red."""
    losses = np.maximum(view["losses"], plots.LOSS_FLOOR)
    levels = np.geomspace(losses.min(), losses.max(), 16)
    a, b = np.meshgrid(view["alphas"], view["betas"], indexing="ij")
    filled = ax.contourf(a, b, losses, levels=levels, norm=LogNorm(), cmap="viridis")
    ax.contour(a, b, losses, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    figure.colorbar(filled, ax=ax, label=LOSS_LABEL, format="%.2g")
    for method, (coordinates, _) in view["projections"].items():
        colour, linestyle, marker = plots.method_style(method)
        ax.plot(coordinates[:, 0], coordinates[:, 1], color=colour, linestyle=linestyle,
                linewidth=1.6, gid=f"method:{method}")
        ax.plot(*coordinates[-1], marker=marker, markersize=7, markeredgecolor="white",
                color=colour, linestyle="none", gid=f"method:{method}")
    start = next(iter(view["projections"].values()))[0][0]   # every path starts there
    ax.plot(*start, marker="o", markersize=9, markerfacecolor="none", markeredgecolor="red",
            markeredgewidth=1.5, linestyle="none")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(subtitle, loc="left")
    ax.grid(False)


def _finish(figure, title, result, labels):
    handles = [plots.method_handle(m, marker=True, label=label) for m, label in labels.items()]
    handles.append(Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="red",
                          linestyle="none", label="shared initial parameters"))
    figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    figure.suptitle(f"{title}\n{_network_line(result)}", ha="left", x=0.01,
                    fontsize=plots.STYLE["axes.titlesize"])
    return figure


def _random_figure(random_view, zoom_view, result):
    labels = ("α (filter-normalised direction d₁)", "β (filter-normalised direction d₂)")
    fractions = result["random_plane"]["in_plane_fraction"]
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(11.4, 5.6), layout="constrained")
        left, right = figure.subplots(1, 2)
        _draw_plane(left, figure, random_view, "the whole plane", labels)
        _draw_plane(right, figure, zoom_view, "zoomed on the projected paths", labels)
        return _finish(figure, "Training loss on a random filter-normalised plane through "
                       "backprop's final parameters, with the paths projected onto it", result,
                       {m: f"{LABELS[m]}: median in-plane fraction {fractions[m]:.3g}"
                        for m in result["methods"]})


def _pc_labels(summary):
    return tuple(f"PC{i + 1} ({100 * r:.1f}% of the variance; parameter units)"
                 for i, r in enumerate(summary["explained_variance"]))


def _pca_figure(joint_view, own_views, result):
    joint = result["pca_joint"]
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(11.4, 10.0), layout="constrained")
        axes = figure.subplots(2, 2).ravel()
        fractions = ", ".join(f"{LABELS[m]} {f:.2g}" for m, f in
                              joint["in_plane_fraction"].items())
        _draw_plane(axes[0], figure, joint_view, "all three paths, through backprop's final "
                    f"parameters\nmedian in-plane fractions: {fractions}", _pc_labels(joint))
        for ax, (method, view) in zip(axes[1:], own_views.items()):
            own = result["pca_own"][method]
            if own is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"the {LABELS[method]} path spans fewer than 2 dimensions:\n"
                        "it has no principal plane", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            _draw_plane(ax, figure, view, f"the {LABELS[method]} path alone, through its final "
                        f"parameters\nmedian in-plane fraction "
                        f"{own['in_plane_fraction'][method]:.2g}", _pc_labels(own))
        return _finish(figure, "Training loss on planes of the paths' top two principal "
                       "directions", result, {m: LABELS[m] for m in result["methods"]})


def _interpolation_figure(line, lines, result):
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(6.8, 4.8), layout="constrained")
        ax = figure.add_subplot()
        for method, values in lines.items():
            summary = result["interpolation"][method]
            colour, linestyle, marker = plots.method_style(method)
            ax.plot(line, np.maximum(values, plots.LOSS_FLOOR), color=colour,
                    linestyle=linestyle, marker=marker, markersize=3, gid=f"method:{method}",
                    label=f"{LABELS[method]}: final loss {summary['loss_end']:.3g}, "
                          f"largest rise on [0, 1] {summary['max_rise']:.3g}")
        for alpha, text in ((0, "initial"), (1, "final")):
            ax.axvline(alpha, color="grey", linestyle=":", linewidth=1)
            ax.annotate(text, (alpha, 1), xycoords=("data", "axes fraction"), ha="center",
                        va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("α (parameters (1 − α) θ_initial + α θ_final; dimensionless)")
        ax.set_ylabel(LOSS_LABEL)
        ax.legend(loc="lower left", frameon=False)
        figure.suptitle("Training loss on the straight line from the shared initial parameters\n"
                        f"to each method's final parameters\n{_network_line(result)}",
                        ha="left", x=0.01, fontsize=plots.STYLE["axes.titlesize"])
    return figure


# ---------------------------------------------------------------- text
def _each(result, values, form):
    return ", ".join(f"{LABELS[m]} {format(values[m], form)}" for m in result["methods"])


def _line_phrase(method, summary, distance):
    if distance == 0:
        return f"{LABELS[method]} ended where it started, so its line is flat"
    shape = ("falls monotonically" if summary["monotone"] else
             f"is not monotone (it is lowest, {summary['min_loss']:.3g}, at "
             f"α = {summary['min_alpha']:.2g}, and rises by up to {summary['max_rise']:.3g} "
             "between neighbouring points)")
    bump = summary["max_bump"]
    chord = ("never rises above the chord between its ends"
             if bump <= MONOTONE_TOLERANCE * summary["loss_start"] else
             f"rises up to {bump:.3g} above the chord between its ends")
    return f"for {LABELS[method]} it {shape} and {chord}"


def _own_plane_phrase(method, summary):
    if summary is None:
        return f"the {LABELS[method]} path spans fewer than 2 dimensions and has no plane"
    first, second = summary["explained_variance"]
    return (f"{LABELS[method]} {100 * first:.1f}% + {100 * second:.1f}%, in-plane "
            f"{summary['in_plane_fraction'][method]:.3g}, loss at the projected start "
            f"{summary['start_loss_on_plane']:.3g}")


def section(result):
    random_plane, zoom, joint = result["random_plane"], result["random_zoom"], result["pca_joint"]
    explained = joint["explained_variance"]
    return [
        f"Backprop (Adam), a GA and CMA-ES trained the {result['problem']} network "
        f"({'-'.join(map(str, result['sizes']))} ReLU, {result['n_params']:,} parameters, "
        f"{result['n_train']:,} training samples) from the same initial parameters "
        f"(training loss {result['initial_loss']:.3g}), with budgets in forward-pass "
        f"equivalents of {_each(result, result['budget_fpe'], ',')}. They ended at training "
        f"losses of {_each(result, result['final_loss'], '.3g')}, at Euclidean distances "
        f"from the start of {_each(result, result['distance_from_start'], '.3g')}. On a plane "
        f"through backprop's final parameters along two random filter-normalised directions "
        f"(Li et al., NeurIPS 2018) the loss goes from {random_plane['center_loss']:.3g} at "
        f"the centre to {random_plane['loss_max']:.3g} within ±{random_plane['extent'][1]:g} "
        f"(where each unit's weights move by their own norm). The paths hardly lie in that "
        f"plane: the median share of a point's offset from the centre that the plane holds "
        f"is {_each(result, random_plane['in_plane_fraction'], '.3g')} (an isotropic random "
        f"plane holds about √(2/D) = {random_plane['isotropic_fraction']:.3g}). Their "
        f"projections fit in [{zoom['extent'][0]:.2g}, {zoom['extent'][1]:.2g}] × "
        f"[{zoom['extent'][2]:.2g}, {zoom['extent'][3]:.2g}] (right panel) and mislead: the "
        f"plane's loss at the projected start is {random_plane['start_loss_on_plane']:.3g}, "
        f"while the start's own loss is {result['initial_loss']:.3g}.",
        "",
        f"![Loss on a random filter-normalised plane with the projected paths]"
        f"(figures/{NAME}_random_plane.png)",
        "",
        f"The top two principal directions of all three paths (Li et al., section 7), on a "
        f"plane through backprop's final parameters, explain {100 * explained[0]:.1f}% and "
        f"{100 * explained[1]:.1f}% of their variance; that plane holds a median share of "
        f"{_each(result, joint['in_plane_fraction'], '.3g')} of the paths' offsets, and its "
        f"loss spans {joint['loss_min']:.3g} to {joint['loss_max']:.3g} (top left). Each "
        f"path's own principal plane through its final parameters (the other panels) "
        f"explains, holds and shows: "
        + "; ".join(_own_plane_phrase(m, result["pca_own"][m]) for m in result["methods"])
        + f" (the start's own loss: {result['initial_loss']:.3g}).",
        "",
        f"![Loss on the principal planes of the paths](figures/{NAME}_pca_plane.png)",
        "",
        f"On the straight line from the initial to the final parameters (Goodfellow, Vinyals "
        f"and Saxe, ICLR 2015), for α in [{result['interpolation']['alphas'][0]:g}, "
        f"{result['interpolation']['alphas'][1]:g}]: "
        + "; ".join(_line_phrase(m, result["interpolation"][m],
                                 result["distance_from_start"][m]) for m in result["methods"])
        + ".",
        "",
        f"![Loss on the line from the initial to the final parameters]"
        f"(figures/{NAME}_interpolation.png)",
    ]
