"""One run: a method trains a problem's network within a budget, and its trace.

The budget and every logged point are counted three ways (see budget.py):
loss evaluations, forward-pass equivalents and seconds. The seconds count
only training: the extra forward passes that measure a logged point (test
loss and score) are neither timed nor counted.

Hybrids (``HYBRID_METHODS``) join a gradient-free trainer and backprop in one
run: one budget, one cost count, one trace.

* ``ga+bp`` and ``cmaes+bp`` (a warm start): the trainer spends the first
  ``switch`` fraction of the budget, then backprop, with the "backprop"
  method's Adam settings, trains the trainer's best vector until the budget
  is spent.
* ``memetic`` and ``memetic-baldwin`` (``comparisons.trainers.Memetic``): a
  GA whose every child takes ``local_steps`` Adam steps on random
  mini-batches before its loss on the whole training set is taken; the
  learned vector is inherited (Lamarckian) or only its loss (Baldwinian).
  A child costs ``local_steps`` x 3 x batch FPE for its steps plus N for
  its loss, and counts as 1 + ``local_steps`` evaluations.

A hybrid's options come in one flat dict: ``lr`` and ``batch_size`` are
backprop's, ``switch`` and ``local_steps`` the hybrid's, the rest the
trainer's.
"""
import math
import time

import numba
import numpy as np

import fastnet
from fastnet._checks import check_float, check_int, check_name
from comparisons.budget import BACKPROP_FPE_PER_SAMPLE, Cost, LogSchedule
from comparisons.objectives import OBJECTIVES
from comparisons.problems import Problem, get_problem
from comparisons.scale import guard
from comparisons.trainers import Memetic, get_trainer

#: options for each method on networks (the trainers' own defaults otherwise)
METHOD_OPTIONS = {
    "ga": {"sigma0": 0.5},
    "pso": {"sigma0": 0.5},
    "de": {"sigma0": 0.5, "popsize": 50},
    "cmaes": {"sigma0": 0.5},
    "sep-cmaes": {"sigma0": 0.5},
    "es": {"sigma0": 0.05, "popsize": 50},
    "anneal": {"sigma0": 0.1},
    "hillclimb": {"sigma0": 0.1},
    "random": {"sigma0": 1.0, "popsize": 50},
}
BACKPROP_OPTIONS = {"lr": 0.01, "batch_size": 32}
METHODS = ("backprop",) + tuple(METHOD_OPTIONS)
#: hybrid -> its options (the trainer's, backprop's and its own; see the module)
HYBRID_OPTIONS = {
    "ga+bp": {**METHOD_OPTIONS["ga"], **BACKPROP_OPTIONS, "switch": 0.5},
    "cmaes+bp": {**METHOD_OPTIONS["cmaes"], **BACKPROP_OPTIONS, "switch": 0.5},
    "memetic": {**METHOD_OPTIONS["ga"], **BACKPROP_OPTIONS, "local_steps": 5,
                "inheritance": "lamarckian"},
    "memetic-baldwin": {**METHOD_OPTIONS["ga"], **BACKPROP_OPTIONS, "local_steps": 5,
                        "inheritance": "baldwinian"},
}
#: hybrid -> the gradient-free method it is built on (what the scale guard checks)
HYBRID_BASES = {"ga+bp": "ga", "cmaes+bp": "cmaes", "memetic": "ga", "memetic-baldwin": "ga"}
#: run() takes these too; they stay out of METHODS, the full sweep's default methods
HYBRID_METHODS = tuple(HYBRID_OPTIONS)


class Trace:
    """Logged points of one run, as columns."""
    columns = ("evals", "fpe", "seconds", "train_loss", "test_loss", "test_score")

    def __init__(self, net, data, budget, on_log=None, target=None):
        self.net = net
        self.on_log = on_log
        self.target = target    # the training value that counts as solved (None: none)
        self.X_train, self.Y_train, self.X_test, self.Y_test = data
        self.schedule = LogSchedule(budget)
        self.points = {column: [] for column in self.columns}
        self.fpe_to_target = None

    def log(self, cost, params, train_loss, force=False):
        if not (force or self.schedule.due(cost.fpe)):
            return
        engine = self.net.engine
        test_loss = engine.loss(params, self.X_test, self.Y_test)
        test_score = self.net.score_outputs(engine.forward(params, self.X_test), self.Y_test)
        for column, value in zip(self.columns, (cost.evals, cost.fpe, cost.seconds,
                                                train_loss, test_loss, test_score)):
            self.points[column].append(_finite_or_none(value))
        if self.on_log is not None:
            self.on_log(np.array(params, dtype=np.float64))

    def reached(self, cost, train_loss):
        if self.fpe_to_target is None and self.target is not None and \
                train_loss <= self.target:
            self.fpe_to_target = {"evals": cost.evals, "fpe": cost.fpe,
                                  "seconds": cost.seconds}


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def prepared_data(net, problem):
    X_train, y_train, X_test, y_test = problem.data(seed=0)
    return (net._inputs(X_train), net.targets(y_train), net._inputs(X_test),
            net.targets(y_test))


def run(problem, method, seed, budget=None, device="cpu", options=None, on_log=None,
        objective="loss"):
    """Train ``problem`` (a Problem or its name) with ``method``; return a result record.

    ``on_log(params)``, if given, receives a float64 copy of the parameters at
    every point the trace logs (for studies that follow the path itself).
    ``objective``: what a gradient-free method minimises, a name in
    ``comparisons.objectives.OBJECTIVES`` (the trace's ``train_loss`` is its
    value); backprop and the hybrids train on the network's loss only."""
    if isinstance(problem, str):
        problem = get_problem(problem)
    elif not isinstance(problem, Problem):
        raise TypeError(f"problem must be a problem name or a Problem, got {problem!r}")
    method = check_name("method", method, METHODS + HYBRID_METHODS)
    seed = check_int("seed", seed, 0)
    budget = problem.budget if budget is None else check_int("budget", budget)
    device = check_name("device", device, ("cpu", "cuda"))
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict of the method's settings, got {options!r}")
    objective = check_name("objective", objective, OBJECTIVES)
    if objective != "loss" and method not in METHOD_OPTIONS:
        raise ValueError(f"objective={objective!r} needs a gradient-free method; "
                         f"method={method!r} trains on the network's loss")
    net = problem.network(seed=seed, backend=device)
    data = prepared_data(net, problem)
    # the problem's target is a value of its loss, not of another objective
    trace = Trace(net, data, budget, on_log,
                  problem.target_loss if objective == "loss" else None)
    options = {**_default_options(method), **(options or {})}
    record = {"problem": problem.name, "method": method, "seed": seed, "budget": budget,
              "device": device, "n_params": net.n_params, "sizes": list(net.sizes),
              "n_train": len(data[0]), "options": options, "objective": objective,
              "status": "completed", "message": ""}
    if method == "backprop":
        cost = _run_backprop(net, data, budget, seed, options, trace, record)
    else:
        base = HYBRID_BASES.get(method, method)
        try:
            runs_as, note = _scale_guard(net, len(data[0]), base, options)
        except ValueError as refusal:
            record.update(status="skipped", message=str(refusal))
            cost = Cost()
        else:
            # the guard may switch cmaes to sep-cmaes: "cmaes+bp" then runs as "sep-cmaes+bp"
            record.update(runs_as=method.replace(base, runs_as, 1), message=note)
            if method in HYBRID_RUNNERS:
                cost = HYBRID_RUNNERS[method](net, data, budget, seed, runs_as, options, trace,
                                              record)
            else:
                cost = _run_gradient_free(net, data, budget, seed, runs_as, options, trace,
                                          record, objective)
    record.update(trace=trace.points, fpe_to_target=trace.fpe_to_target,
                  target_loss=problem.target_loss, evals=cost.evals, fpe=cost.fpe,
                  seconds=cost.seconds, threads=numba.get_num_threads(),
                  fastnet_version=fastnet.__version__)
    return record


def _default_options(method):
    if method == "backprop":
        return BACKPROP_OPTIONS
    return HYBRID_OPTIONS[method] if method in HYBRID_OPTIONS else METHOD_OPTIONS[method]


def _scale_guard(net, n_train, method, options):
    """(method to run, note) from ``comparisons.scale.guard`` for this network: full
    CMA-ES too large for the machine runs as sep-CMA-ES, and what cannot fit is
    refused (ValueError) before anything is allocated."""
    popsize = options.get("popsize") or get_trainer(method).default_popsize(net.n_params)
    evaluation_flops = net.flops_per_sample() * n_train * popsize
    return guard(method, net.n_params, popsize, evaluation_flops)


def _run_gradient_free(net, data, budget, seed, method, options, trace, record, objective):
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=seed, **options)
    evaluate = _population_losses(net, data, objective)
    cost = _start(net, data, trace, evaluate(net.params[None])[0][0])
    n_train = len(data[0])
    generation = _evolve(net, trainer, evaluate, Cost(1, n_train), budget, cost, trace,
                         record)
    _check_evolved(trainer, cost, budget, generation, f"{n_train} samples", record)
    return cost


def _run_warm_start(net, data, budget, seed, method, options, trace, record):
    """Trainer ``method`` for the first ``switch`` of the budget, then backprop from its best."""
    trainer_options, backprop, settings = _split_hybrid_options(options, ("switch",))
    switch = check_float("switch", settings["switch"], 0.0, 1.0)
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=seed, **trainer_options)
    cost = _start(net, data, trace)
    n_train = len(data[0])
    switch_budget = int(switch * budget)
    generation = _evolve(net, trainer, _population_losses(net, data), Cost(1, n_train),
                         switch_budget, cost, trace, record)
    record["hybrid"] = {"gradient_free": method, "switch": switch,
                        "switch_budget": switch_budget, "switch_fpe": cost.fpe,
                        "switch_evals": cost.evals,
                        "switch_loss": _finite_or_none(trainer.best_loss)}
    if cost.evals == 0:
        _add_message(record, f"the gradient-free part's {switch_budget:,} forward-pass "
                     f"equivalents are less than one generation ({generation} candidates x "
                     f"{n_train} samples): backprop trained the starting network")
    # with no finite candidate, best is still the starting network
    net.params[:] = _as_params(net, trainer.best)
    return _descend(net, data, budget, seed, backprop, trace, record, cost)


def _run_memetic(net, data, budget, seed, method, options, trace, record):
    """A Memetic GA whose children take ``local_steps`` Adam steps before their loss."""
    trainer_options, backprop, settings = _split_hybrid_options(options, ("local_steps",))
    steps = check_int("local_steps", settings["local_steps"])
    trainer = Memetic(net.params.astype(np.float64), seed=seed, **trainer_options)
    n_train = len(data[0])
    batch_size = min(check_int("batch_size", backprop["batch_size"]), n_train)
    per_child = Cost(evals=1 + steps,
                     fpe=n_train + steps * BACKPROP_FPE_PER_SAMPLE * batch_size)
    cost = _start(net, data, trace)
    learn = _learning(net, data, seed, backprop, steps)
    generation = _evolve(net, trainer, learn, per_child, budget, cost, trace, record)
    record["hybrid"] = {"gradient_free": method, "inheritance": trainer.inheritance,
                        "local_steps": steps, "batch_size": batch_size,
                        "fpe_per_child": per_child.fpe, "evals_per_child": per_child.evals}
    _check_evolved(trainer, cost, budget, generation,
                   f"{per_child.fpe} forward-pass equivalents", record)
    return cost


HYBRID_RUNNERS = {"ga+bp": _run_warm_start, "cmaes+bp": _run_warm_start,
                  "memetic": _run_memetic, "memetic-baldwin": _run_memetic}


def _split_hybrid_options(options, own):
    """(the trainer's options, backprop's, the hybrid's ``own``) from one flat dict."""
    options = dict(options)
    backprop = {name: options.pop(name) for name in BACKPROP_OPTIONS}
    settings = {name: options.pop(name) for name in own}
    return options, backprop, settings


def _start(net, data, trace, value=None):
    """A new cost count, and the starting network logged as the trace's first point
    (with its training ``value``; default: its loss)."""
    cost = Cost()
    if value is None:
        value = net.engine.loss(net.params, data[0], data[1])
    trace.log(cost, net.params, value, force=True)
    return cost


def _as_params(net, vector):
    return np.ascontiguousarray(vector, dtype=net.dtype)


def _population_losses(net, data, objective="loss"):
    """evaluate(candidates) -> (values,): each candidate's ``objective`` on the training
    set (the loss straight from the engine, anything else from OBJECTIVES)."""
    def evaluate(candidates):
        with np.errstate(over="ignore"):  # a huge candidate becomes inf: its loss is worst
            thetas = _as_params(net, candidates)
        if objective == "loss":
            return (net.engine.population_loss(thetas, data[0], data[1]),)
        return (OBJECTIVES[objective](net, thetas, data[0], data[1]),)
    return evaluate


def _learning(net, data, seed, backprop, steps):
    """evaluate(children) -> (losses, learned): each child takes ``steps`` Adam steps on
    mini-batches drawn without replacement, then its loss on the training set is taken.
    A child whose learning diverges is told as born, with an infinite loss."""
    X_train, Y_train = data[0], data[1]
    backprop = dict(backprop)
    batch_size = min(backprop.pop("batch_size"), len(X_train))
    optimizer = fastnet.Adam(**backprop)
    no_dropout = [0.0] * (len(net.sizes) - 2)
    rng = np.random.default_rng([seed, 1])  # a stream apart from the trainer's PCG64(seed)

    def evaluate(children):
        with np.errstate(over="ignore"):
            learned = _as_params(net, children).copy()
        finite = np.empty(len(children), dtype=bool)
        for i, child in enumerate(learned):  # a fresh Adam per child, training the row in place
            runner = net.engine.trainer(child, X_train, Y_train, batch_size, optimizer,
                                        no_dropout, 0)
            order = np.concatenate([rng.permutation(len(X_train))[:batch_size]
                                    for _ in range(steps)])
            finite[i] = runner.run_epoch(order, optimizer.lr_at(0))[2]
            runner.sync()
        losses = np.asarray(net.engine.population_loss(learned, X_train, Y_train), np.float64)
        losses[~finite] = np.inf
        learned = learned.astype(np.float64)
        learned[~finite] = children[~finite]
        return losses, learned
    return evaluate


def _evolve(net, trainer, evaluate, per_candidate, budget, cost, trace, record):
    """Ask, ``evaluate`` and tell until the next generation would take ``cost`` past
    ``budget`` FPE or the trainer stops; ``per_candidate``: one candidate's Cost.
    Logs the best at the end; returns the size of the last generation asked."""
    while True:
        start = time.perf_counter()
        candidates = trainer.ask()
        if cost.fpe + len(candidates) * per_candidate.fpe > budget:
            break
        trainer.tell(*evaluate(candidates))
        cost.add(evals=len(candidates) * per_candidate.evals,
                 fpe=len(candidates) * per_candidate.fpe, seconds=time.perf_counter() - start)
        trace.reached(cost, trainer.best_loss)
        trace.log(cost, _as_params(net, trainer.best), trainer.best_loss)
        if trainer.stop():
            _add_message(record, f"trainer stopped: {trainer.stop()}")
            break
    trace.log(cost, _as_params(net, trainer.best), trainer.best_loss, force=True)
    return len(candidates)


def _check_evolved(trainer, cost, budget, generation, per_candidate, record):
    """Mark a run that could not afford one generation, or that found nothing finite."""
    if cost.evals == 0:
        record["status"] = "skipped"
        _add_message(record, f"the budget of {budget:,} forward-pass equivalents is less "
                     f"than one generation ({generation} candidates x {per_candidate})")
    elif not math.isfinite(trainer.best_loss):   # NaN and inf losses count as the worst
        record["status"] = "diverged"
        _add_message(record, "the loss was NaN or inf for every candidate: there is no "
                     "finite candidate to keep, and the last point is the starting network")


def _add_message(record, text):
    record["message"] = "; ".join(part for part in (record["message"], text) if part)


def _run_backprop(net, data, budget, seed, options, trace, record):
    return _descend(net, data, budget, seed, options, trace, record,
                    _start(net, data, trace))


def _descend(net, data, budget, seed, options, trace, record, cost):
    """Backprop on ``net.params`` (Adam, ``options``), adding to ``cost`` until the next
    epoch would pass ``budget`` FPE; logs the last point."""
    X_train, Y_train = data[0], data[1]
    options = dict(options)
    batch_size = min(options.pop("batch_size"), len(X_train))
    optimizer = fastnet.Adam(**options)
    rng = np.random.default_rng(seed)
    runner = net.engine.trainer(net.params, X_train, Y_train, batch_size, optimizer,
                                [0.0] * (len(net.sizes) - 2), int(rng.integers(2 ** 62)))
    per_epoch = BACKPROP_FPE_PER_SAMPLE * len(X_train)
    steps_per_epoch = math.ceil(len(X_train) / batch_size)
    epoch = 0
    while cost.fpe + per_epoch <= budget:
        start = time.perf_counter()
        _, _, finite = runner.run_epoch(rng.permutation(len(X_train)), optimizer.lr_at(epoch))
        cost.add(evals=steps_per_epoch, fpe=per_epoch, seconds=time.perf_counter() - start)
        epoch += 1
        if not finite:
            record.update(status="diverged", message=f"loss became NaN or inf in epoch {epoch}")
            break
        runner.sync()
        train_loss = net.engine.loss(net.params, X_train, Y_train)
        trace.reached(cost, train_loss)
        trace.log(cost, net.params, train_loss)
    runner.sync()
    trace.log(cost, net.params, net.engine.loss(net.params, X_train, Y_train), force=True)
    return cost
