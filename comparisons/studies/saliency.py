"""Which weights and which pixels matter, for backprop's and the GA's digits networks.

The 64-32-10 ReLU network of problem 'digits' (8x8 images) is trained from
the same initial parameters by backprop (Adam) and by the GA (the sweep's
settings, ``comparisons.runs.METHOD_OPTIONS``). For each trained network:

* input saliency (``comparisons.attribution.input_saliency``): mean |dL/dx|
  over the test images of each class, drawn as 8x8 maps, with how
  concentrated it is (share in the central 4x4 pixels; Gini coefficient over
  the 64 pixels) and how alike the two networks' maps are (Pearson r);
* weight attribution |dL/dw * w| on the training set, against |w| and a
  random order as the pruning criterion: test accuracy after zeroing the
  lowest-scored fraction of the weights, one-shot (no retraining, biases
  kept), and the largest fraction that costs at most ``TOLERANCE`` accuracy.
"""
import time

import matplotlib
import numpy as np
import scipy.stats
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import fastnet
from comparisons import attribution, plots
from comparisons.budget import BACKPROP_FPE_PER_SAMPLE
from comparisons.optimize import minimize
from comparisons.problems import get_problem
from comparisons.runs import BACKPROP_OPTIONS, METHOD_OPTIONS

NAME = "saliency"
TITLE = "Which weights and pixels matter: backprop's and the GA's digits networks"

PROBLEM = "digits"
METHODS = ("backprop", "ga")
CRITERIA = ("attribution", "magnitude", "random")
#: a criterion may prune while test accuracy stays within this of the unpruned network's
TOLERANCE = 0.01
SETTINGS = {
    False: {"epochs": 20, "ga_evals": 70_000, "random_orders": 5,
            "fractions": np.round(np.linspace(0, 0.95, 20), 3)},
    True: {"epochs": 5, "ga_evals": 1_000, "random_orders": 2,
           "fractions": np.round(np.linspace(0, 0.9, 7), 3)},
}
IMAGE_SIDE = 8
#: the central 4x4 of the 8x8 image (16 of 64 pixels: a uniform map puts 25% there)
CENTRE = np.zeros((IMAGE_SIDE, IMAGE_SIDE), bool)
CENTRE[2:6, 2:6] = True
CRITERION_STYLES = {"attribution": ("-", "o", "|dL/dw x w| (attribution)"),
                    "magnitude": ("--", "s", "|w| (magnitude)"),
                    "random": (":", None, "random order (mean, band: min-max)")}


# ------------------------------------------------------------------ training
def _train_backprop(problem, data, seed, epochs):
    net = problem.network(seed=seed)
    X, y = data[0], data[1]
    options = dict(BACKPROP_OPTIONS)
    batch_size = options.pop("batch_size")
    start = time.perf_counter()
    net.fit(X, y, optimizer=fastnet.Adam(**options), epochs=epochs, batch_size=batch_size,
            seed=seed)
    return net.params.astype(np.float64), {
        "epochs": epochs, "fpe": BACKPROP_FPE_PER_SAMPLE * len(X) * epochs,
        "seconds": time.perf_counter() - start}


def _train_ga(problem, data, seed, evaluations):
    net = problem.network(seed=seed)
    X, Y = data[0], net.targets(data[1])
    start = time.perf_counter()
    found = minimize(lambda thetas: net.population_loss(thetas, X, Y), net.params,
                     method="ga", max_evals=evaluations, seed=seed, vectorized=True,
                     **METHOD_OPTIONS["ga"])
    return np.asarray(found.x, np.float64), {
        "evaluations": found.nfev, "generations": found.nit, "fpe": found.nfev * len(X),
        "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- measures
def class_maps(values, labels, n_classes):
    """Per class, the mean of ``values``' rows of that class: (n_classes, n_inputs)."""
    return np.stack([values[labels == c].mean(axis=0) for c in range(n_classes)])


def gini(values):
    """Gini coefficient of non-negative values: 0 when all are equal, towards 1 when
    one holds everything; G = sum_ij |a_i - a_j| / (2 n^2 mean)."""
    values = np.asarray(values, np.float64).ravel()
    return float(np.abs(values[:, None] - values[None, :]).sum()
                 / (2 * values.size ** 2 * values.mean()))


def prunable_fraction(fractions, scores, tolerance=TOLERANCE):
    """The largest fraction before the first one whose score falls more than
    ``tolerance`` below the unpruned score (``fractions[0]`` must be 0)."""
    largest = fractions[0]
    for fraction, score in zip(fractions, scores):
        if score < scores[0] - tolerance:
            break
        largest = fraction
    return float(largest)


def _pruning(net, data, params, fractions, random_orders, rng):
    """Test-accuracy curves per criterion; random: mean, min and max over orders."""
    X, y, X_test, y_test = data
    scores = {"attribution": attribution.weight_attribution(net, X, y, params),
              "magnitude": np.abs(params)}
    curves = {name: attribution.pruning_curve(net, X_test, y_test, params, score,
                                              fractions)["score"]
              for name, score in scores.items()}
    random = np.array([attribution.pruning_curve(net, X_test, y_test, params,
                                                 rng.random(net.n_params), fractions)["score"]
                       for _ in range(random_orders)])
    curves.update(random=random.mean(axis=0).tolist(), random_low=random.min(axis=0).tolist(),
                  random_high=random.max(axis=0).tolist())
    weights = attribution.weight_mask(net)
    rho = scipy.stats.spearmanr(scores["attribution"][weights], scores["magnitude"][weights])[0]
    return curves, float(rho)


# --------------------------------------------------------------------- run
def _measure(net, data, params, settings, rng):
    """(every number of one trained network, its per-class saliency maps)."""
    X, y, X_test, y_test = data
    n_classes = net.n_outputs
    start = time.perf_counter()
    saliency = np.abs(attribution.input_saliency(net, X_test, y_test, params))
    saliency_seconds = time.perf_counter() - start
    maps = class_maps(saliency, y_test, n_classes)
    overall = saliency.mean(axis=0)
    class_losses = [net.loss(X_test[y_test == c], y_test[y_test == c], params)
                    for c in range(n_classes)]
    fractions = [float(f) for f in settings["fractions"]]
    curves, rho = _pruning(net, data, params, fractions, settings["random_orders"], rng)
    return {"test_accuracy": net.score(X_test, y_test, params),
            "train_loss": net.loss(X, y, params), "test_loss": net.loss(X_test, y_test, params),
            "saliency_seconds": saliency_seconds,
            "central_share": float(overall[CENTRE.ravel()].sum() / overall.sum()),
            "gini": gini(overall), "attribution_magnitude_spearman": rho,
            "class_test_loss": class_losses,
            "class_saliency_vs_loss_r": float(np.corrcoef(maps.mean(axis=1),
                                                          class_losses)[0, 1]),
            "pruning": curves,
            "prunable_fraction": {c: prunable_fraction(fractions, curves[c])
                                  for c in CRITERIA}}, maps


def run(quick, seed):
    settings = SETTINGS[bool(quick)]
    problem = get_problem(PROBLEM)
    data = problem.data(seed=0)
    X_test, y_test = data[2], data[3]
    net = problem.network(seed=seed)
    trained = {"backprop": _train_backprop(problem, data, seed, settings["epochs"]),
               "ga": _train_ga(problem, data, seed, settings["ga_evals"])}
    rng = np.random.default_rng(seed)
    result = {"problem": PROBLEM, "sizes": list(net.sizes),
              "n_weights": int(attribution.weight_mask(net).sum()), "n_test": len(X_test),
              "tolerance": TOLERANCE, "fractions": [float(f) for f in settings["fractions"]],
              "uniform_central_share": float(CENTRE.mean()), "methods": {}}
    maps = {}
    for method, (params, budget) in trained.items():
        entry, maps[method] = _measure(net, data, params, settings, rng)
        result["methods"][method] = {"budget": budget, **entry}
    per_class = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(maps["backprop"], maps["ga"])]
    result.update(
        saliency_correlation=float(np.corrcoef(maps["backprop"].ravel(),
                                               maps["ga"].ravel())[0, 1]),
        saliency_correlation_per_class=per_class,
        saliency_correlation_within_class_mean=float(np.mean(per_class)))
    class_means = class_maps(X_test, y_test, net.n_outputs)
    return result, {f"{NAME}_maps": saliency_figure(maps, class_means),
                    f"{NAME}_pruning": pruning_figure(result)}


# ----------------------------------------------------------------- figures
def _image(ax, values, vmin, vmax, cmap):
    image = ax.imshow(values.reshape(IMAGE_SIDE, IMAGE_SIDE), vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return image


def saliency_figure(maps, class_means):
    """Rows: the class mean image, then per method the mean |dL/dx| map of each class."""
    n_classes = len(class_means)
    rows = [("class mean\n(test images)", class_means, "Greys",
             "mean pixel value\n(standardised)", "black")]
    rows += [(method, maps[method], "magma", "mean |dL/dx|\n(loss per pixel s.d.)",
              plots.method_style(method)[0]) for method in METHODS]
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(11.5, 4.3), layout="constrained")
        axes = figure.subplots(len(rows), n_classes)
        for row, (label, values, cmap, unit, colour) in zip(axes, rows):
            low = 0.0 if cmap == "magma" else float(values.min())
            for digit, ax in enumerate(row):
                image = _image(ax, values[digit], low, float(values.max()), cmap)
            row[0].set_ylabel(label, color=colour, fontweight="bold")
            figure.colorbar(image, ax=list(row), shrink=0.9, pad=0.01, label=unit)
        for digit, ax in enumerate(axes[0]):
            ax.set_title(f"digit {digit}")
        figure.suptitle("Input saliency on 8x8 digits: mean |dL/dx| over each class's test "
                        "images (colour scale shared within a row)")
    return figure


def pruning_figure(result):
    """Test accuracy vs fraction of weights removed, one panel per network."""
    fractions = 100 * np.asarray(result["fractions"])
    with matplotlib.rc_context(plots.STYLE):
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        axes = figure.subplots(1, len(METHODS), sharey=True)
        for ax, method in zip(axes, METHODS):
            entry = result["methods"][method]
            colour = plots.method_style(method)[0]
            curves = entry["pruning"]
            for criterion in CRITERIA:
                linestyle, marker, _ = CRITERION_STYLES[criterion]
                ax.plot(fractions, 100 * np.asarray(curves[criterion]), color=colour,
                        linestyle=linestyle, marker=marker, markersize=3.5, linewidth=1.6,
                        gid=f"method:{method}")
            ax.fill_between(fractions, 100 * np.asarray(curves["random_low"]),
                            100 * np.asarray(curves["random_high"]), color=colour, alpha=0.15,
                            linewidth=0)
            ax.axhline(100 * (curves["attribution"][0] - result["tolerance"]), color="#888888",
                       linewidth=0.8, linestyle=(0, (4, 2)))
            ax.set_title(f"{method}: {100 * entry['test_accuracy']:.1f}% unpruned", color=colour)
            ax.set_xlabel("weights removed (% of the weights, lowest score first)")
        axes[0].set_ylabel("test accuracy (%)")
        handles = [Line2D([], [], color="#444444", linestyle=style[0],
                                           marker=style[1], markersize=3.5, label=style[2])
                   for style in CRITERION_STYLES.values()]
        handles.append(Line2D(
            [], [], color="#888888", linewidth=0.8, linestyle=(0, (4, 2)),
            label=f"unpruned - {100 * result['tolerance']:g} point"))
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))
        figure.suptitle(f"One-shot pruning of the {'-'.join(map(str, result['sizes']))} "
                        "digits networks (biases kept, no retraining)")
    return figure


# ----------------------------------------------------------------- section
def _percent(value):
    return f"{100 * value:.1f}%"


def section(result):
    bp, ga = result["methods"]["backprop"], result["methods"]["ga"]
    prune = {m: {c: _percent(result["methods"][m]["prunable_fraction"][c]) for c in CRITERIA}
             for m in METHODS}
    per_class = result["saliency_correlation_per_class"]
    return [
        f"Both networks are the {'-'.join(map(str, result['sizes']))} ReLU network of problem "
        f"'{result['problem']}', from the same initial parameters. Backprop (Adam, "
        f"{bp['budget']['epochs']} epochs, {bp['budget']['fpe']:,} forward-pass equivalents, "
        f"{bp['budget']['seconds']:.2g} s) reaches {_percent(bp['test_accuracy'])} test "
        f"accuracy; the GA ({ga['budget']['generations']:,} generations, "
        f"{ga['budget']['evaluations']:,} evaluations = {ga['budget']['fpe']:,} forward-pass "
        f"equivalents, {ga['budget']['seconds']:.2g} s) reaches "
        f"{_percent(ga['test_accuracy'])} (training loss {ga['train_loss']:.3f} against "
        f"backprop's {bp['train_loss']:.3f}).",
        "",
        "The saliency maps show which pixels the loss is sensitive to: the mean |dL/dx| over "
        f"the {result['n_test']} test images of each class, with respect to standardised "
        "pixels. A class's brightness follows its test loss (a confidently classified image "
        "has a near-zero loss gradient): across the 10 classes the mean saliency correlates "
        f"with the class's test loss with r = {bp['class_saliency_vs_loss_r']:.2f} for "
        f"backprop and r = {ga['class_saliency_vs_loss_r']:.2f} for the GA. The central 4x4 "
        f"pixels hold {_percent(bp['central_share'])} of backprop's saliency and "
        f"{_percent(ga['central_share'])} of the GA's ({_percent(result['uniform_central_share'])}"
        f" if it were uniform); the Gini coefficient over the 64 pixels is "
        f"{bp['gini']:.2f} for backprop and {ga['gini']:.2f} for the GA. Pooled over the 640 "
        f"class-pixel values, the two networks' maps correlate with "
        f"r = {result['saliency_correlation']:.2f}, which mostly reflects which classes both "
        "find hard; within a class the pixel patterns correlate with r = "
        f"{result['saliency_correlation_within_class_mean']:.2f} on average (from "
        f"{min(per_class):.2f} to {max(per_class):.2f}).",
        "",
        "![Input saliency per class for backprop and the GA](figures/saliency_maps.png)",
        "",
        "Pruning asks the same question of the weights: the lowest-scored fraction of the "
        f"{result['n_weights']:,} weights is set to zero (biases kept, no retraining), scored "
        "by the attribution |dL/dw x w| on the training set (the first-order estimate of the "
        "loss change when a weight is removed), by |w|, or in random order. Before test "
        f"accuracy drops by more than {100 * result['tolerance']:g} point, backprop's network "
        f"loses {prune['backprop']['attribution']} of its weights by attribution, "
        f"{prune['backprop']['magnitude']} by magnitude and {prune['backprop']['random']} "
        f"in random order; the GA's loses {prune['ga']['attribution']}, "
        f"{prune['ga']['magnitude']} and {prune['ga']['random']} (fractions on a grid of "
        f"step {100 * (result['fractions'][1] - result['fractions'][0]):.0f}%). The rank "
        "correlation between attribution and |w| is "
        f"{bp['attribution_magnitude_spearman']:.2f} for backprop and "
        f"{ga['attribution_magnitude_spearman']:.2f} for the GA. The attribution uses the "
        f"mean training gradient, which at backprop's training loss of {bp['train_loss']:.3g} "
        "is close to zero: there the first-order term is least informative, which is why "
        "Optimal Brain Damage uses the second-order one.",
        "",
        "![Test accuracy after pruning by attribution, magnitude and random order]"
        "(figures/saliency_pruning.png)",
    ]
