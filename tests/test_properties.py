"""Property tests (hypothesis) over random topologies and random garbage.

* gradcheck passes on random networks: depth 1-5, widths 1-64, every hidden
  activation, every (output, loss) pair, float32 and float64 networks (the
  check itself runs in float64);
* save / load round trips bit for bit;
* population_loss equals the row-by-row loss, to the tolerance of
  tests/test_training.py;
* garbage for any one argument of Network(), fit(), loss() (and predict,
  score), population_loss(), StepTrainer(...).step(), minimize() and
  datasets.load() either works or raises ValueError / TypeError: never
  IndexError, ZeroDivisionError, AttributeError, a NumbaError or a crash
  of the interpreter (they run in this process, so a segfault would end
  the session).

Every property runs twice: a small number of examples by default, and many
more under ``-m slow``. Hypothesis is derandomized (a fixed seed) and keeps no
example database, so every run tries the same examples.
"""
import math
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fastnet
from comparisons import TRAINERS, minimize
from fastnet.activations import HIDDEN_ACTIVATIONS, SURROGATE_ACTIVATIONS
from reference import ACTIVATIONS as REFERENCE

BASE = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


def twice(fast, slow, **strategies):
    """(default test, slow test) of one property, with ``fast`` and ``slow`` examples."""
    def make(function):
        quick = settings(BASE, max_examples=fast)(given(**strategies)(function))
        thorough = settings(BASE, max_examples=slow)(given(**strategies)(function))
        return quick, pytest.mark.slow(thorough)
    return make


# ------------------------------------------------------------- topologies
#: the properties below compare gradients with f' (a surrogate is not one)
EXACT_ACTIVATIONS = [a for a in HIDDEN_ACTIVATIONS if a not in SURROGATE_ACTIVATIONS]
#: every (output, loss) pair a Network accepts: the two canonical ones, and
#: mse after any elementwise output
PAIRS = [("softmax", "cross_entropy"), ("sigmoid", "bce")] + [
    (name, "mse") for name in EXACT_ACTIVATIONS]
#: activations with a kink at 0 (elu: its second derivative jumps there)
KINKED = {"relu", "leaky_relu", "elu"}


@st.composite
def topologies(draw, max_width=64):
    depth = draw(st.integers(1, 5))   # weight layers
    hidden = [draw(st.integers(1, max_width)) for _ in range(depth - 1)]
    output, loss = draw(st.sampled_from(PAIRS))
    n_out = draw(st.integers(2 if loss == "cross_entropy" else 1, 5))
    return dict(sizes=[draw(st.integers(1, 6))] + hidden + [n_out],
                activation=[draw(st.sampled_from(EXACT_ACTIVATIONS)) for _ in hidden],
                output=output, loss=loss, dtype=draw(st.sampled_from(["float32", "float64"])))


def _targets(rng, topology, n):
    n_out, loss = topology["sizes"][-1], topology["loss"]
    if loss == "cross_entropy":
        return rng.integers(0, n_out, n)
    if loss == "bce":
        return rng.uniform(0.05, 0.95, (n, n_out))
    return rng.normal(0, 1, (n, n_out))


def _parameters(rng, sizes, activations):
    """Weights ~ N(0, 1/fan_in) (sigmoid layers wider: sigmoid' <= 1/4), biases ~ N(0, 0.3^2)."""
    blocks = []
    for (fan_in, fan_out), act in zip(zip(sizes[:-1], sizes[1:]), activations):
        scale = (3.0 if act == "sigmoid" else 1.0) / math.sqrt(fan_in)
        blocks += [rng.normal(0, scale, fan_in * fan_out), rng.normal(0, 0.3, fan_out)]
    return np.concatenate(blocks)


def _pre_activations(theta, sizes, activations, X):
    """Every layer's pre-activation, in float64 NumPy (the reference's activations)."""
    zs, a, k = [], X, 0
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = theta[k:k + fan_in * fan_out].reshape(fan_in, fan_out)
        b = theta[k + fan_in * fan_out:k + fan_in * fan_out + fan_out]
        k += fan_in * fan_out + fan_out
        z = a @ W + b
        zs.append(z)
        if l < len(sizes) - 2:
            a = REFERENCE[activations[l]][0](z)
    return zs


def _gradcheck_property(topology, seed):
    """Drawn as tests/test_gradients.py draws its cases: parameters and data
    are redrawn (seeded) until no pre-activation of a kinked activation lies
    within 1e-3 of its kink, where central differences with eps = 1e-5 would
    straddle it. Small gradient components need no filter: gradcheck judges
    those below its noise floor absolutely."""
    sizes = topology["sizes"]
    acts = topology["activation"] + [topology["output"]]
    n = 3
    for attempt in range(40):
        rng = np.random.default_rng([seed, attempt])
        X = rng.normal(size=(n, sizes[0]))
        y = _targets(rng, topology, n)
        theta = _parameters(rng, sizes, acts)
        zs = _pre_activations(theta, sizes, acts, X)
        if not any(act in KINKED and np.any(np.abs(z) < 1e-3) for act, z in zip(acts, zs)):
            break
    else:
        assume(False)   # rare: wide relu networks where every draw grazes a kink
    net = fastnet.Network(**topology)
    net.params = theta
    assert net.params.dtype == np.dtype(topology["dtype"])
    if topology["dtype"] == "float32":   # the check runs on the float32-rounded parameters
        theta = net.params.astype(np.float64)
        zs = _pre_activations(theta, sizes, acts, X)
        assume(not any(act in KINKED and np.any(np.abs(z) < 1e-3) for act, z in zip(acts, zs)))
    error = fastnet.gradcheck(net, X, y, max_params=60, seed=seed)
    assert error < 1e-6, f"gradcheck error {error:.3g} for {topology}"


test_gradcheck_random_topologies, test_gradcheck_random_topologies_slow = twice(
    100, 2000, topology=topologies(), seed=st.integers(0, 2 ** 32 - 1))(_gradcheck_property)


# -------------------------------------------------------------- save / load
@st.composite
def networks_with_parameters(draw):
    topology = draw(topologies(max_width=16))
    net = fastnet.Network(**topology, seed=draw(st.integers(0, 2 ** 32 - 1)))
    width = 32 if topology["dtype"] == "float32" else 64
    values = hnp.arrays(net.dtype, net.n_params, elements=st.floats(
        width=width, allow_nan=False, allow_infinity=False), fill=st.floats(
        width=width, allow_nan=False, allow_infinity=False))
    net.params = draw(values)
    return net


def _round_trip_property(net):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "net.npz")
        fastnet.save(net, path)
        loaded = fastnet.load(path)
    assert loaded.config() == net.config() and repr(loaded) == repr(net)
    assert loaded.params.dtype == net.params.dtype
    assert loaded.params.tobytes() == net.params.tobytes()   # bits: -0.0, subnormals too


test_save_load_round_trip_is_exact, test_save_load_round_trip_is_exact_slow = twice(
    50, 1000, net=networks_with_parameters())(_round_trip_property)


# ------------------------------------------------------- population loss
def _population_property(topology, rows, members, seed):
    """Row i of population_loss is loss(params=thetas[i]) to rtol 1e-13 in float64
    and 1e-6 in float32, the tolerances of tests/test_training.py and for its
    reason: both accumulate in float64, but in other chunks (and, for large
    enough layers, BLAS against loops, or a parallel region), so the
    summation order differs and results agree to rounding, not bit for bit."""
    rng = np.random.default_rng(seed)
    net = fastnet.Network(**topology)
    X = rng.normal(size=(rows, topology["sizes"][0]))
    y = _targets(rng, topology, rows)
    acts = topology["activation"] + [topology["output"]]
    thetas = np.stack([_parameters(rng, topology["sizes"], acts) for _ in range(members)])
    losses = net.population_loss(thetas, X, y)
    assert losses.shape == (members,) and losses.dtype == np.float64
    expected = [net.loss(X, y, params=theta) for theta in thetas]
    rtol = 1e-13 if topology["dtype"] == "float64" else 1e-6
    np.testing.assert_allclose(losses, expected, rtol=rtol)


test_population_loss_equals_row_by_row_loss, test_population_loss_equals_row_by_row_loss_slow = \
    twice(60, 1000, topology=topologies(),
          rows=st.sampled_from([1, 2, 7, 63, 64, 65, 128, 129, 256, 300]),
          members=st.integers(1, 7), seed=st.integers(0, 2 ** 32 - 1))(_population_property)


# ------------------------------------------------------------------ garbage
class _Opaque:
    """An object NumPy and fastnet know nothing about."""

    def __repr__(self):
        return "<opaque>"


INTS = st.one_of(st.integers(-3, 70),
                 st.sampled_from([2 ** 31, 2 ** 32 + 1, 2 ** 63, -2 ** 63, 10 ** 30, 2 ** 64]))
FLOATS = st.one_of(st.floats(), st.sampled_from(
    [0.0, -0.0, 1e-300, -1.0, 0.5, 1.0, 2.5, 1e30, 1e308, math.inf, -math.inf, math.nan]))
SCALARS = st.one_of(
    st.none(), st.booleans(), INTS, FLOATS, st.text(max_size=4), st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.sampled_from([_Opaque(), np.float32(1.5), np.float64(np.nan), np.int64(3),
                     np.uint8(255), np.bool_(True), (), [], {}, set(), "relu", "adam",
                     "cmaes", "softmax", "mse", "float32", "xor", "sgd", "identity"]),
    st.just(lambda *args, **kwargs: None))
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.int8,
                          np.uint8, np.uint64, np.bool_, np.complex128, "U2", "S2",
                          "datetime64[s]", "timedelta64[s]"])
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))


def _read_only(array):
    array = array.copy()
    array.setflags(write=False)
    return array


def _object_array(items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


GARBAGE = st.one_of(
    SCALARS, ARRAYS, ARRAYS.map(_read_only), ARRAYS.map(lambda a: a[::-1] if a.ndim else a),
    ARRAYS.map(lambda a: a.T), st.lists(SCALARS, max_size=4).map(_object_array),
    st.lists(SCALARS, max_size=4), st.lists(st.lists(FLOATS, max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2), st.tuples(SCALARS, SCALARS))


def _cast(array, dtype):
    with np.errstate(over="ignore"):   # 1e39 becomes inf in float32: garbage too
        return array.astype(dtype)


def _near(shape, dtype=np.float64):
    """Arrays of the right shape (or nearly) holding odd values: extremes, NaN,
    integers, booleans, read-only or strided memory."""
    rows, cols = shape
    shapes = st.sampled_from([(rows, cols), (rows, cols + 1), (rows + 1, cols), (1, cols),
                              (rows,), (rows, cols, 1), (0, cols), (rows, 0)])
    values = st.one_of(FLOATS, st.sampled_from([3.5e38, -1e39, 1e-45, 2.0 ** 64]))
    floats = shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=values)).map(
        lambda a: _cast(a, dtype))
    ints = shapes.flatmap(lambda s: hnp.arrays(
        st.sampled_from([np.int64, np.int8, np.uint8, np.bool_]), s))
    return st.one_of(floats, ints, floats.map(_read_only),
                     floats.map(lambda a: np.asfortranarray(a)))


def _works_or_refuses(call, *also):
    """Run ``call``: it may return anything, or raise ValueError / TypeError.
    A ComplexWarning (NumPy dropping an imaginary part) is an error: it means
    a complex input was taken silently for a real one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        try:
            call()
        except (ValueError, TypeError) + also:
            pass


def _stop_after(epochs):
    return lambda net, epoch, logs: epoch + 1 >= epochs


X20 = np.random.default_rng(0).normal(size=(20, 3))
Y20 = np.arange(20) % 2
Y20_MATRIX = np.eye(2)[Y20]

# --- Network()
NETWORK_ARGUMENTS = ["sizes", "activation", "output", "loss", "init", "dtype", "seed",
                     "backend"]


def _network_property(argument, value):
    from fastnet.cuda_engine import CudaUnavailableError
    kwargs = dict(sizes=[3, 4, 2], activation="tanh", output="softmax")
    kwargs[argument] = value
    # backend='cuda' is a valid request that this machine may not be able to grant
    _works_or_refuses(lambda: fastnet.Network(**kwargs), CudaUnavailableError)


test_network_garbage, test_network_garbage_slow = twice(
    300, 6000, argument=st.sampled_from(NETWORK_ARGUMENTS),
    value=st.one_of(GARBAGE, st.lists(INTS, min_size=2, max_size=6)))(_network_property)

# --- fit()
FIT_ARGUMENTS = ["X", "y", "optimizer", "epochs", "batch_size", "validation_split",
                 "validation_data", "early_stopping", "restore_best", "dropout", "shuffle",
                 "seed", "progress", "callbacks", "checkpoint", "checkpoint_every", "resume"]


def _fit_property(argument, value):
    if argument == "checkpoint" and isinstance(value, (str, bytes, os.PathLike)):
        value = None   # a garbage string is a valid file name; tests/test_checkpoints.py
    net = fastnet.Network([3, 4, 2], activation="relu", output="softmax")
    kwargs = dict(X=X20, y=Y20, epochs=2, batch_size=8, callbacks=[_stop_after(2)])
    kwargs[argument] = value
    if argument == "epochs":
        kwargs["callbacks"] = [_stop_after(2)]   # garbage like 2**63 epochs would never end
    X, y = kwargs.pop("X"), kwargs.pop("y")
    _works_or_refuses(lambda: net.fit(X, y, **kwargs))
    assert np.isfinite(net.params).all()


test_fit_garbage, test_fit_garbage_slow = twice(
    300, 8000, argument=st.sampled_from(FIT_ARGUMENTS),
    value=st.one_of(GARBAGE, _near((20, 3)), st.lists(FLOATS, max_size=3),
                    st.tuples(_near((5, 3)), GARBAGE)))(_fit_property)

# --- loss(), loss_and_grad(), score(), predict(), population_loss()
METHODS = ["loss", "loss_and_grad", "score", "predict", "forward"]


def _loss_property(method, argument, value):
    net = fastnet.Network([3, 4, 2], activation="tanh", output="softmax")
    kwargs = dict(X=X20, y=Y20, params=None)
    kwargs[argument] = value
    if method in ("predict", "forward"):
        kwargs.pop("y")
    _works_or_refuses(lambda: getattr(net, method)(**kwargs))


test_loss_garbage, test_loss_garbage_slow = twice(
    300, 8000, method=st.sampled_from(METHODS), argument=st.sampled_from(["X", "y", "params"]),
    value=st.one_of(GARBAGE, _near((20, 3)), _near((20, 2)),
                    hnp.arrays(np.float64, 26, elements=FLOATS)))(_loss_property)


def _population_garbage_property(argument, value):
    net = fastnet.Network([3, 4, 2], activation="tanh", output="softmax")
    kwargs = dict(thetas=np.zeros((3, net.n_params)), X=X20, y=Y20)
    kwargs[argument] = value
    _works_or_refuses(lambda: net.population_loss(**kwargs))


test_population_loss_garbage, test_population_loss_garbage_slow = twice(
    300, 6000, argument=st.sampled_from(["thetas", "X", "y"]),
    value=st.one_of(GARBAGE, _near((3, 26)), _near((20, 3))))(_population_garbage_property)

# --- StepTrainer(...).step()
STEP_ARGUMENTS = ["X", "y", "optimizer", "dropout", "seed", "batch_size"]


def _step_property(argument, value):
    net = fastnet.Network([3, 4, 2], activation="relu", output="softmax")
    kwargs = dict(X=X20[:8].astype(np.float32), y=Y20_MATRIX[:8].astype(np.float32),
                  optimizer="sgd", dropout=0.0, seed=None, batch_size=8)
    kwargs[argument] = value
    X, y = kwargs.pop("X"), kwargs.pop("y")
    before = net.params.copy()

    def step():
        trainer = fastnet.StepTrainer(net, **kwargs)
        try:
            trainer.step(X, y)
        except ValueError:
            np.testing.assert_array_equal(net.params, before)   # a refused step changes nothing
            raise

    _works_or_refuses(step)


test_step_garbage, test_step_garbage_slow = twice(
    300, 6000, argument=st.sampled_from(STEP_ARGUMENTS),
    value=st.one_of(GARBAGE, _near((8, 3), np.float32), _near((8, 2), np.float32)))(
    _step_property)

# --- minimize()
MINIMIZE_ARGUMENTS = ["fun", "x0", "method", "max_evals", "target", "seed", "vectorized",
                      "sigma0", "callback", "popsize", "checkpoint_every", "resume", "option"]


def _sphere(X):
    """One candidate (D,) or a population (P, D): vectorized=True and False both work."""
    return np.sum(np.square(X), axis=-1)


def _minimize_property(argument, value, method, option):
    kwargs = dict(fun=_sphere, x0=np.ones(3), method=method, max_evals=300, vectorized=True,
                  callback=lambda trainer: trainer.generation >= 3)
    if argument == "option":
        kwargs[option] = value   # each method's own settings (and unknown names)
    else:
        kwargs[argument] = value
    fun, x0 = kwargs.pop("fun"), kwargs.pop("x0")
    _works_or_refuses(lambda: minimize(fun, x0, **kwargs))


OPTION_NAMES = sorted({name for cls in TRAINERS.values() for name in cls.defaults}) + [
    "not_an_option"]
test_minimize_garbage, test_minimize_garbage_slow = twice(
    300, 8000, argument=st.sampled_from(MINIMIZE_ARGUMENTS), value=GARBAGE,
    method=st.sampled_from(sorted(TRAINERS)), option=st.sampled_from(OPTION_NAMES))(
    _minimize_property)

# --- datasets.load()


def _load_property(argument, value):
    kwargs = dict(name="iris", seed=0, test_size=0.25)
    kwargs[argument] = value
    _works_or_refuses(lambda: fastnet.datasets.load(**kwargs))


test_load_garbage, test_load_garbage_slow = twice(
    100, 2000, argument=st.sampled_from(["name", "seed", "test_size"]),
    value=st.one_of(GARBAGE, st.sampled_from(fastnet.datasets.NAMES)))(_load_property)
