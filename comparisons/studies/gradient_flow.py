"""Gradient flow: per-layer gradient norms of deep networks, vanishing and exploding.

Four settings of one deep network on the 'digits' data, trained by plain SGD:

* sigmoid units with the naive initialisation U(+-1/sqrt(fan_in)) (Glorot &
  Bengio 2010, eq. 1): each hidden layer multiplies the backpropagated error
  by about sigma'(0) sqrt(fan_out Var(W)) = (1/4) sqrt(1/3) (a mean-field
  estimate for equal widths and small pre-activations), so the first layers
  get almost no gradient;
* ReLU units with He initialisation (He et al. 2015), which keeps that factor
  near 1;
* the naive sigmoid network with batch normalisation (Ioffe & Szegedy 2015);
* ReLU + He with every weight scaled up by ``INIT_SCALE``: the activations
  and the errors both grow layer by layer, the gradients are huge and SGD
  diverges, unless the gradient is clipped by its global norm (Pascanu,
  Mikolov & Bengio 2013), which bounds every step to lr * clip_norm.

The first three train with ``fit`` and ``fastnet.callbacks.GradientNorms``;
the exploding pair trains step by step with ``StepTrainer`` on the same
batches, recording each batch's raw gradient norm and the size of the step
actually taken.
"""
import dataclasses
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import fastnet
from comparisons import plots
from fastnet._checks import check_int
from fastnet.callbacks import GradientNorms

NAME = "gradient_flow"
TITLE = "Gradient flow: vanishing and exploding gradients in deep networks"

DATASET = "digits"
LEARNING_RATE = 0.1
BATCH_SIZE = 32
PROBE_SIZE = 256
CLIP_NORM = 1.0
INIT_SCALE = 1.5
#: (hidden layers, width, epochs)
SIZES = {True: (8, 32, 3), False: (10, 48, 40)}


@dataclasses.dataclass(frozen=True)
class Setting:
    label: str
    activation: str
    init: str
    colour: str
    batch_norm: bool = False
    init_scale: float = 1.0
    clip_norm: float = None


#: Paul Tol's muted colours: these are settings of backprop, not methods
SETTINGS = {
    "sigmoid": Setting("sigmoid, naive init", "sigmoid", "standard", "#882255"),
    "relu_he": Setting("ReLU, He init", "relu", "he", "#332288"),
    "sigmoid_bn": Setting("sigmoid, naive init + batch norm", "sigmoid", "standard", "#117733",
                          batch_norm=True),
    "exploding": Setting(f"ReLU, He init x {INIT_SCALE:g}", "relu", "he", "#AA4499",
                         init_scale=INIT_SCALE),
    "clipped": Setting(f"ReLU, He init x {INIT_SCALE:g}, clipped at {CLIP_NORM:g}", "relu",
                       "he", "#44AA99", init_scale=INIT_SCALE, clip_norm=CLIP_NORM),
}
FIT_SETTINGS = ("sigmoid", "relu_he", "sigmoid_bn")
STEP_SETTINGS = ("exploding", "clipped")


def naive_sigmoid_factor():
    """The mean-field factor by which a naive sigmoid layer of equal widths
    divides the backpropagated error: 1 / (sigma'(0) sqrt(n Var(W))) with
    sigma'(0) = 1/4 and Var(W) = 1 / (3 n), that is 4 sqrt(3)."""
    return 4 * math.sqrt(3)


def network(setting, sizes, seed):
    """The setting's network; its weights (not biases) scaled by ``init_scale``."""
    net = fastnet.Network(sizes, activation=setting.activation, output="softmax",
                          init=setting.init, batch_norm=setting.batch_norm, seed=seed)
    if setting.init_scale != 1.0:
        params = net.params.copy()
        for layer in net.unflatten(params):
            layer[0][...] *= setting.init_scale
        net.params = params
    return net


def optimizer(setting):
    return fastnet.SGD(lr=LEARNING_RATE, clip_norm=setting.clip_norm)


def growth_per_layer(norms):
    """Geometric mean of the successive ratios ||g_{l+1}|| / ||g_l|| over the
    hidden-to-hidden layers (the input and output layers differ in kind)."""
    hidden = np.asarray(norms[1:-1], dtype=float)
    return float((hidden[-1] / hidden[0]) ** (1 / (hidden.size - 1)))


def _summary(setting, norms_init, norms_final, epoch_losses, test_accuracy):
    return {"label": setting.label, "activation": setting.activation, "init": setting.init,
            "batch_norm": setting.batch_norm, "init_scale": setting.init_scale,
            "clip_norm": setting.clip_norm,
            "layer_norms_init": [float(v) for v in norms_init],
            "layer_norms_final": [float(v) for v in norms_final],
            "ratio_init": float(norms_init[0] / norms_init[-1]),
            "ratio_final": float(norms_final[0] / norms_final[-1]),
            "growth_per_layer_init": growth_per_layer(norms_init),
            "epoch_losses": [float(v) for v in epoch_losses],
            "epochs_trained": len(epoch_losses) - 1,
            "final_loss": float(epoch_losses[-1]), "test_accuracy": float(test_accuracy)}


def fit_run(setting, sizes, data, probe, epochs, seed):
    """Train with ``fit``; per-layer gradient norms on the probe at start and end."""
    X, y, X_test, y_test = data
    net = network(setting, sizes, seed)
    norms = GradientNorms(*probe)
    start_loss = net.loss(X, y, training=True)
    history = net.fit(X, y, optimizer=optimizer(setting), epochs=epochs,
                      batch_size=BATCH_SIZE, seed=seed, callbacks=[norms])
    summary = _summary(setting, norms.norms[0], norms.norms[-1], [start_loss, *history.loss],
                       net.score(X_test, y_test))
    return {**summary, "diverged_step": None, "stopped": history.stopped}


def _batches(n, epochs, rng):
    """(row indices, whether it ends an epoch) of every mini-batch of ``epochs``
    shuffled epochs."""
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, BATCH_SIZE):
            yield order[start:start + BATCH_SIZE], start + BATCH_SIZE >= n


def _train_steps(net, trainer, X, y, epochs, seed):
    """SGD steps over ``epochs`` shuffled epochs, stopped at the first batch
    whose loss is not finite (its index is ``diverged``, else None)."""
    steps = {"losses": [], "grad_norms": [], "step_norms": [], "epoch_losses": [],
             "diverged": None}
    epoch_total = 0.0
    for rows, epoch_ends in _batches(len(X), epochs, np.random.default_rng(seed)):
        loss, grad = net.loss_and_grad(X[rows], y[rows])
        if not math.isfinite(loss):
            steps["diverged"] = len(steps["losses"])
            break
        before = net.params.astype(np.float64)
        trainer.step(X[rows], y[rows])
        steps["losses"].append(float(loss))
        steps["grad_norms"].append(float(np.linalg.norm(grad.astype(np.float64))))
        steps["step_norms"].append(float(np.linalg.norm(net.params - before)))
        epoch_total += loss * len(rows)
        if epoch_ends:
            steps["epoch_losses"].append(epoch_total / len(X))
            epoch_total = 0.0
    return steps


def step_run(setting, sizes, data, probe, epochs, seed):
    """Train step by step; per step the batch loss, the batch gradient's norm
    and the norm of the step taken; per-layer norms on the probe at start and end."""
    X, y, X_test, y_test = data
    net = network(setting, sizes, seed)
    trainer = fastnet.StepTrainer(net, optimizer(setting), seed=seed, batch_size=BATCH_SIZE)
    norms = GradientNorms(*probe)
    norms.record(net, 0)
    start_loss = net.loss(X, y, training=True)
    steps = _train_steps(net, trainer, X, y, epochs, seed)
    diverged = steps["diverged"]
    if diverged is None:
        norms.record(net, epochs)
        final_norms, accuracy = norms.norms[-1], net.score(X_test, y_test)
    else:
        final_norms, accuracy = np.full(len(sizes) - 1, np.nan), math.nan
    summary = _summary(setting, norms.norms[0], final_norms,
                       [start_loss, *steps["epoch_losses"]], accuracy)
    if diverged is not None:
        summary["final_loss"] = math.nan
    return {**summary, "diverged_step": diverged,
            "peak_loss": max(steps["losses"], default=math.nan),
            "step_losses": steps["losses"], "step_grad_norms": steps["grad_norms"],
            "step_norms": steps["step_norms"]}


def run(quick, seed):
    seed = check_int("seed", seed, minimum=0)
    hidden_layers, width, epochs = SIZES[bool(quick)]
    info = fastnet.datasets.info(DATASET)
    sizes = [info.n_features, *[width] * hidden_layers, info.n_classes]
    data = fastnet.datasets.load(DATASET)
    X, y = data[0], data[1]
    probe_rows = np.random.default_rng(seed).choice(len(X), PROBE_SIZE, replace=False)
    probe = (X[probe_rows], y[probe_rows])
    settings = {key: fit_run(SETTINGS[key], sizes, data, probe, epochs, seed)
                for key in FIT_SETTINGS}
    settings.update({key: step_run(SETTINGS[key], sizes, data, probe, epochs, seed)
                     for key in STEP_SETTINGS})
    result = {"dataset": DATASET, "sizes": sizes, "hidden_layers": hidden_layers,
              "width": width, "epochs": epochs, "learning_rate": LEARNING_RATE,
              "batch_size": BATCH_SIZE, "probe_size": PROBE_SIZE, "clip_norm": CLIP_NORM,
              "init_scale": INIT_SCALE,
              "naive_sigmoid_factor": naive_sigmoid_factor(), "settings": settings}
    return result, {NAME: figure(result)}


# ------------------------------------------------------------------ figure
def _setting_line(ax, key, x, y, **kwargs):
    ax.plot(x, y, color=SETTINGS[key].colour, gid=f"setting:{key}", **kwargs)


def _draw_layer_norms(ax, result):
    layers = np.arange(1, result["hidden_layers"] + 2)
    for key, entry in result["settings"].items():
        if key != "clipped":   # its initial network is the exploding one
            _setting_line(ax, key, layers, entry["layer_norms_init"], marker="o",
                          markersize=3)
        _setting_line(ax, key, layers, entry["layer_norms_final"], linestyle="--",
                      marker="s", markersize=3)
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer l (1 = input side)")
    ax.set_ylabel("||dL/dW_l|| (probe batch)")
    ax.set_title(f"(a) per-layer gradient norm on a {result['probe_size']}-sample probe")


def _draw_epoch_losses(ax, result):
    for key, entry in result["settings"].items():
        losses = entry["epoch_losses"]
        if len(losses) > 1:
            _setting_line(ax, key, np.arange(len(losses)), losses, marker=".", markersize=3)
        else:
            ax.annotate(f"{entry['label']}: diverged in epoch 1, see (c)", (0.98, 0.97),
                        xycoords="axes fraction", ha="right", va="top", fontsize=7.5,
                        color=SETTINGS[key].colour)
    ax.axhline(math.log(10), color="#999999", linewidth=0.8, linestyle=":", zorder=1)
    ax.annotate("uniform guess: ln 10", (1, math.log(10)), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", fontsize=7, color="#666666")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (epoch mean)")
    ax.set_title(f"(b) training loss, SGD lr {result['learning_rate']:g}, "
                 f"batch {result['batch_size']}")


def log_running_median(values, spread=1.25):
    """For each step s = 1, 2, ...: the median of the values of steps s / spread
    to s * spread, a smoother whose resolution suits a logarithmic step axis."""
    values = np.asarray(values, dtype=np.float64)
    steps = np.arange(1, values.size + 1)
    low = np.searchsorted(steps, steps / spread, side="left")
    high = np.searchsorted(steps, steps * spread, side="right")
    return np.array([np.median(values[a:b]) for a, b in zip(low, high)])


def _draw_steps(ax, key, values, **kwargs):
    """Per-step ``values``, faint, and their ``log_running_median``."""
    steps = np.arange(1, len(values) + 1)
    _setting_line(ax, key, steps, values, linewidth=0.5, alpha=0.3)
    _setting_line(ax, key, steps, log_running_median(values), linewidth=1.6, **kwargs)


def _draw_step_losses(ax, result):
    for key in STEP_SETTINGS:
        entry = result["settings"][key]
        _draw_steps(ax, key, entry["step_losses"])
        if entry["diverged_step"] is not None:
            step = entry["diverged_step"] + 1
            ax.plot([step], [entry["peak_loss"]], marker="X", markersize=8,
                    color=SETTINGS[key].colour, linestyle="none")
            ax.annotate(f"loss NaN/inf at step {step}", (step, entry["peak_loss"]),
                        xytext=(6, -2), textcoords="offset points", fontsize=7.5,
                        color=SETTINGS[key].colour, va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step (mini-batch)")
    ax.set_ylabel("batch cross-entropy before the step")
    ax.set_title("(c) exploding: batch loss per step (faint) and its running median")


def _draw_step_norms(ax, result):
    lr = result["learning_rate"]
    for key in STEP_SETTINGS:
        entry = result["settings"][key]
        _draw_steps(ax, key, entry["step_grad_norms"])
        _draw_steps(ax, key, list(np.asarray(entry["step_norms"]) / lr),
                    linestyle=(0, (1, 1.5)))
    ax.axhline(result["clip_norm"], color="#999999", linewidth=0.8, linestyle="--", zorder=1)
    ax.annotate(f"clip_norm = {result['clip_norm']:g}", (0, result["clip_norm"]),
                xycoords=("axes fraction", "data"), xytext=(4, -3), textcoords="offset points",
                ha="left", va="top", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step (mini-batch)")
    ax.set_ylabel("solid: raw batch gradient norm ||g||\ndotted: step length / lr")
    ax.set_title("(d) the gradient's norm and the step actually taken")


def figure(result):
    """The four panels of the study from its ``result``."""
    with matplotlib.rc_context(plots.STYLE):
        fig = Figure(figsize=(10, 7.6), layout="constrained")
        axes = fig.subplots(2, 2)
        _draw_layer_norms(axes[0, 0], result)
        _draw_epoch_losses(axes[0, 1], result)
        _draw_step_losses(axes[1, 0], result)
        _draw_step_norms(axes[1, 1], result)
        handles = [Line2D([], [], color=SETTINGS[key].colour, label=entry["label"])
                   for key, entry in result["settings"].items()]
        handles += [Line2D([], [], color="#555555", marker="o", markersize=3,
                           label="(a) at initialisation"),
                    Line2D([], [], color="#555555", marker="s", markersize=3, linestyle="--",
                           label="(a) after training")]
        fig.legend(handles=handles, loc="outside lower center", ncols=4)
        fig.suptitle(f"Gradient flow in a {result['hidden_layers']}-hidden-layer network "
                     f"({result['width']} units per layer) on {result['dataset']}")
    return fig


# ----------------------------------------------------------------- section
def _outcome(entry):
    if entry["diverged_step"] is not None:
        return (f"diverges: its batch loss reaches {entry['peak_loss']:.3g} and is NaN or "
                f"inf at step {entry['diverged_step'] + 1}")
    return (f"ends at a last-epoch training loss of {entry['final_loss']:.3g} and test accuracy "
            f"{entry['test_accuracy']:.1%}")


def section(result):
    s = result["settings"]
    sigmoid, relu, bn = s["sigmoid"], s["relu_he"], s["sigmoid_bn"]
    exploding, clipped = s["exploding"], s["clipped"]
    he_norms = np.asarray(relu["layer_norms_init"])
    explode_norms = np.asarray(exploding["layer_norms_init"])
    max_clipped_step = max(clipped["step_norms"], default=math.nan)
    clipped_steps = sum(g > result["clip_norm"] for g in clipped["step_grad_norms"])
    return [
        f"A network of {result['hidden_layers']} hidden layers of {result['width']} units "
        f"(sizes {'-'.join(map(str, result['sizes']))}) is trained on {result['dataset']} by "
        f"plain SGD (learning rate {result['learning_rate']:g}, batches of "
        f"{result['batch_size']}, {result['epochs']} epochs); panel (a) shows each layer's "
        f"gradient norm ||dL/dW_l|| on a fixed probe of {result['probe_size']} training "
        "samples, at initialisation and after training. With sigmoid units and the naive "
        "initialisation U(±1/√fan_in) (Glorot & Bengio 2010, eq. 1) the first layer's "
        f"gradient at initialisation is {sigmoid['ratio_init']:.2g} times the last layer's: "
        "going towards the input, each hidden layer divides the gradient by "
        f"{sigmoid['growth_per_layer_init']:.2f}, against the mean-field estimate "
        f"1/(σ'(0)·√(1/3)) = {result['naive_sigmoid_factor']:.2f}. "
        f"This network {_outcome(sigmoid)} (a uniform guess over the ten classes has loss "
        f"ln 10 = {math.log(10):.2f}). "
        f"With ReLU units and He initialisation the ratio is {relu['ratio_init']:.2g} and "
        f"the network {_outcome(relu)}; the naive sigmoid network with batch normalisation "
        f"has ratio {bn['ratio_init']:.2g} and {_outcome(bn)}.",
        "",
        f"Scaling every He-initialised weight by {result['init_scale']:g} makes the "
        f"gradients explode: at initialisation the layers' gradient norms are "
        f"{explode_norms.min():.3g} to {explode_norms.max():.3g} (He: {he_norms.min():.3g} "
        f"to {he_norms.max():.3g}), and plain SGD {_outcome(exploding)} (panel c). The same "
        f"network with the gradient clipped to global norm {result['clip_norm']:g} takes "
        f"no step longer than {max_clipped_step:.3g} (lr × clip_norm = "
        f"{result['learning_rate'] * result['clip_norm']:g}; clipping acted on "
        f"{clipped_steps} of its {len(clipped['step_norms'])} steps, panel d) and "
        f"{_outcome(clipped)}.",
        "",
        f"![Per-layer gradient norms and training losses of deep networks: vanishing "
        f"gradients with naive sigmoid initialisation, healthy flow with ReLU + He or batch "
        f"normalisation, and exploding gradients tamed by clipping](figures/{NAME}.png)",
    ]
