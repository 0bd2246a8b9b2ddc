"""Built-in data sets: documented shapes and classes, seeding, standardisation,
stratified splits and the truth tables."""
import itertools
from pathlib import Path

import numpy as np
import pytest

from fastnet import datasets

# name -> (total samples, features, classes; 0 = regression), as documented
DOCUMENTED = {
    "xor": (4, 2, 2), "spirals": (194, 2, 2), "moons": (400, 2, 2), "circles": (400, 2, 2),
    "sine": (400, 1, 0), "digits": (1797, 64, 10), "iris": (150, 4, 3), "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 2),
    **{f"parity{b}": (2 ** b, b, 2) for b in range(2, 11)},
}
# class sizes of the real data sets (UCI / scikit-learn's copies)
CLASS_COUNTS = {
    "iris": [50, 50, 50],
    "wine": [59, 71, 48],
    "breast_cancer": [212, 357],
    "digits": [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
}
TRAIN_IS_TEST = {"xor", "spirals"} | {f"parity{b}" for b in range(2, 11)}


def test_every_name_is_documented():
    assert set(datasets.NAMES) == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_shapes_and_classes(name):
    total, features, classes = DOCUMENTED[name]
    info = datasets.info(name)
    assert (info.name, info.n_features, info.n_classes) == (name, features, classes)
    assert info.task == ("regression" if classes == 0 else "classification")
    X_train, y_train, X_test, y_test = datasets.load(name)
    for X, y in [(X_train, y_train), (X_test, y_test)]:
        assert X.ndim == 2 and X.shape[1] == features and X.dtype == np.float64
        assert y.shape == (len(X),)
        assert np.isfinite(X).all() and np.isfinite(y).all()
    if name in TRAIN_IS_TEST:
        assert len(X_train) == total
        np.testing.assert_array_equal(X_train, X_test)
        np.testing.assert_array_equal(y_train, y_test)
    else:
        assert len(X_train) + len(X_test) == total
        assert len(X_test) == pytest.approx(0.25 * total, abs=classes + 1)
    if classes:
        assert y_train.dtype.kind == "i"
        assert set(np.unique(np.concatenate([y_train, y_test]))) == set(range(classes))
    else:
        assert y_train.dtype == np.float64


@pytest.mark.parametrize("name", sorted(CLASS_COUNTS))
def test_class_counts_of_the_real_data(name):
    X_train, y_train, X_test, y_test = datasets.load(name)
    counts = np.bincount(np.concatenate([y_train, y_test]))
    np.testing.assert_array_equal(counts, CLASS_COUNTS[name])


@pytest.mark.parametrize("name", ["moons", "circles", "sine", "iris", "digits"])
def test_deterministic_per_seed(name):
    first = datasets.load(name, seed=3)
    again = datasets.load(name, seed=3)
    other = datasets.load(name, seed=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("name", ["xor", "spirals", "parity5"])
def test_fixed_problems_do_not_depend_on_the_seed(name):
    for a, b in zip(datasets.load(name, seed=0), datasets.load(name, seed=11)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_train_features_are_standardised(name):
    X_train = datasets.load(name, seed=1)[0]
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-12)
    std = X_train.std(axis=0)
    # a feature constant on the training set (digits' blank border pixels) stays at 0
    constant = std < 1e-12
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-12)
    assert (X_train[:, constant] == 0).all()
    if name != "digits":
        assert not constant.any()


def test_test_features_use_the_training_statistics():
    """Train and test go through one affine map per feature, fitted on train alone.

    Pooling both sets and sorting each feature, the standardised values must be
    an exact affine function of the raw file's values (one map for both sets);
    as train alone has mean 0 and std 1 (tested above), that map is train's
    statistics, and the test set is not exactly standardised.
    """
    raw = np.loadtxt(Path(datasets.__file__).parent / "data" / "breast_cancer.csv",
                     delimiter=",", skiprows=1)[:, :-1]
    X_train, _, X_test, _ = datasets.load("breast_cancer", seed=0)
    pooled = np.concatenate([X_train, X_test])
    for j in range(raw.shape[1]):
        x, r = np.sort(raw[:, j]), np.sort(pooled[:, j])
        slope, intercept = np.polyfit(x, r, 1)
        np.testing.assert_allclose(slope * x + intercept, r, atol=1e-9)
        assert slope > 0
    assert np.abs(X_test.mean(axis=0)).max() > 1e-3


@pytest.mark.parametrize("name", ["moons", "circles", "iris", "wine", "breast_cancer",
                                  "digits"])
@pytest.mark.parametrize("test_size", [0.25, 0.1, 0.5])
def test_split_is_stratified(name, test_size):
    X_train, y_train, X_test, y_test = datasets.load(name, seed=2, test_size=test_size)
    classes = datasets.info(name).n_classes
    train_counts = np.bincount(y_train, minlength=classes)
    test_counts = np.bincount(y_test, minlength=classes)
    assert (train_counts > 0).all() and (test_counts > 0).all()
    totals = train_counts + test_counts
    # each class is split on its own: round(test_size * class size) go to test
    np.testing.assert_array_equal(test_counts, np.round(test_size * totals).astype(int))


@pytest.mark.parametrize("name", ["moons", "circles", "sine"])
def test_train_and_test_are_disjoint(name):
    """Continuous features (no two samples alike): no sample is in both sets."""
    X_train, _, X_test, _ = datasets.load(name, seed=0)
    assert not {tuple(r) for r in X_train} & {tuple(r) for r in X_test}


def test_split_is_shuffled():
    _, y_train, _, y_test = datasets.load("iris", seed=0)
    assert not (np.diff(y_train) >= 0).all()
    assert not (np.diff(y_test) >= 0).all()


# ------------------------------------------------------------ truth tables
def test_xor_truth_table():
    X, y, _, _ = datasets.load("xor")
    bits = (X > 0).astype(int)
    table = {tuple(row): label for row, label in zip(bits, y)}
    assert table == {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}
    np.testing.assert_array_equal(np.abs(X), 1.0)   # 0/1 standardised to -1/+1


@pytest.mark.parametrize("bits", range(2, 11))
def test_parity_truth_table(bits):
    X, y, _, _ = datasets.load(f"parity{bits}")
    pattern = (X > 0).astype(int)
    # every pattern exactly once, labelled with the sum of its bits mod 2
    assert {tuple(row) for row in pattern} == set(itertools.product([0, 1], repeat=bits))
    np.testing.assert_array_equal(y, pattern.sum(axis=1) % 2)
    assert y.sum() == 2 ** (bits - 1)


def test_spirals():
    X, y, _, _ = datasets.load("spirals")
    assert X.shape == (194, 2)
    np.testing.assert_array_equal(np.bincount(y), [97, 97])
    # the two spirals are each other's point reflection through the origin
    np.testing.assert_allclose(np.sort(X[y == 0], axis=0), np.sort(-X[y == 1], axis=0),
                               atol=1e-12)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() / radius.min() > 10   # from the centre out, three turns


def test_sine_is_a_sine():
    X_train, y_train, X_test, y_test = datasets.load("sine")
    X = np.concatenate([X_train, X_test])[:, 0]
    y = np.concatenate([y_train, y_test])
    # x was standardised from U(-pi, pi): std pi / sqrt(3); undo it approximately
    x = X * np.pi / np.sqrt(3)
    residual = y - np.sin(x)
    assert np.abs(residual).mean() < 0.15
    assert np.abs(y).max() < 1.3
