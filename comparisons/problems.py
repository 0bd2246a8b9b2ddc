"""Problems: a data set, a network topology and a loss, by name.

Every method trains the same ``Network`` (same topology, same initial
parameters for a given seed) on the same training data; test metrics come
from held-out data (or, for truth tables and the two spirals, from the
training points themselves, as in their historical benchmarks).
"""
import dataclasses

import fastnet
from fastnet._checks import check_int, check_name


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    dataset: str
    hidden: tuple          # hidden layer widths
    activation: str
    output: str
    loss: str
    budget: int            # forward-pass equivalents for a full run
    target_loss: float     # "solved" threshold on the training loss, for cost-to-target
    description: str

    def data(self, seed=0):
        """X_train, y_train, X_test, y_test (the split depends on the seed)."""
        return fastnet.datasets.load(self.dataset, seed=seed)

    def network(self, seed=0, hidden=None, backend="cpu"):
        """The problem's network, initialised from ``seed`` (``hidden`` overrides widths)."""
        info = fastnet.datasets.info(self.dataset)
        n_out = 1 if self.loss in ("mse", "bce") and info.n_classes <= 2 else info.n_classes
        sizes = [info.n_features, *(hidden or self.hidden), n_out]
        return fastnet.Network(sizes, activation=self.activation, output=self.output,
                               loss=self.loss, seed=seed, backend=backend)


def _classifier(name, dataset, hidden, budget, target, description, activation="tanh"):
    return Problem(name, dataset, hidden, activation, "sigmoid", "bce", budget, target,
                   description)


PROBLEMS = {p.name: p for p in (
    _classifier("xor", "xor", (4,), 200_000, 0.05, "XOR, 2-4-1 tanh, sigmoid + BCE"),
    _classifier("parity4", "parity4", (8,), 1_000_000, 0.05,
                "4-bit parity, 4-8-1 tanh, sigmoid + BCE"),
    _classifier("spirals", "spirals", (16, 16), 20_000_000, 0.1,
                "Lang & Witbrock two spirals, 2-16-16-1 tanh, sigmoid + BCE"),
    _classifier("moons", "moons", (16,), 4_000_000, 0.1,
                "two moons (noise 0.2), 2-16-1 tanh, sigmoid + BCE"),
    Problem("sine", "sine", (16,), "tanh", "identity", "mse", 4_000_000, 0.01,
            "y = sin(x) + noise, 1-16-1 tanh, identity + MSE"),
    Problem("iris", "iris", (8,), "tanh", "softmax", "cross_entropy", 2_000_000, 0.1,
            "Fisher's iris, 4-8-3 tanh, softmax + cross-entropy"),
    Problem("digits", "digits", (32,), "relu", "softmax", "cross_entropy", 40_000_000, 0.1,
            "8x8 handwritten digits, 64-32-10 ReLU, softmax + cross-entropy"),
)}


def get_problem(name):
    """A registered problem; ``NAME-wK`` is NAME with every hidden layer K units wide."""
    base, _, width = name.partition("-w") if isinstance(name, str) else (name, "", "")
    problem = PROBLEMS[check_name("problem", base, PROBLEMS)]
    return widened(problem, int(width)) if width.isdigit() else problem


def widened(problem, width):
    """The same problem with every hidden layer ``width`` units wide (scaling figure)."""
    width = check_int("width", width)
    return dataclasses.replace(problem, name=f"{problem.name}-w{width}",
                               hidden=tuple(width for _ in problem.hidden))
