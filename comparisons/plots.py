"""Figures that contrast how the methods converge, from stored run records.

Each ``plot_*`` function takes run records (see runs.py), writes
``NAME.png`` (150 dpi, for the screen) and ``NAME.svg`` (for print) into
``out_dir/figures`` and returns the two paths, or ``None`` when the records
hold nothing to draw. The ``*_figure`` functions build the same figures
without writing them (tests inspect these).

Conventions shared by every figure:

* one colour, line style and marker per method, from the one table
  ``METHOD_STYLES`` (Okabe-Ito colours, safe for colour-blind readers;
  backprop in black). Every artist drawn for a method carries the gid
  ``"method:NAME"`` so that a test can check its colour;
* several seeds per method: the median line with an interquartile band;
* traces are logged at different points in every run, so they are put on a
  common log-spaced grid by step interpolation: a run's value at ``x`` is
  its last logged value at or before ``x`` (the best-so-far loss of a
  gradient-free method, the current loss of backprop), and after its last
  point a run keeps its final value. A non-finite loss (a diverged run)
  counts as an infinite loss, the worst, not as a missing one.

Only matplotlib's object API and the Agg canvas are used (no pyplot): the
figures never touch global plotting state.
"""
import collections
import math
import os
import re

import numpy as np
import matplotlib
import matplotlib.font_manager
import matplotlib.ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

# ----------------------------------------------------------------- styles
#: method -> (colour, line style, marker). Families share a line style:
#: solid for backprop and the distribution-based strategies (CMA-ES, ES),
#: dashed for population methods, dotted for local search, dash-dot for random,
#: long dash-dot for the hybrids of a gradient-free method and backprop (their
#: colours from Paul Tol's muted scheme, past the eight Okabe-Ito ones).
METHOD_STYLES = {
    "backprop": ("#000000", "-", "o"),
    "cmaes": ("#0072B2", "-", "s"),
    "sep-cmaes": ("#D55E00", "-", "D"),
    "es": ("#CC79A7", "-", "v"),
    "ga": ("#E69F00", "--", "^"),
    "pso": ("#56B4E9", "--", "<"),
    "de": ("#009E73", "--", ">"),
    "anneal": ("#A08C00", ":", "p"),
    "hillclimb": ("#8C510A", ":", "h"),
    "random": ("#7F7F7F", "-.", "X"),
    "ga+bp": ("#882255", (0, (7, 2, 1, 2)), "P"),
    "cmaes+bp": ("#332288", (0, (7, 2, 1, 2)), "d"),
    "memetic": ("#117733", (0, (7, 2, 1, 2)), "8"),
    "memetic-baldwin": ("#44AA99", (0, (7, 2, 1, 2)), "H"),
}
#: method -> colour, the same in every figure
METHOD_COLOURS = {method: style[0] for method, style in METHOD_STYLES.items()}
METHOD_ORDER = tuple(METHOD_STYLES)
_FALLBACK = ("#332288", "#117733", "#44AA99", "#88CCEE", "#DDCC77", "#AA4499", "#882255")

#: losses are drawn on a log axis: values below this (exact zeros included,
#: which a float32 sigmoid + BCE reaches once it saturates) are drawn at it
LOSS_FLOOR = 1e-8
#: an R^2 axis is cut here: a poor regressor's R^2 is unbounded below
SCORE_FLOOR = -1.0
GRID_POINTS = 200

X_LABELS = {
    "fpe": "forward-pass equivalents (samples through the forward pass)",
    "seconds": "seconds of training ({device})",
    "evals": "evaluations (candidate losses; backprop: mini-batch steps)",
}
X_TITLES = {"fpe": "forward-pass equivalents", "seconds": "seconds of training",
            "evals": "evaluations"}
LOSS_NAMES = {"bce": "binary cross-entropy", "cross_entropy": "cross-entropy",
              "mse": "mean squared error"}

STYLE = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8.5,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#dddddd", "grid.linewidth": 0.5, "axes.axisbelow": True,
    "figure.labelsize": 9.5, "svg.fonttype": "path", "savefig.dpi": 150,
}


def method_style(method):
    """(colour, line style, marker) of ``method``; unknown methods get a stable extra colour."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    index = sum(map(ord, method)) % len(_FALLBACK)
    return (_FALLBACK[index], (0, (3, 1, 1, 1, 1, 1)), "*")


def method_sort_key(method):
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _line_kwargs(method, look=None):
    """Line settings of ``method``; ``look``: a (colour, line style) of a study's own
    line that is not a method of the sweep (an optimiser variant, say)."""
    colour, linestyle = look or method_style(method)[:2]
    strong = method == "backprop"
    return {"color": colour, "linestyle": linestyle, "linewidth": 2.2 if strong else 1.4,
            "zorder": 4 if strong else 3, "gid": f"method:{method}"}


def method_handle(method, label=None, marker=False, look=None):
    """A legend entry for ``method`` (the same look in every figure)."""
    kwargs = _line_kwargs(method, look)
    if marker:
        kwargs.update(marker=method_style(method)[2], markersize=5)
    return Line2D([], [], label=label or method, **kwargs)


# ------------------------------------------------------------ records
_WIDENED = re.compile(r"^(?P<base>.+)-w(?P<width>\d+)$")


def widened_name(problem):
    """``(base, width)`` for a widened problem name such as ``xor-w8``, else ``None``."""
    match = _WIDENED.match(problem)
    return (match["base"], int(match["width"])) if match else None


def problem_sort_key(problem):
    from comparisons.problems import PROBLEMS
    names = list(PROBLEMS)
    widened = widened_name(problem)
    base, width = widened if widened else (problem, -1)
    return (widened is not None, names.index(base) if base in names else len(names), base,
            width)


def usable(records):
    """Records of runs that trained (completed or diverged) and have a trace."""
    return [record for record in records
            if record.get("status") in ("completed", "diverged")
            and isinstance(record.get("trace"), dict) and record["trace"].get("fpe")]


def by_problem_and_method(records):
    """{problem: {method: [records]}}, problems and methods in display order."""
    groups = {}
    for record in records:
        groups.setdefault(record["problem"], {}).setdefault(record["method"], []).append(record)
    return {problem: {method: groups[problem][method]
                      for method in sorted(groups[problem], key=method_sort_key)}
            for problem in sorted(groups, key=problem_sort_key)}


def panel_problems(records):
    """Problems drawn as convergence panels: the base problems, or the widened
    ones when the records hold nothing else."""
    problems = sorted({record["problem"] for record in records}, key=problem_sort_key)
    base = [problem for problem in problems if widened_name(problem) is None]
    return base or problems


def column(record, name, bad=math.nan):
    """One trace column as floats; ``None`` (a non-finite value) becomes ``bad``."""
    return np.array([bad if value is None else float(value)
                     for value in record["trace"][name]], dtype=float)


def worst_value(y):
    """What a non-finite logged value stands for: the worst loss or score."""
    return -math.inf if y == "test_score" else math.inf


def loss_kind(problem):
    try:
        from comparisons.problems import get_problem
        return get_problem(problem).loss
    except Exception:  # a problem no longer registered: draw it without its name
        return None


def score_name(problem):
    return "R²" if loss_kind(problem) == "mse" else "accuracy"


# ------------------------------------------------- grids and statistics
def step_interpolate(x, y, grid):
    """The value of a step function at each grid point: ``y`` at the last ``x``
    at or before the point (``x`` sorted), NaN before the first ``x``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    grid = np.asarray(grid, dtype=float)
    index = np.searchsorted(x, grid, side="right") - 1
    values = y[np.clip(index, 0, None)] if len(y) else np.full(grid.shape, np.nan)
    return np.where(index >= 0, values, np.nan)


def log_grid(xs, points=GRID_POINTS):
    """A log-spaced grid from the smallest positive to the largest logged x."""
    positive = [x[x > 0] for x in map(np.asarray, xs)]
    positive = [x for x in positive if len(x)]
    if not positive:
        return np.array([])
    low = min(x.min() for x in positive)
    high = max(x.max() for x in positive)
    return np.geomspace(low, high, points) if high > low else np.array([low])


def quantiles(values, qs=(25, 50, 75), axis=0):
    """Percentiles ``qs`` along ``axis`` as numpy's linear method computes them,
    ignoring NaN (no value) and keeping infinities (a worst value) meaningful:
    a quantile that falls between an infinite and a finite value is infinite.

    Returns an array of shape ``(len(qs),) + the other axes``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return quantiles(values[:, None], qs)[:, 0]
    values = np.moveaxis(values, axis, 0)
    ordered = np.sort(values, axis=0)  # NaN sort last
    count = np.sum(~np.isnan(ordered), axis=0)
    results = []
    for q in qs:
        position = q / 100 * np.maximum(count - 1, 0)
        low = np.floor(position).astype(int)
        high = np.ceil(position).astype(int)
        t = position - low
        a = np.take_along_axis(ordered, low[None], 0)[0]
        b = np.take_along_axis(ordered, high[None], 0)[0]
        with np.errstate(invalid="ignore"):
            difference = b - a
            linear = np.where(t >= 0.5, b - difference * (1 - t), a + difference * t)
        value = np.where((t == 0) | (a == b), a,
                         np.where(np.isneginf(a), -math.inf,
                                  np.where(np.isposinf(b), math.inf, linear)))
        results.append(np.where(count > 0, value, np.nan))
    return np.array(results)


#: a method's summary on a grid: quartiles, number of runs, first step, last point
Curve = collections.namedtuple("Curve", "low median high runs start end")


def curves(records, x="fpe", y="train_loss", grid=None):
    """Per method, the median and interquartile range of ``y`` on a common grid.

    A run that has ended keeps its final value until the method's longest run
    ends; past that the method's curve stops (NaN). Returns
    ``(grid, {method: Curve})``; ``grid`` is log-spaced over the runs'
    positive ``x`` unless given.
    """
    groups = {}
    for record in records:
        groups.setdefault(record["method"], []).append(record)
    if grid is None:
        grid = log_grid([column(record, x) for record in records])
    result = {}
    for method in sorted(groups, key=method_sort_key):
        runs = np.array([step_interpolate(column(record, x),
                                          column(record, y, worst_value(y)), grid)
                         for record in groups[method]])
        low, median, high = quantiles(runs)
        # past the end of the method's longest run there is nothing to show
        end = max(column(record, x)[-1] for record in groups[method])
        for array in (low, median, high):
            array[grid > end] = np.nan
        # before the method's first step every run sits at its initial loss, which
        # all methods share: the band is drawn from the first step on
        start = min((x_run[x_run > 0][0] for x_run in (column(record, x)
                                                       for record in groups[method])
                     if (x_run > 0).any()), default=math.inf)
        result[method] = Curve(low, median, high, len(runs), start, end)
    return grid, result


# ------------------------------------------------------------- drawing
def _new_figure(panels, width=3.5, height=2.7, legend_width=1.3, max_columns=3):
    columns = min(max_columns, panels)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(width * columns + 0.4 + legend_width, height * rows + 0.8),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, list(axes[:panels])


def _panel_title(ax, problem, runs):
    record = runs[0]
    sizes = "-".join(map(str, record.get("sizes", [])))
    kind = loss_kind(problem)
    detail = f"{sizes}, {record.get('n_params', '?')} parameters"
    if kind:
        detail += f", {LOSS_NAMES.get(kind, kind)}"
    ax.set_title(f"{problem}\n{detail}", loc="left", fontsize=8.5)


def _finite(arrays):
    values = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.array([])
    return values[np.isfinite(values)]


def draw_curve(ax, grid, curve, method, floor=None, look=None):
    """The median as a step line and the interquartile range as a band."""
    def clip(values):
        return values if floor is None else np.maximum(values, floor)
    kwargs = _line_kwargs(method, look)
    band = grid >= curve.start
    ax.fill_between(grid, clip(curve.low), clip(curve.high), where=band,
                    color=kwargs["color"], alpha=0.1, linewidth=0,
                    zorder=kwargs["zorder"] - 2, gid=kwargs["gid"], step="post")
    ax.step(grid, clip(curve.median), where="post", **kwargs)


def _title(figure, text):
    """A figure title, broken before its parenthesis when the figure is too narrow."""
    size = matplotlib.rcParams["figure.titlesize"]
    size = matplotlib.font_manager.FontProperties(size=size).get_size_in_points()
    fits = figure.get_figwidth() * 72 / (0.55 * size)  # characters on one line
    if len(text) > fits and " (" in text:
        text = text.replace(" (", "\n(", 1)
    figure.suptitle(text)


def _device_label(records):
    devices = sorted({str(record.get("device", "cpu")).upper() for record in records})
    return " and ".join(devices) or "CPU"


def _legend(figure, methods, extra=(), marker=False, labels=None):
    handles = [method_handle(method, (labels or {}).get(method), marker=marker)
               for method in methods]
    handles += list(extra)
    figure.legend(handles=handles, loc="outside right center", ncol=1, frameon=False,
                  handlelength=2.8)


def _seeds_phrase(records):
    counts = {}
    for record in records:
        counts.setdefault((record["problem"], record["method"]), set()).add(record.get("seed"))
    sizes = sorted({len(seeds) for seeds in counts.values()})
    if not sizes:
        return "no runs"
    return (f"{sizes[0]} seeds" if len(sizes) == 1
            else f"{sizes[0]}–{sizes[-1]} seeds")


def convergence_figure(records, x="fpe"):
    """Training loss against ``x`` ("fpe", "seconds" or "evals"): one panel per
    problem, median and IQR over seeds, one line per method. ``None`` if empty."""
    return _curves_figure(records, x, "train_loss")


def test_score_figure(records):
    """Test score (accuracy, or R^2 for regression) against forward-pass equivalents."""
    return _curves_figure(records, "fpe", "test_score")


def _curves_figure(records, x, y):
    records = usable(records)
    groups = by_problem_and_method(records)
    panels = []
    for problem in panel_problems(records):
        runs = [run for method_runs in groups[problem].values() for run in method_runs]
        grid, stats = curves(runs, x, y)
        if len(grid):  # a run that logged nothing past its start has no curve
            panels.append((problem, runs, grid, stats))
    if not panels:
        return None
    with matplotlib.rc_context(STYLE):
        figure, axes = _new_figure(len(panels))
        methods = set()
        for ax, (problem, runs, grid, stats) in zip(axes, panels):
            methods.update(stats)
            _panel_title(ax, problem, runs)
            ax.set_xscale("log")
            if y == "train_loss":
                _draw_loss_panel(ax, grid, stats, runs)
            else:
                _draw_score_panel(ax, grid, stats, problem)
        methods = sorted(methods, key=method_sort_key)
        if y == "train_loss":
            target = Line2D([], [], color="#555555", linestyle=(0, (1, 2)), linewidth=1,
                            label="target loss")
            _legend(figure, methods, [target])
            figure.supylabel("training loss (gradient-free: best so far)")
            title = f"Training loss against {X_TITLES[x]}"
        else:
            _legend(figure, methods)
            title = "Test score against forward-pass equivalents"
        figure.supxlabel(X_LABELS[x].format(device=_device_label(records)))
        _title(figure, f"{title} (median and interquartile range over "
                       f"{_seeds_phrase(records)})")
    return figure


def _draw_loss_panel(ax, grid, stats, runs):
    values = _finite([array for curve in stats.values()
                      for array in (curve.low, curve.median, curve.high)])
    positive = values[values > 0]
    log_y = len(positive) > 0 and (values.min() <= 0
                                   or positive.max() / positive.min() > 20)
    floor = None
    if log_y:
        ax.set_yscale("log")
        floor = LOSS_FLOOR
    for method, curve in stats.items():
        draw_curve(ax, grid, curve, method, floor=floor)
    targets = {run.get("target_loss") for run in runs} - {None}
    for target in targets:
        ax.axhline(target, color="#555555", linestyle=(0, (1, 2)), linewidth=1, zorder=2)
    if len(grid):
        ax.set_xlim(grid[0], grid[-1])
    if log_y:
        bottom = max(positive.min(), LOSS_FLOOR) if values.min() > 0 else LOSS_FLOOR
        ax.set_ylim(bottom / 1.6, values.max() * 1.6)


def _draw_score_panel(ax, grid, stats, problem):
    is_r2 = score_name(problem) == "R²"
    floor = SCORE_FLOOR if is_r2 else None
    for method, curve in stats.items():
        draw_curve(ax, grid, curve, method, floor=floor)
    values = _finite([array for curve in stats.values()
                      for array in (curve.low, curve.median, curve.high)])
    if len(grid):
        ax.set_xlim(grid[0], grid[-1])
    if len(values):
        low = max(values.min(), SCORE_FLOOR) if is_r2 else max(values.min(), 0)
        high = 1.0 if values.max() <= 1 else values.max()
        pad = 0.04 * (high - low or 1)
        ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel(f"test {score_name(problem)}", fontsize=8)


# -------------------------------------------------------------- scaling
def scaling_points(records):
    """For widened problems: ``{base: {method: rows}}``, one row per width:
    ``(width, n_params, budget, q25, median, q75, reached, runs)`` of the FPE
    to reach the target, a run that never reached it counting as infinite."""
    groups = {}
    for record in usable(records):
        widened = widened_name(record["problem"])
        if widened:
            base, width = widened
            groups.setdefault(base, {}).setdefault(record["method"], {}) \
                .setdefault(width, []).append(record)
    result = {}
    for base in sorted(groups, key=problem_sort_key):
        result[base] = {}
        for method in sorted(groups[base], key=method_sort_key):
            rows = []
            for width in sorted(groups[base][method]):
                runs = groups[base][method][width]
                fpe = np.array([run["fpe_to_target"]["fpe"] if run.get("fpe_to_target")
                                else math.inf for run in runs], dtype=float)
                low, median, high = quantiles(fpe[:, None])[:, 0]
                rows.append((width, runs[0]["n_params"], max(run["budget"] for run in runs),
                             low, median, high, int(np.isfinite(fpe).sum()), len(runs)))
            result[base][method] = rows
    return result


def scaling_figure(records):
    """FPE to reach the target loss against the number of parameters, for the
    widened problems; ``None`` when the records hold no widened runs."""
    points = scaling_points(records)
    if not points:
        return None
    with matplotlib.rc_context(STYLE):
        figure, axes = _new_figure(len(points), width=4.6, height=3.6, legend_width=2.9,
                                   max_columns=2)
        labels = {}
        methods = set()
        for ax, (base, per_method) in zip(axes, points.items()):
            _draw_scaling_panel(ax, base, per_method)
            for method, rows in per_method.items():
                methods.add(method)
                reached = sum(row[6] for row in rows)
                total = sum(row[7] for row in rows)
                labels[method] = labels.get(method, (0, 0))
                labels[method] = (labels[method][0] + reached, labels[method][1] + total)
        methods = sorted(methods, key=method_sort_key)
        text = {method: f"{method} ({labels[method][0]}/{labels[method][1]} reached)"
                for method in methods}
        extra = [Line2D([], [], color="#888888", marker="o", markerfacecolor="white",
                        linestyle="none", label="not reached by most runs (at the budget)"),
                 Line2D([], [], color="#999999", linestyle="--", linewidth=1,
                        label="budget")]
        _legend(figure, methods, extra, marker=True, labels=text)
        figure.supxlabel("parameters in the network (widened hidden layers)")
        figure.supylabel("forward-pass equivalents to reach the target loss")
        _title(figure, "Cost to reach the target loss as the network widens "
                       f"(median and interquartile range over {_seeds_phrase(records)})")
    return figure


def _draw_scaling_panel(ax, base, per_method):
    ax.set_xscale("log")
    ax.set_yscale("log")
    methods = list(per_method)
    all_rows = [row for rows in per_method.values() for row in rows]
    budgets = {}
    for row in all_rows:
        budgets[row[1]] = max(budgets.get(row[1], 0), row[2])
    sizes = sorted(budgets)
    ax.plot(sizes, [budgets[size] for size in sizes], color="#999999", linestyle="--",
            linewidth=1, zorder=1)
    for index, method in enumerate(methods):
        rows = per_method[method]
        # dodge the methods apart along x (log scale) so that bars do not overlap
        shift = 10 ** (0.018 * (index - (len(methods) - 1) / 2))
        colour, _, marker = method_style(method)
        kwargs = _line_kwargs(method)
        x = np.array([row[1] * shift for row in rows], dtype=float)
        budget = np.array([row[2] for row in rows], dtype=float)
        low, median, high = (np.array([row[k] for row in rows], dtype=float)
                             for k in (3, 4, 5))
        reached = np.isfinite(median)
        if reached.any():
            top = np.minimum(high, budget)
            ax.errorbar(x[reached], median[reached],
                        yerr=[median[reached] - low[reached], top[reached] - median[reached]],
                        fmt="none", ecolor=colour, elinewidth=1, capsize=2.5,
                        zorder=kwargs["zorder"], gid=kwargs["gid"])
            ax.plot(x[reached], median[reached], marker=marker, markersize=5,
                    **kwargs)
        if (~reached).any():
            ax.plot(x[~reached], budget[~reached], linestyle="none", marker=marker,
                    markersize=6, markerfacecolor="white", markeredgecolor=colour,
                    markeredgewidth=1.2, zorder=kwargs["zorder"], gid=kwargs["gid"])
    ax.set_title(f"{base}, hidden layers widened", loc="left", fontsize=9)
    if sizes:
        ax.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(sizes, [str(size) for size in sizes])
        widths = {}
        for row in all_rows:
            widths[row[1]] = row[0]
        top = ax.secondary_xaxis("top")
        top.set_xticks(sizes, [str(widths[size]) for size in sizes])
        top.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        top.set_xlabel("hidden units per layer", fontsize=8)
    ax.grid(True, which="major")


# --------------------------------------------------------------- saving
def save(figure, out_dir, name):
    """Write ``figure`` as out_dir/figures/NAME.png and .svg; return both paths."""
    directory = os.path.join(out_dir, "figures")
    os.makedirs(directory, exist_ok=True)
    paths = []
    with matplotlib.rc_context(STYLE):
        for extension, metadata in (("png", {"Software": None}),
                                    ("svg", {"Date": None, "Creator": None})):
            path = os.path.join(directory, f"{name}.{extension}")
            temporary = f"{path}.tmp-{os.getpid()}"
            figure.savefig(temporary, format=extension, dpi=150, metadata=metadata)
            os.replace(temporary, path)
            paths.append(path)
    return paths


def remove(out_dir, name):
    """Delete a figure left by an earlier report that this one leaves out."""
    for extension in ("png", "svg"):
        path = os.path.join(out_dir, "figures", f"{name}.{extension}")
        if os.path.exists(path):
            os.remove(path)


def _plot(figure, out_dir, name):
    if figure is None:
        remove(out_dir, name)
        return None
    return save(figure, out_dir, name)


def plot_convergence(records, out_dir, x="fpe"):
    """``convergence_{x}`` (x: fpe, seconds, evals); the PNG and SVG paths or ``None``."""
    return _plot(convergence_figure(records, x), out_dir, f"convergence_{x}")


def plot_test_score(records, out_dir):
    return _plot(test_score_figure(records), out_dir, "test_score_fpe")


def plot_scaling(records, out_dir):
    return _plot(scaling_figure(records), out_dir, "scaling")


#: figure name -> function(records, out_dir), in report order
FIGURES = {
    "convergence_fpe": lambda records, out_dir: plot_convergence(records, out_dir, "fpe"),
    "convergence_seconds": lambda records, out_dir: plot_convergence(records, out_dir,
                                                                      "seconds"),
    "convergence_evals": lambda records, out_dir: plot_convergence(records, out_dir, "evals"),
    "test_score_fpe": plot_test_score,
    "scaling": plot_scaling,
}
