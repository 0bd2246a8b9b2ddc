"""Optimisers and schedules against their textbook / PyTorch definitions.

The reference updates below are written from the algorithm boxes in the
PyTorch documentation (torch.optim.SGD, RMSprop, Adam, AdamW) and from
torch.nn.utils.clip_grad_norm_ / clip_grad_value_, in plain NumPy float64,
one parameter vector at a time. fastnet's update is one fused compiled
loop; it must agree with them step after step.
"""
import dataclasses
import math

import numpy as np
import pytest

import fastnet
from fastnet.optim import OptState, get_schedule


# ------------------------------------------------------------- reference
@dataclasses.dataclass
class RefState:
    buf: np.ndarray = None        # SGD momentum buffer
    m: np.ndarray = None          # Adam first moment
    v: np.ndarray = None          # Adam / RMSprop second moment
    t: int = 0


def clip(g, clip_norm=None, clip_value=None):
    """torch.nn.utils.clip_grad_norm_ then clip_grad_value_."""
    g = g.copy()
    if clip_norm is not None:
        total_norm = math.sqrt(np.sum(g * g))
        g *= min(clip_norm / (total_norm + 1e-6), 1.0)
    if clip_value is not None:
        g = np.clip(g, -clip_value, clip_value)
    return g


def ref_sgd(p, g, s, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    s.t += 1
    g = g + weight_decay * p
    if momentum:
        s.buf = g.copy() if s.buf is None else momentum * s.buf + g
        g = g + momentum * s.buf if nesterov else s.buf
    return p - lr * g


def ref_rmsprop(p, g, s, lr, alpha=0.99, eps=1e-8, weight_decay=0.0):
    s.t += 1
    g = g + weight_decay * p
    s.v = (1 - alpha) * g * g if s.v is None else alpha * s.v + (1 - alpha) * g * g
    return p - lr * g / (np.sqrt(s.v) + eps)


def ref_adam(p, g, s, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    s.t += 1
    if decoupled:                       # AdamW: p <- p (1 - lr wd)
        p = p * (1 - lr * weight_decay)
    else:                               # Adam: L2 added to the gradient
        g = g + weight_decay * p
    s.m = (1 - b1) * g if s.m is None else b1 * s.m + (1 - b1) * g
    s.v = (1 - b2) * g * g if s.v is None else b2 * s.v + (1 - b2) * g * g
    m_hat = s.m / (1 - b1 ** s.t)
    v_hat = s.v / (1 - b2 ** s.t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def reference_update(opt):
    """(p, g, state) -> new p, the reference of an Optimizer instance, clipping first."""
    common = dict(clip_norm=opt.clip_norm, clip_value=opt.clip_value)
    if isinstance(opt, fastnet.SGD):
        rule = lambda p, g, s: ref_sgd(p, g, s, opt.lr, opt.momentum, opt.nesterov,
                                       opt.weight_decay)
    elif isinstance(opt, fastnet.RMSprop):
        rule = lambda p, g, s: ref_rmsprop(p, g, s, opt.lr, opt.alpha, opt.eps,
                                           opt.weight_decay)
    else:
        rule = lambda p, g, s: ref_adam(p, g, s, opt.lr, opt.betas, opt.eps,
                                        opt.weight_decay, isinstance(opt, fastnet.AdamW))
    return lambda p, g, s: rule(p, clip(g, **common), s)


OPTIMIZERS = {
    "sgd": fastnet.SGD(lr=0.1),
    "sgd_momentum": fastnet.SGD(lr=0.1, momentum=0.9),
    "nesterov": fastnet.SGD(lr=0.1, momentum=0.9, nesterov=True),
    "sgd_l2": fastnet.SGD(lr=0.1, momentum=0.5, weight_decay=0.1),
    "rmsprop": fastnet.RMSprop(lr=0.01),
    "rmsprop_alpha_l2": fastnet.RMSprop(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05),
    "adam": fastnet.Adam(lr=0.01),
    "adam_betas": fastnet.Adam(lr=0.01, betas=(0.8, 0.95), eps=1e-6),
    "adam_l2": fastnet.Adam(lr=0.01, weight_decay=0.1),
    "adamw": fastnet.AdamW(lr=0.01),
    "adamw_wd": fastnet.AdamW(lr=0.01, weight_decay=0.3),
    "sgd_clip_norm": fastnet.SGD(lr=0.1, clip_norm=0.5),
    "adam_clip_norm_l2": fastnet.Adam(lr=0.01, clip_norm=0.5, weight_decay=0.1),
    "sgd_clip_value": fastnet.SGD(lr=0.1, momentum=0.9, clip_value=0.3),
    "rmsprop_clip_both": fastnet.RMSprop(lr=0.01, clip_norm=1.0, clip_value=0.2),
    "adamw_clip_both": fastnet.AdamW(lr=0.01, weight_decay=0.2, clip_norm=1.5,
                                     clip_value=0.4),
}


def _grads(n, steps, seed):
    # magnitudes ~1 with a spread, so that clip_value and clip_norm (norm ~ 3) both bite
    return np.random.default_rng(seed).normal(0, 1, (steps, n))


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_matches_reference_float64(name, steps):
    opt = OPTIMIZERS[name]
    rng = np.random.default_rng(1)
    params = rng.normal(0, 1, 10)
    expected = params.copy()
    ref = reference_update(opt)
    ref_state = RefState()
    state = opt.init(params)
    assert state.t == 0 and state.m.shape == params.shape
    for g in _grads(params.size, steps, seed=2):
        state = opt.step(params, g, state)
        expected = ref(expected, g, ref_state)
    assert state.t == steps
    np.testing.assert_allclose(params, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_matches_reference_float32(name):
    opt = OPTIMIZERS[name]
    params = np.random.default_rng(1).normal(0, 1, 10).astype(np.float32)
    expected = params.astype(np.float64)
    ref, ref_state = reference_update(opt), RefState()
    state = opt.init(params)
    for g in _grads(params.size, 3, seed=2).astype(np.float32):
        state = opt.step(params, g, state)
        expected = ref(expected, g.astype(np.float64), ref_state)
    assert params.dtype == np.float32 and state.m.dtype == np.float32
    np.testing.assert_allclose(params, expected, rtol=2e-5, atol=1e-6)


def test_clipping_actually_changes_the_update():
    """The clip cases above must not pass vacuously: the gradients do get clipped."""
    g = _grads(10, 1, seed=2)[0]
    assert np.linalg.norm(g) > 1.5 and np.abs(g).max() > 0.4
    params = np.zeros(10)
    fastnet.SGD(lr=1.0, clip_norm=0.5).step(params, g, fastnet.SGD().init(params))
    # -params is the clipped gradient: norm max_norm / (norm + 1e-6) * norm ~ 0.5
    assert np.linalg.norm(params) == pytest.approx(0.5 * np.linalg.norm(g)
                                                   / (np.linalg.norm(g) + 1e-6), rel=1e-12)
    params = np.zeros(10)
    fastnet.SGD(lr=1.0, clip_value=0.3).step(params, g, fastnet.SGD().init(params))
    np.testing.assert_array_equal(-params, np.clip(g, -0.3, 0.3))


def test_clip_norm_leaves_small_gradients_alone():
    g = np.array([0.3, -0.4])  # norm 0.5 < 1: coefficient capped at 1
    params = np.zeros(2)
    fastnet.SGD(lr=1.0, clip_norm=1.0).step(params, g, fastnet.SGD().init(params))
    np.testing.assert_array_equal(params, -g)


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    params = np.array([2.0, -1.0, 0.5])
    g = np.array([0.1, 0.2, -0.3])
    a, w = params.copy(), params.copy()
    adam, adamw = fastnet.Adam(lr=0.1, weight_decay=0.5), fastnet.AdamW(lr=0.1, weight_decay=0.5)
    adam.step(a, g, adam.init(a))
    adamw.step(w, g, OptState(np.zeros(3), np.zeros(3), 0))
    # Adam's first step is -lr * sign(g + wd p) (m_hat / sqrt(v_hat) = +-1);
    # AdamW's is p (1 - lr wd) - lr sign(g).
    np.testing.assert_allclose(a, params - 0.1 * np.sign(g + 0.5 * params), rtol=1e-6)
    np.testing.assert_allclose(w, params * (1 - 0.05) - 0.1 * np.sign(g), rtol=1e-6)


def test_step_uses_the_schedule_of_the_epoch():
    opt = fastnet.SGD(lr=fastnet.StepDecay(lr=1.0, step_size=2, gamma=0.5))
    params = np.zeros(1)
    state = opt.init(params)
    state = opt.step(params, np.ones(1), state, epoch=0)   # lr 1
    state = opt.step(params, np.ones(1), state, epoch=5)   # lr 0.25
    assert params[0] == -1.25


def test_state_is_kept_outside_the_optimizer():
    """Two runs from two init()s of one optimizer object are independent and identical."""
    opt = fastnet.Adam(lr=0.01)
    grads = _grads(4, 3, seed=0)
    first, second = np.ones(4), np.ones(4)
    s1, s2 = opt.init(first), opt.init(second)
    for g in grads:
        s1 = opt.step(first, g, s1)
    for g in grads:
        s2 = opt.step(second, g, s2)
    np.testing.assert_array_equal(first, second)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.lr = 1.0


@pytest.mark.parametrize("opt", [
    fastnet.Adam(lr=0.05, weight_decay=0.01, clip_norm=1.0),
    fastnet.SGD(lr=0.1, momentum=0.9),
    fastnet.SGD(lr=0.1),  # plain SGD: the backward pass updates the weights itself
], ids=["adam", "sgd-momentum", "sgd"])
def test_fit_uses_the_same_update_as_step(opt):
    """Full-batch fit, no shuffling: each epoch is one loss_and_grad + one step()."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, 20)
    net = fastnet.Network([3, 5, 4, 3], activation="tanh", output="softmax", dtype=np.float64)
    manual = net.params.copy()
    state = opt.init(manual)
    for _ in range(3):
        _, grad = net.loss_and_grad(X, y, params=manual)
        state = opt.step(manual, grad, state)
    net.fit(X, y, optimizer=opt, epochs=3, batch_size=20, shuffle=False)
    np.testing.assert_allclose(net.params, manual, rtol=1e-12, atol=1e-14)


def test_get_optimizer_by_name():
    assert fastnet.get_optimizer("adam", lr=0.5) == fastnet.Adam(lr=0.5)
    assert fastnet.get_optimizer("SGD") == fastnet.SGD()
    assert fastnet.get_optimizer("momentum", momentum=0.9) == fastnet.SGD(momentum=0.9)
    opt = fastnet.RMSprop(lr=0.3)
    assert fastnet.get_optimizer(opt) is opt
    assert fastnet.AdamW().weight_decay == 0.01 and fastnet.Adam().lr == 0.001


# ------------------------------------------------------------- schedules
EPOCHS = range(0, 25)


@pytest.mark.parametrize("step_size,gamma", [(1, 0.5), (3, 0.1), (7, 0.9)])
def test_step_decay_is_steplr(step_size, gamma):
    schedule = fastnet.StepDecay(lr=0.2, step_size=step_size, gamma=gamma)
    # StepLR's recursive (chainable) form: multiply by gamma every step_size epochs
    lr = 0.2
    for epoch in EPOCHS:
        if epoch > 0 and epoch % step_size == 0:
            lr *= gamma
        assert schedule(epoch) == pytest.approx(lr, rel=1e-12)
        assert schedule(epoch) == pytest.approx(0.2 * gamma ** (epoch // step_size),
                                                rel=1e-15)


@pytest.mark.parametrize("gamma", [0.5, 0.95, 1.0])
def test_exponential_decay_is_exponentiallr(gamma):
    schedule = fastnet.ExponentialDecay(lr=0.1, gamma=gamma)
    lr = 0.1
    for epoch in EPOCHS:
        assert schedule(epoch) == pytest.approx(lr, rel=1e-12)
        assert schedule(epoch) == pytest.approx(0.1 * gamma ** epoch, rel=1e-15)
        lr *= gamma


@pytest.mark.parametrize("t_max,eta_min", [(10, 0.0), (7, 0.001), (1, 0.01)])
def test_cosine_annealing_is_cosineannealinglr(t_max, eta_min):
    base = 0.1
    schedule = fastnet.CosineAnnealing(lr=base, t_max=t_max, eta_min=eta_min)
    assert schedule(0) == base
    # CosineAnnealingLR's recursive form, epochs 1..t_max
    lr = base
    for epoch in range(1, t_max + 1):
        lr = ((1 + math.cos(math.pi * epoch / t_max))
              / (1 + math.cos(math.pi * (epoch - 1) / t_max)) * (lr - eta_min) + eta_min)
        closed = eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2
        assert schedule(epoch) == pytest.approx(closed, rel=1e-12, abs=1e-15)
        assert schedule(epoch) == pytest.approx(lr, rel=1e-9, abs=1e-12)
    assert schedule(t_max) == pytest.approx(eta_min, abs=1e-15)
    # Past t_max fastnet holds eta_min (PyTorch's closed form would rise again).
    for epoch in range(t_max, t_max + 5):
        assert schedule(epoch) == pytest.approx(eta_min, abs=1e-15)


def test_get_schedule_by_name():
    assert get_schedule("step", lr=0.1, step_size=2) == fastnet.StepDecay(0.1, 2)
    assert get_schedule("Exponential", lr=0.1, gamma=0.5)(2) == pytest.approx(0.025)
    assert get_schedule("cosine", lr=0.1, t_max=4)(2) == pytest.approx(0.05)


# ------------------------------------------- every optimiser minimises
def quadratic(x):
    """f = 1/2 sum a_i x_i^2 with condition number 10; minimum 0 at the origin."""
    a = np.array([1.0, 10.0])
    return 0.5 * float(np.sum(a * x * x)), a * x


def rosenbrock(x):
    """f = (1 - x)^2 + 100 (y - x^2)^2; minimum 0 at (1, 1)."""
    f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    g = np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2),
                  200 * (x[1] - x[0] ** 2)])
    return f, g


# (id, optimiser, objective, start, steps, tolerance on f, minimiser)
CONVERGENCE = [
    ("sgd", fastnet.SGD(lr=0.05), quadratic, [1.5, -2.0], 500, 1e-12, [0, 0]),
    ("momentum", fastnet.SGD(lr=0.05, momentum=0.9), quadratic, [1.5, -2.0], 500, 1e-12,
     [0, 0]),
    ("nesterov", fastnet.SGD(lr=0.05, momentum=0.9, nesterov=True), quadratic, [1.5, -2.0],
     500, 1e-12, [0, 0]),
    ("rmsprop", fastnet.RMSprop(lr=0.01), quadratic, [1.5, -2.0], 1000, 1e-12, [0, 0]),
    ("adam", fastnet.Adam(lr=0.05), quadratic, [1.5, -2.0], 1000, 1e-12, [0, 0]),
    ("adamw", fastnet.AdamW(lr=0.05), quadratic, [1.5, -2.0], 1000, 1e-12, [0, 0]),
    ("sgd_clip_norm", fastnet.SGD(lr=0.05, clip_norm=1.0), quadratic, [1.5, -2.0], 1000,
     1e-12, [0, 0]),
    ("adam_clip_value", fastnet.Adam(lr=0.05, clip_value=0.5), quadratic, [1.5, -2.0], 1000,
     1e-12, [0, 0]),
    ("adam_rosenbrock", fastnet.Adam(lr=0.02), rosenbrock, [-1.5, 2.0], 5000, 1e-10, [1, 1]),
]


@pytest.mark.parametrize("name,opt,objective,start,steps,tol,minimum", CONVERGENCE,
                         ids=[c[0] for c in CONVERGENCE])
def test_optimizer_minimises(name, opt, objective, start, steps, tol, minimum):
    x = np.array(start, dtype=np.float64)
    f0 = objective(x)[0]
    state = opt.init(x)
    for _ in range(steps):
        _, grad = objective(x)
        state = opt.step(x, grad, state)
    f = objective(x)[0]
    assert f < tol < f0
    np.testing.assert_allclose(x, minimum, atol=1e-4)
