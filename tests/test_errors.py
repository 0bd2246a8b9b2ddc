"""Bad input gets a clear ValueError / TypeError naming the argument, raised in
Python before any compiled kernel sees the data."""
import re

import numpy as np
import pytest

import fastnet
from fastnet.optim import get_schedule


class Tripwire:
    """Stands in for a network's engine: calling any of its methods means a
    kernel was reached. (Looking a method up is allowed: Python fetches
    ``self.engine.forward`` before it evaluates the checked arguments.)"""

    def __getattr__(self, name):
        def reached(*args, **kwargs):
            raise AssertionError(f"the engine was reached ({name}) before validation failed")
        return reached


def guarded(net):
    """``net`` with its engine replaced by a tripwire."""
    net.engine = Tripwire()
    return net


def raises(exception, *words):
    """pytest.raises whose message must contain every one of ``words``."""
    pattern = "".join(f"(?=[\\s\\S]*{re.escape(word)})" for word in words)
    return pytest.raises(exception, match=pattern)


@pytest.fixture
def clf():
    """A 2-3-3 softmax classifier whose engine must not be reached."""
    return guarded(fastnet.Network([2, 3, 3], output="softmax"))


@pytest.fixture
def reg():
    return guarded(fastnet.Network([2, 3, 1], activation="tanh"))


X3 = np.zeros((3, 2))
Y3 = np.array([0, 1, 2])


def _entry_points(net, X, y):
    """Every public method that takes data, as (name, call) pairs."""
    return [
        ("loss", lambda: net.loss(X, y)),
        ("loss_and_grad", lambda: net.loss_and_grad(X, y)),
        ("score", lambda: net.score(X, y)),
        ("population_loss", lambda: net.population_loss(np.zeros((2, net.n_params)), X, y)),
        ("fit", lambda: net.fit(X, y, epochs=1)),
    ]


# ------------------------------------------------------------------- X
@pytest.mark.parametrize("X,words", [
    (np.zeros(2), ("X", "2-D", "(2,)")),
    (np.zeros((3, 2, 1)), ("X", "2-D", "(3, 2, 1)")),
    (np.zeros((3, 5)), ("X", "5", "expected 2")),
    (np.zeros((0, 2)), ("X", "empty")),
    (np.array([[0.0, np.nan]] * 3), ("X", "NaN or inf")),
    (np.array([[0.0, 1.0], [np.inf, 0.0], [0.0, 0.0]]), ("X", "NaN or inf", "(1, 0)")),
])
def test_bad_X(clf, X, words):
    for name, call in _entry_points(clf, X, Y3) + [("forward", lambda: clf.forward(X)),
                                                   ("predict", lambda: clf.predict(X))]:
        with raises(ValueError, *words):
            call()


@pytest.mark.parametrize("X", [np.array([["a", "b"]] * 3), np.zeros((3, 2), dtype=object),
                               np.zeros((3, 2), dtype=complex)])
def test_X_of_non_real_dtype(clf, X):
    for name, call in _entry_points(clf, X, Y3) + [("forward", lambda: clf.forward(X))]:
        with raises(TypeError, "X", str(X.dtype)):
            call()


def test_X_and_y_of_different_lengths(clf, reg):
    for name, call in _entry_points(clf, np.zeros((4, 2)), Y3):
        with raises(ValueError, "X", "y", "4", "3"):
            call()
    for name, call in _entry_points(reg, np.zeros((4, 2)), np.zeros(3)):
        with raises(ValueError, "X", "y", "4", "3"):
            call()


# ------------------------------------------------------------------- y
@pytest.mark.parametrize("y,exception,words", [
    (np.array([0, 1, 3]), ValueError, ("y", "labels", "[0, 2]", "3")),
    (np.array([0, -1, 2]), ValueError, ("y", "labels", "-1")),
    (np.array([0.0, 1.0, 2.0]), TypeError, ("y", "integer", "float")),
    (np.array(["0", "1", "2"]), TypeError, ("y", "<U1")),
    (np.array([0, 1, 2], dtype=object), TypeError, ("y", "object")),
    (np.array([], dtype=int), ValueError, ("y", "empty")),
    (np.zeros((3, 2)), ValueError, ("y", "(3, 2)", "3 outputs")),
    (np.array([[0.5, 0.5, 0.0], [0, 0, 1], [2.0, 0, -1]]), ValueError, ("y", "[0, 1]")),
    (np.array([[np.nan, 1, 0], [0, 0, 1], [1, 0, 0]]), ValueError, ("y", "NaN or inf")),
])
def test_bad_classification_targets(clf, y, exception, words):
    X = np.zeros((max(len(y), 1), 2))
    for name, call in _entry_points(clf, X, y):
        with raises(exception, *words):
            call()


@pytest.mark.parametrize("y,words", [
    (np.array([0.0, np.nan, 1.0]), ("y", "NaN or inf")),
    (np.array([0.0, np.inf, 1.0]), ("y", "NaN or inf")),
    (np.zeros((3, 2)), ("y", "(3, 2)")),
    (np.zeros((3, 1, 1)), ("y", "(3, 1, 1)")),
])
def test_bad_regression_targets(reg, y, words):
    for name, call in _entry_points(reg, X3, y):
        with raises(ValueError, *words):
            call()


def test_bce_targets_must_lie_in_0_1():
    net = guarded(fastnet.Network([2, 3, 1], output="sigmoid"))
    for name, call in _entry_points(net, X3, np.array([0, 1, 2])):
        with raises(ValueError, "y", "[0, 1]", "bce"):
            call()


def test_validation_data_is_checked(clf):
    with raises(ValueError, "validation_data[0]", "3", "expected 2"):
        clf.fit(X3, Y3, validation_data=(np.zeros((2, 3)), [0, 1]))
    with raises(ValueError, "validation_data[1]", "labels"):
        clf.fit(X3, Y3, validation_data=(np.zeros((2, 2)), [0, 7]))
    with raises(ValueError, "validation_data[0]", "validation_data[1]", "same number"):
        clf.fit(X3, Y3, validation_data=(np.zeros((2, 2)), [0, 1, 2]))
    with raises(ValueError, "validation_data[0]", "NaN"):
        clf.fit(X3, Y3, validation_data=(np.full((2, 2), np.nan), [0, 1]))
    with raises(ValueError, "validation_data", "pair"):
        clf.fit(X3, Y3, validation_data=np.zeros((2, 2)))
    with raises(ValueError, "validation_split", "validation_data"):
        clf.fit(X3, Y3, validation_split=0.5, validation_data=(X3, Y3))


@pytest.mark.parametrize("split,exception,words", [
    (1.0, ValueError, ("validation_split", "1.0")),
    (-0.1, ValueError, ("validation_split",)),
    (float("nan"), ValueError, ("validation_split",)),
    (0.9, ValueError, ("validation_split", "no training data")),
    ("0.2", TypeError, ("validation_split",)),
])
def test_bad_validation_split(clf, split, exception, words):
    with raises(exception, *words):
        clf.fit(np.zeros((4, 2)), [0, 1, 2, 0], validation_split=split)


# -------------------------------------------------------------- fit options
@pytest.mark.parametrize("options,exception,words", [
    (dict(batch_size=0), ValueError, ("batch_size", "0")),
    (dict(batch_size=2.5), TypeError, ("batch_size",)),
    (dict(epochs=0), ValueError, ("epochs", "0")),
    (dict(epochs=-3), ValueError, ("epochs",)),
    (dict(epochs=True), TypeError, ("epochs",)),
    (dict(dropout=1.0), ValueError, ("dropout", "1.0")),
    (dict(dropout=-0.5), ValueError, ("dropout",)),
    (dict(dropout=[0.1, 0.2]), ValueError, ("dropout", "1 rate")),
    (dict(early_stopping=0), ValueError, ("early_stopping",)),
    (dict(seed=-1), ValueError, ("seed",)),
    (dict(optimizer="adamm"), ValueError, ("optimizer", "'adam'")),
    (dict(optimizer=3), TypeError, ("optimizer",)),
])
def test_bad_fit_options(clf, options, exception, words):
    with raises(exception, *words):
        clf.fit(X3, Y3, **options)


# ---------------------------------------------------------------- names
@pytest.mark.parametrize("make,argument,suggestion", [
    (lambda: fastnet.Network([2, 3, 1], activation="rellu"), "activation", "relu"),
    (lambda: fastnet.Network([2, 3, 1], activation="sigmod"), "activation", "sigmoid"),
    (lambda: fastnet.Network([2, 3, 3, 1], activation=["relu", "tahn"]), "activation[1]",
     "tanh"),
    (lambda: fastnet.Network([2, 3, 1], output="softmx"), "output", "softmax"),
    (lambda: fastnet.Network([2, 3, 1], loss="cross_entropyy"), "loss", "cross_entropy"),
    (lambda: fastnet.Network([2, 3, 1], init="xavier_unifrom"), "init", "xavier_uniform"),
    (lambda: fastnet.Network([2, 3, 1], backend="cpuu"), "backend", "cpu"),
    (lambda: fastnet.get_optimizer("adamm"), "optimizer", "adam"),
    (lambda: fastnet.get_optimizer("rmsprp"), "optimizer", "rmsprop"),
    (lambda: get_schedule("cosin", lr=0.1, t_max=3), "schedule", "cosine"),
    (lambda: fastnet.datasets.load("digts"), "name", "digits"),
])
def test_unknown_name_suggests_the_close_one(make, argument, suggestion):
    with raises(ValueError, argument, "not known", f"did you mean {suggestion!r}"):
        make()


@pytest.mark.parametrize("make,argument", [
    (lambda: fastnet.Network([2, 3, 1], activation=None), "activation"),
    (lambda: fastnet.Network([2, 3, 1], activation=3), "activation"),
    (lambda: fastnet.Network([2, 3, 1], loss=1), "loss"),
    (lambda: fastnet.get_optimizer(None), "optimizer"),
])
def test_name_of_wrong_type(make, argument):
    with raises(TypeError, argument, "string"):
        make()


def test_names_are_case_and_dash_insensitive_with_aliases():
    net = fastnet.Network([2, 3, 1], activation="Leaky-ReLU", output="Logistic", loss="BCE",
                          init="Glorot")
    assert net.hidden_activations == ["leaky_relu"]
    assert net.output == "sigmoid" and net.loss_name == "bce"
    assert net.inits == ["xavier_uniform"] * 2


def test_softmax_is_not_a_hidden_activation():
    with raises(ValueError, "activation[0]", "softmax"):
        fastnet.Network([2, 3, 1], activation="softmax")


def test_activation_list_of_wrong_length():
    with raises(ValueError, "activation", "2"):
        fastnet.Network([2, 3, 3, 1], activation=["relu"])


@pytest.mark.parametrize("output,loss", [("sigmoid", "cross_entropy"), ("identity", "bce"),
                                         ("tanh", "bce"), ("softmax", "mse"),
                                         ("softmax", "bce"), ("relu", "cross_entropy")])
def test_output_must_fit_the_loss(output, loss):
    with raises(ValueError, f"output={output!r}", f"loss={loss!r}"):
        fastnet.Network([2, 3, 2], output=output, loss=loss)


def test_canonical_partners_are_filled_in():
    assert fastnet.Network([2, 2], output="softmax").loss_name == "cross_entropy"
    assert fastnet.Network([2, 2], output="sigmoid").loss_name == "bce"
    assert fastnet.Network([2, 2], output="tanh").loss_name == "mse"
    assert fastnet.Network([2, 2], loss="cross_entropy").output == "softmax"
    assert fastnet.Network([2, 2], loss="bce").output == "sigmoid"
    assert fastnet.Network([2, 2]).output == "identity"
    assert fastnet.Network([2, 2], output="sigmoid", loss="mse").loss_name == "mse"


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("sizes,exception,words", [
    ([2, 0, 1], ValueError, ("sizes[1]", "0")),
    ([2, -3, 1], ValueError, ("sizes[1]", "-3")),
    ([0, 3, 1], ValueError, ("sizes[0]",)),
    ([2, 3, 0], ValueError, ("sizes[2]",)),
    ([2, 2.5, 1], TypeError, ("sizes[1]", "2.5")),
    ([2, 3.0, 1], TypeError, ("sizes[1]",)),
    ([2, True, 1], TypeError, ("sizes[1]",)),
    ([2, "3", 1], TypeError, ("sizes[1]",)),
    ([2], ValueError, ("sizes", "at least 2")),
    ([], ValueError, ("sizes", "at least 2")),
    ("23", ValueError, ("sizes",)),
])
def test_bad_sizes(sizes, exception, words):
    with raises(exception, *words):
        fastnet.Network(sizes)


def test_numpy_integer_sizes_are_fine():
    net = fastnet.Network(np.array([2, 3, 1]))
    assert net.sizes == (2, 3, 1) and all(type(s) is int for s in net.sizes)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, complex, "float128"])
def test_bad_dtype(dtype):
    try:
        np.dtype(dtype)
    except TypeError:
        pytest.skip("dtype not available on this platform")
    with raises(TypeError, "dtype"):
        fastnet.Network([2, 3, 1], dtype=dtype)


def test_bad_network_seed():
    with raises(ValueError, "seed"):
        fastnet.Network([2, 3, 1], seed=-1)
    with raises(TypeError, "seed"):
        fastnet.Network([2, 3, 1], seed=1.5)


# ----------------------------------------------------------- optimisers
@pytest.mark.parametrize("make,exception,words", [
    (lambda: fastnet.SGD(lr=0), ValueError, ("lr", "0.0")),
    (lambda: fastnet.SGD(lr=-0.1), ValueError, ("lr",)),
    (lambda: fastnet.Adam(lr=float("nan")), ValueError, ("lr", "nan")),
    (lambda: fastnet.Adam(lr=float("inf")), ValueError, ("lr",)),
    (lambda: fastnet.SGD(lr="0.1"), TypeError, ("lr",)),
    (lambda: fastnet.SGD(momentum=1.0), ValueError, ("momentum", "1.0")),
    (lambda: fastnet.SGD(momentum=1.5), ValueError, ("momentum",)),
    (lambda: fastnet.SGD(momentum=-0.1), ValueError, ("momentum",)),
    (lambda: fastnet.SGD(nesterov=True), ValueError, ("nesterov", "momentum")),
    (lambda: fastnet.Adam(betas=(0.9, 1.0)), ValueError, ("betas[1]",)),
    (lambda: fastnet.Adam(betas=(1.0, 0.999)), ValueError, ("betas[0]",)),
    (lambda: fastnet.Adam(betas=(-0.1, 0.999)), ValueError, ("betas[0]",)),
    (lambda: fastnet.AdamW(betas=(0.9,)), ValueError, ("betas", "pair")),
    (lambda: fastnet.Adam(eps=0.0), ValueError, ("eps",)),
    (lambda: fastnet.RMSprop(alpha=1.0), ValueError, ("alpha",)),
    (lambda: fastnet.RMSprop(eps=-1e-8), ValueError, ("eps",)),
    (lambda: fastnet.SGD(weight_decay=-0.1), ValueError, ("weight_decay",)),
    (lambda: fastnet.AdamW(weight_decay=float("nan")), ValueError, ("weight_decay",)),
    (lambda: fastnet.SGD(clip_norm=0.0), ValueError, ("clip_norm",)),
    (lambda: fastnet.SGD(clip_value=-1.0), ValueError, ("clip_value",)),
    (lambda: fastnet.get_optimizer("sgd", lr=-1), ValueError, ("lr",)),
    (lambda: fastnet.get_optimizer("adam", betas=(0.9, 1.2)), ValueError, ("betas[1]",)),
])
def test_bad_optimizer_settings(make, exception, words):
    with raises(exception, *words):
        make()


@pytest.mark.parametrize("make,exception,words", [
    (lambda: fastnet.StepDecay(lr=0.1, step_size=0), ValueError, ("step_size",)),
    (lambda: fastnet.StepDecay(lr=0.0, step_size=2), ValueError, ("lr",)),
    (lambda: fastnet.StepDecay(lr=0.1, step_size=2, gamma=0.0), ValueError, ("gamma",)),
    (lambda: fastnet.ExponentialDecay(lr=0.1, gamma=1.5), ValueError, ("gamma",)),
    (lambda: fastnet.ExponentialDecay(lr=float("nan"), gamma=0.5), ValueError, ("lr",)),
    (lambda: fastnet.CosineAnnealing(lr=0.1, t_max=0), ValueError, ("t_max",)),
    (lambda: fastnet.CosineAnnealing(lr=0.1, t_max=5, eta_min=0.2), ValueError,
     ("eta_min",)),
    (lambda: fastnet.CosineAnnealing(lr=0.1, t_max=2.0), TypeError, ("t_max",)),
])
def test_bad_schedule_settings(make, exception, words):
    with raises(exception, *words):
        make()


def test_optimizer_step_checks_the_gradient_length():
    opt = fastnet.SGD(lr=0.1)
    params = np.zeros(5)
    with raises(ValueError, "grad"):
        opt.step(params, np.ones(8), opt.init(params))   # longer: no out-of-bounds read


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_lr_that_overflows_float32_is_refused():
    net = fastnet.Network([2, 3, 1], dtype=np.float32)
    with raises(ValueError, "lr"):
        net.fit(X3, np.zeros(3), optimizer=fastnet.SGD(lr=1e39), epochs=1)


# ------------------------------------------------------- parameter vectors
def _vector_calls(net, vector):
    return [
        ("forward", lambda: net.forward(X3, params=vector)),
        ("predict", lambda: net.predict(X3, params=vector)),
        ("loss", lambda: net.loss(X3, Y3, params=vector)),
        ("loss_and_grad", lambda: net.loss_and_grad(X3, Y3, params=vector)),
        ("score", lambda: net.score(X3, Y3, params=vector)),
    ]


@pytest.mark.parametrize("shape", [(5,), (20,), (1, 21), (21, 1), ()])
def test_params_of_wrong_shape(clf, shape):
    assert clf.n_params == 2 * 3 + 3 + 3 * 3 + 3 == 21
    for name, call in _vector_calls(clf, np.zeros(shape)):
        with raises(ValueError, "params", "(21,)", str(shape)):
            call()


def test_params_of_wrong_dtype_or_non_finite(clf):
    for name, call in _vector_calls(clf, np.zeros(21, dtype=int)):
        with raises(TypeError, "params", "int"):
            call()
    bad = np.zeros(21)
    bad[4] = np.nan
    for name, call in _vector_calls(clf, bad):
        with raises(ValueError, "params", "NaN"):
            call()


@pytest.mark.parametrize("thetas,words", [
    (np.zeros(21), ("thetas", "(P, 21)", "(21,)")),
    (np.zeros((4, 20)), ("thetas", "(P, 21)", "(4, 20)")),
    (np.zeros((4, 21, 1)), ("thetas", "(P, 21)")),
    (np.zeros((0, 21)), ("thetas", "empty")),
    (np.full((2, 21), np.inf), ("thetas", "NaN or inf")),
])
def test_bad_population(clf, thetas, words):
    with raises(ValueError, *words):
        clf.population_loss(thetas, X3, Y3)


def test_population_of_strings(clf):
    with raises(TypeError, "thetas"):
        clf.population_loss(np.full((2, 21), "x"), X3, Y3)


def test_unflatten_checks_the_length():
    net = fastnet.Network([2, 3, 1])
    with raises(ValueError, "vector", f"({net.n_params},)"):
        net.unflatten(np.zeros(net.n_params + 1))


# ------------------------------------------- read-only, strided, list input
def _variants(X):
    """X as a read-only array, a strided view, Fortran order, and a nested list."""
    read_only = X.copy()
    read_only.setflags(write=False)
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    strided = wide[::2, ::3]
    assert not strided.flags.c_contiguous
    return {"read_only": read_only, "strided": strided, "fortran": np.asfortranarray(X),
            "list": X.tolist()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_only_and_non_contiguous_inputs_give_the_same_results(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(dtype)
    y = rng.integers(0, 2, 40)
    net = fastnet.Network([3, 5, 2], activation="tanh", output="softmax", dtype=dtype)
    thetas = rng.normal(0, 0.5, (3, net.n_params)).astype(dtype)
    expected_out = net.forward(X)
    expected_loss, expected_grad = net.loss_and_grad(X, y)
    expected_population = net.population_loss(thetas, X, y)

    def fitted(data):
        other = fastnet.Network([3, 5, 2], activation="tanh", output="softmax", dtype=dtype)
        other.fit(data, y, epochs=2, batch_size=8)
        return other.params

    trained = fitted(X)
    for name, variant in _variants(X).items():
        np.testing.assert_array_equal(net.forward(variant), expected_out, err_msg=name)
        value, grad = net.loss_and_grad(variant, y)
        assert value == expected_loss, name
        np.testing.assert_array_equal(grad, expected_grad, err_msg=name)
        assert net.loss(variant, y) == net.loss(X, y), name
        np.testing.assert_array_equal(net.population_loss(thetas, variant, y),
                                      expected_population, err_msg=name)
        np.testing.assert_array_equal(fitted(variant), trained, err_msg=name)


@pytest.mark.slow  # compiles every kernel again for read-only arrays (minutes, cold)
def test_read_only_targets_and_params_are_fine():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 3))
    y = rng.normal(size=(10, 1))
    net = fastnet.Network([3, 4, 1], dtype=np.float64)
    expected = net.loss_and_grad(X, y)
    y_ro, p_ro = y.copy(), net.params.copy()
    y_ro.setflags(write=False)
    p_ro.setflags(write=False)
    value, grad = net.loss_and_grad(X, y_ro, params=p_ro)
    assert value == expected[0]
    np.testing.assert_array_equal(grad, expected[1])
    thetas = np.stack([net.params, net.params])
    thetas.setflags(write=False)
    np.testing.assert_allclose(net.population_loss(thetas, X, y), [value, value], rtol=1e-13)


class _Reached(Exception):
    pass


class Recorder:
    """Stands in for an engine: records the arrays a method is called with."""

    def __init__(self):
        self.arrays = []

    def __getattr__(self, name):
        def record(*args):
            self.arrays += [(name, a) for a in args if isinstance(a, np.ndarray)]
            raise _Reached
        return record


def test_kernels_only_see_writeable_arrays():
    X = np.zeros((4, 2))
    y = np.array([0, 1, 2, 0])
    net = fastnet.Network([2, 3, 3], output="softmax", dtype=np.float64)
    params = net.params.copy()
    thetas = np.zeros((2, net.n_params))
    for array in (X, params, thetas):
        array.setflags(write=False)
    net.engine = recorder = Recorder()
    for call in (lambda: net.forward(X, params=params), lambda: net.loss(X, y, params=params),
                 lambda: net.loss_and_grad(X, y, params=params),
                 lambda: net.population_loss(thetas, X, y), lambda: net.fit(X, y, epochs=1)):
        with pytest.raises(_Reached):
            call()
    assert recorder.arrays
    read_only = [name for name, a in recorder.arrays if not a.flags.writeable]
    assert read_only == []


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    y = rng.integers(0, 2, 30)
    X_copy, y_copy = X.copy(), y.copy()
    net = fastnet.Network([3, 4, 2], output="softmax", dtype=np.float64)
    net.fit(X, y, epochs=2, validation_split=0.2)
    net.loss_and_grad(X, y)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
