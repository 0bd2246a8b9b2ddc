"""Built-in problems: synthetic ones generated in code and small real ones
shipped with the package (offline; see ``fastnet/data/README.md``).

``load(name, seed=0)`` returns ``X_train, y_train, X_test, y_test`` with
features standardised by the training set's mean and standard deviation.
Classification labels are integers 0..k-1; regression targets are floats.
Truth-table problems (xor, parity) and the two spirals are judged on the
points they are trained on, as in their historical benchmarks, so their
test set is the training set.
"""
import dataclasses
import gzip
import math
from importlib import resources

import numpy as np

from fastnet._checks import check_float, check_int, check_name


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str          # "classification" or "regression"
    n_features: int
    n_classes: int     # 0 for regression
    description: str


def _xor(rng):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    return X, np.array([0, 1, 1, 0])


def _parity(bits):
    def make(rng):
        X = ((np.arange(2 ** bits)[:, None] >> np.arange(bits)[::-1]) & 1).astype(np.float64)
        return X, X.sum(axis=1).astype(np.int64) % 2
    return make


def _spirals(rng):
    """Lang & Witbrock (1988): 97 points per spiral, three turns, 194 in all."""
    i = np.arange(97)
    angle = i * math.pi / 16
    radius = 6.5 * (104 - i) / 104
    x, y = radius * np.sin(angle), radius * np.cos(angle)
    X = np.concatenate([np.stack([x, y], 1), np.stack([-x, -y], 1)])
    return X, np.repeat([1, 0], 97)


def _moons(rng, n=400, noise=0.2):
    half = n // 2
    t_out = np.linspace(0, math.pi, n - half)
    t_in = np.linspace(0, math.pi, half)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    X += rng.normal(0, noise, X.shape)
    return X, np.repeat([0, 1], [n - half, half])


def _circles(rng, n=400, noise=0.1, factor=0.5):
    t = rng.uniform(0, 2 * math.pi, n)
    labels = np.repeat([0, 1], [n - n // 2, n // 2])
    radius = np.where(labels == 0, 1.0, factor)
    X = np.stack([radius * np.cos(t), radius * np.sin(t)], 1) + rng.normal(0, noise, (n, 2))
    return X, labels


def _sine(rng, n=400, noise=0.05):
    x = rng.uniform(-math.pi, math.pi, n)
    return x[:, None], np.sin(x) + rng.normal(0, noise, n)


def _shipped_csv(filename):
    """A scikit-learn style data file: header 'n,d,names...', then rows of d features + label."""
    raw = resources.files("fastnet").joinpath("data", filename).read_bytes()
    if filename.endswith(".gz"):
        raw = gzip.decompress(raw)
    lines = raw.decode().splitlines()
    skip = 0 if filename.startswith("digits") else 1
    table = np.loadtxt(lines[skip:], delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _shipped(filename):
    return lambda rng: _shipped_csv(filename)


#: name -> (generator, info); generators take a numpy Generator
_DATASETS = {
    "xor": (_xor, DatasetInfo("xor", "classification", 2, 2, "XOR truth table, 4 points")),
    "spirals": (_spirals, DatasetInfo("spirals", "classification", 2, 2,
                                      "Lang & Witbrock two spirals, 194 points")),
    "moons": (_moons, DatasetInfo("moons", "classification", 2, 2,
                                  "two interleaving half circles, noise 0.2, 400 points")),
    "circles": (_circles, DatasetInfo("circles", "classification", 2, 2,
                                      "two concentric circles, noise 0.1, 400 points")),
    "sine": (_sine, DatasetInfo("sine", "regression", 1, 0,
                                "y = sin(x) + N(0, 0.05^2), x in [-pi, pi], 400 points")),
    "digits": (_shipped("digits.csv.gz"), DatasetInfo(
        "digits", "classification", 64, 10, "UCI handwritten digits 8x8, 1797 images")),
    "iris": (_shipped("iris.csv"), DatasetInfo("iris", "classification", 4, 3,
                                               "Fisher's iris, 150 flowers")),
    "wine": (_shipped("wine_data.csv"), DatasetInfo("wine", "classification", 13, 3,
                                                    "UCI wine recognition, 178 wines")),
    "breast_cancer": (_shipped("breast_cancer.csv"), DatasetInfo(
        "breast_cancer", "classification", 30, 2, "UCI Wisconsin diagnostic, 569 cases")),
}
for _bits in range(2, 11):
    _DATASETS[f"parity{_bits}"] = (_parity(_bits), DatasetInfo(
        f"parity{_bits}", "classification", _bits, 2,
        f"{_bits}-bit parity, all {2 ** _bits} patterns"))

TRAIN_IS_TEST = {"xor", "spirals"} | {f"parity{b}" for b in range(2, 11)}
NAMES = tuple(_DATASETS)


def info(name):
    """DatasetInfo for ``name``."""
    return _DATASETS[check_name("name", name, _DATASETS)][1]


def _split(y, test_size, rng, stratify):
    """Seeded train/test indices; stratified by class for classification."""
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    train, test = [], []
    for group in groups:
        group = rng.permutation(group)
        n_test = int(round(test_size * len(group)))
        test.append(group[:n_test])
        train.append(group[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load(name, seed=0, test_size=0.25):
    """X_train, y_train, X_test, y_test for a built-in problem (see ``NAMES``)."""
    name = check_name("name", name, _DATASETS)
    seed = check_int("seed", seed, minimum=0)
    test_size = check_float("test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
    generate, meta = _DATASETS[name]
    rng = np.random.default_rng(seed)
    X, y = generate(rng)
    if name in TRAIN_IS_TEST:
        train = test = np.arange(len(y))
    else:
        train, test = _split(y, test_size, rng, meta.task == "classification")
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std[std == 0] = 1.0
    X = (X - mean) / std
    return X[train], y[train], X[test], y[test]
