"""How good is a gradient-free step? The cosine between a search update and -gradient.

At every generation of ES, CMA-ES and sep-CMA-ES training a network, the
update of the search distribution's mean (after ``tell`` minus before) is
compared with the negative true gradient of the full training loss at the
mean before the update (backprop, ``Network.loss_and_grad``). For ES the
cosine of its raw estimate g (Salimans et al. 2017: an estimate of the
gradient of the Gaussian-smoothed loss, before Adam turns it into a step) is
recorded too.

Baseline: for a direction drawn uniformly on the sphere in D dimensions, the
mean |cosine| with any fixed vector is Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2)),
about sqrt(2 / (pi D)) for large D (the first coordinate of a uniform unit
vector has density proportional to (1 - t^2)^((D-3)/2)).
"""
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from comparisons import plots
from comparisons.problems import get_problem
from comparisons.runs import METHOD_OPTIONS
from comparisons.trainers import get_trainer
from comparisons.trainers.cmaes import CMAES
from comparisons.trainers.es import ES, gradient_estimate
from fastnet._checks import check_int

NAME = "step_cosine"
TITLE = "How good is a gradient-free step? Its cosine with the true gradient"

PROBLEM = "iris"
METHODS = ("es", "cmaes", "sep-cmaes")
#: ES's raw gradient estimate, drawn and summarised beside its Adam update
ES_ESTIMATE = "es-estimate"
GENERATIONS = {True: 40, False: 600}


def cosine(a, b):
    """a . b / (|a| |b|) of two vectors of the same length; NaN if either is zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be vectors of the same length, got shapes {a.shape} "
                         f"and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite")
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else math.nan


def random_abs_cosine(dim):
    """Mean |cosine| between a uniformly random direction and a fixed one in
    ``dim`` dimensions: Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2))."""
    dim = check_int("dim", dim)
    return math.exp(math.lgamma(dim / 2) - math.lgamma((dim + 1) / 2)) / math.sqrt(math.pi)


def random_abs_cosine_approx(dim):
    """sqrt(2 / (pi D)), the large-D limit of ``random_abs_cosine``."""
    return math.sqrt(2 / (math.pi * check_int("dim", dim)))


def linear_estimate_cosine(directions, dim):
    """Expected cosine, for a linear loss with gradient v, between v and the
    finite-difference estimate g = sum_i (eps_i . v) eps_i from ``directions``
    Gaussian directions in ``dim`` dimensions: E[g . v] = n |v|^2 and
    E|g|^2 = n (n + D + 1) |v|^2 (as E[(eps . v)^2 |eps|^2] = (D + 2) |v|^2),
    so cos ~ sqrt(n / (n + D + 1)) (ratio of expectations, for large n or D)."""
    n, dim = check_int("directions", directions), check_int("dim", dim)
    return math.sqrt(n / (n + dim + 1))


def search_mean(trainer):
    """The centre of the trainer's search distribution (a view: do not modify).
    ES keeps it as ``theta``, CMA-ES and sep-CMA-ES as ``mean``."""
    if isinstance(trainer, ES):
        return trainer.theta
    if isinstance(trainer, CMAES):
        return trainer.mean
    raise ValueError(f"trainer must be ES, CMA-ES or sep-CMA-ES, got {type(trainer).__name__}")


def running_median(values, window):
    """Median of the ``window`` values centred on each point (fewer at the ends), NaN ignored."""
    values = np.asarray(values, dtype=np.float64)
    half = check_int("window", window) // 2
    medians = np.full(values.size, np.nan)
    for i in range(values.size):
        part = values[max(0, i - half):i + half + 1]
        if np.isfinite(part).any():
            medians[i] = np.nanmedian(part)
    return medians


def trace(method, net, X, Y, generations, seed):
    """Per generation: the loss at the mean, the cosine of the mean's update with
    -gradient, and for ES the cosine of its raw estimate's step -g."""
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=seed,
                                  **METHOD_OPTIONS[method])
    losses, cosines, estimate_cosines = [], [], []
    for _ in range(generations):
        before = search_mean(trainer).copy()
        loss, grad = net.loss_and_grad(X, Y, params=before)
        candidates = trainer.ask()
        candidate_losses = net.population_loss(candidates, X, Y)
        if method == "es":
            estimate = gradient_estimate(trainer.eps, candidate_losses, trainer.sigma0)
            estimate_cosines.append(cosine(-estimate, -grad))
        trainer.tell(candidate_losses)
        losses.append(float(loss))
        cosines.append(cosine(search_mean(trainer) - before, -grad))
    return {"losses": losses, "cosines": cosines, "estimate_cosines": estimate_cosines,
            "popsize": trainer.popsize, "sigma0": trainer.sigma0}


def summary(cosines, fifth):
    """Median, quartiles, mean |cosine| and share of positive cosines over all
    generations, and the median over the first and last ``fifth`` of them."""
    values = np.asarray(cosines, dtype=np.float64)
    q25, median, q75 = np.nanpercentile(values, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75),
            "mean_abs": float(np.nanmean(np.abs(values))),
            "fraction_positive": float(np.mean(values[np.isfinite(values)] > 0)),
            "median_first_fifth": float(np.nanmedian(values[:fifth])),
            "median_last_fifth": float(np.nanmedian(values[-fifth:])),
            "cosines": [float(v) for v in values]}


def run(quick, seed):
    seed = check_int("seed", seed, minimum=0)
    generations = GENERATIONS[bool(quick)]
    problem = get_problem(PROBLEM)
    # float64: near a minimum the float32 gradient is mostly rounding
    net = problem.network(seed=seed).copy(dtype=np.float64)
    X, Y = problem.data(seed=0)[:2]
    fifth = max(1, generations // 5)
    methods = {}
    for method in METHODS:
        traced = trace(method, net, X, Y, generations, seed)
        methods[method] = {**summary(traced["cosines"], fifth), "losses": traced["losses"],
                           "final_loss": traced["losses"][-1], "popsize": traced["popsize"],
                           "sigma0": traced["sigma0"]}
        if method == "es":
            methods[ES_ESTIMATE] = summary(traced["estimate_cosines"], fifth)
    result = {"problem": PROBLEM, "sizes": list(net.sizes), "D": net.n_params,
              "n_train": len(X), "generations": generations, "fifth": fifth,
              "window": max(3, generations // 25) | 1,
              "baseline": random_abs_cosine(net.n_params),
              "baseline_approx": random_abs_cosine_approx(net.n_params),
              "es_linear_cosine": linear_estimate_cosine(methods["es"]["popsize"] // 2,
                                                         net.n_params),
              "methods": methods}
    return result, {NAME: figure(result)}


# ------------------------------------------------------------------ figure
def _style(series):
    colour, linestyle, _ = plots.method_style("es" if series == ES_ESTIMATE else series)
    return colour, ":" if series == ES_ESTIMATE else linestyle


def _label(series, result):
    if series == ES_ESTIMATE:
        return "es: raw estimate -g (before Adam)"
    return f"{series}: mean update (popsize {result['methods'][series]['popsize']})"


def figure(result):
    """Cosine per generation (faint) with its running median, and the loss at the mean."""
    generations = np.arange(1, result["generations"] + 1)
    with matplotlib.rc_context(plots.STYLE):
        fig = Figure(figsize=(10, 4.4), layout="constrained")
        ax_cos, ax_loss = fig.subplots(1, 2)
        baseline = result["baseline"]
        ax_cos.axhspan(-baseline, baseline, color="#cccccc", alpha=0.5, zorder=1,
                       label=f"random direction: mean |cos| = {baseline:.3f}")
        ax_cos.axhline(0, color="#888888", linewidth=0.6, zorder=1)
        for series, entry in result["methods"].items():
            colour, linestyle = _style(series)
            gid = f"method:{series}"
            ax_cos.plot(generations, entry["cosines"], color=colour, linewidth=0.5,
                        alpha=0.3, gid=gid)
            ax_cos.plot(generations, running_median(entry["cosines"], result["window"]),
                        color=colour, linestyle=linestyle, linewidth=1.8, gid=gid,
                        label=_label(series, result))
            if "losses" in entry:
                ax_loss.plot(generations, np.maximum(entry["losses"], plots.LOSS_FLOOR),
                             color=colour, linestyle=linestyle, linewidth=1.4, gid=gid,
                             label=series)
        ax_cos.set_ylim(-1, 1)
        ax_cos.set_xlabel("generation")
        ax_cos.set_ylabel("cos(update, -gradient)")
        ax_cos.set_title(f"(a) cosine per generation (faint) and its running median over "
                         f"{result['window']} generations")
        ax_cos.legend(loc="lower left", fontsize=7.5)
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("generation")
        ax_loss.set_ylabel(f"training cross-entropy at the search mean\n(below "
                           f"{plots.LOSS_FLOOR:g} drawn at {plots.LOSS_FLOOR:g})")
        ax_loss.set_title("(b) training loss at the mean")
        ax_loss.legend(loc="upper right")
        fig.suptitle(f"Gradient-free steps against the gradient: {result['problem']} "
                     f"{'-'.join(map(str, result['sizes']))} network, D = {result['D']}")
    return fig


# ----------------------------------------------------------------- section
def _quartiles(entry):
    return (f"{entry['median']:.2f} (quartiles {entry['q25']:.2f} to {entry['q75']:.2f}, "
            f"positive in {entry['fraction_positive']:.0%} of generations)")


def _phases(entry):
    return (f"{entry['median_first_fifth']:.2f} in the first fifth of the run and "
            f"{entry['median_last_fifth']:.2f} in the last")


def section(result):
    m = result["methods"]
    es, estimate, cma, sep = m["es"], m[ES_ESTIMATE], m["cmaes"], m["sep-cmaes"]
    baseline = result["baseline"]
    return [
        f"At each of {result['generations']} generations, the update of the search mean "
        f"(after tell minus before) of ES, CMA-ES and sep-CMA-ES training the "
        f"{result['problem']} network ({'-'.join(map(str, result['sizes']))}, "
        f"D = {result['D']} parameters, {result['n_train']} training samples, the "
        "comparison's options) is compared with the negative gradient of the full "
        "training loss at the mean before the update, computed by backprop. A random "
        f"direction's mean |cosine| with a fixed vector is {baseline:.3f} in "
        f"D = {result['D']} (Γ(D/2)/(√π Γ((D+1)/2)); √(2/(πD)) = "
        f"{result['baseline_approx']:.3f}), and its signed cosine has median 0. Median "
        f"cosines over the run: ES's Adam update {_quartiles(es)}; ES's raw estimate -g "
        f"{_quartiles(estimate)}; CMA-ES {_quartiles(cma)}; sep-CMA-ES {_quartiles(sep)}. "
        "Mean |cosine| in multiples of a random direction's: ES update "
        f"{es['mean_abs'] / baseline:.1f}, ES estimate {estimate['mean_abs'] / baseline:.1f}, "
        f"CMA-ES {cma['mean_abs'] / baseline:.1f}, sep-CMA-ES {sep['mean_abs'] / baseline:.1f}.",
        "",
        "ES's g estimates the gradient of the loss smoothed by its Gaussian "
        f"(σ = {es['sigma0']:g}) from {es['popsize'] // 2} mirrored pairs of samples; on a "
        f"linear loss such an estimate from n = {es['popsize'] // 2} directions has cosine "
        f"about √(n/(n+D+1)) = {result['es_linear_cosine']:.2f} with the gradient (before "
        f"ES's rank shaping). Measured: {_phases(estimate)}. Adam's momentum averages the "
        f"estimates of successive generations; its update's median is {_phases(es)}. "
        "CMA-ES moves its mean to a weighted average of its best samples, drawn at the "
        f"step size σ it adapts (σ0 = {cma['sigma0']:g}), {cma['popsize']} of them in "
        f"{result['D']} dimensions: a direction of descent at that scale plus sampling "
        "noise, which the local gradient at the mean need not point along; its median is "
        f"{_phases(cma)} (sep-CMA-ES: {_phases(sep)}). Panel (b) shows the phase of "
        f"training: the loss at the mean goes from {es['losses'][0]:.3g} to "
        f"{es['final_loss']:.3g} (ES), {cma['final_loss']:.3g} (CMA-ES) and "
        f"{sep['final_loss']:.3g} (sep-CMA-ES) in the same number of generations.",
        "",
        f"![Cosine between each method's search-mean update and the negative gradient, per "
        f"generation, with the random-direction band; and the training loss at the "
        f"mean](figures/{NAME}.png)",
    ]
