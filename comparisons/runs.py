"""One run: a method trains a problem's network within a budget, and its trace.

The budget and every logged point are counted three ways (see budget.py):
loss evaluations, forward-pass equivalents and seconds. The seconds count
only training: the extra forward passes that measure a logged point (test
loss and score) are neither timed nor counted.
"""
import math
import time

import numba
import numpy as np

import fastnet
from fastnet._checks import check_int, check_name
from comparisons.budget import BACKPROP_FPE_PER_SAMPLE, Cost, LogSchedule
from comparisons.problems import Problem, get_problem
from comparisons.scale import guard
from comparisons.trainers import get_trainer

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


class Trace:
    """Logged points of one run, as columns."""
    columns = ("evals", "fpe", "seconds", "train_loss", "test_loss", "test_score")

    def __init__(self, net, data, budget):
        self.net = net
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

    def reached(self, cost, train_loss, target):
        if self.fpe_to_target is None and train_loss <= target:
            self.fpe_to_target = {"evals": cost.evals, "fpe": cost.fpe,
                                  "seconds": cost.seconds}


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _prepared_data(net, problem):
    X_train, y_train, X_test, y_test = problem.data(seed=0)
    return (net._inputs(X_train), net.targets(y_train), net._inputs(X_test),
            net.targets(y_test))


def run(problem, method, seed, budget=None, device="cpu", options=None):
    """Train ``problem`` (a Problem or its name) with ``method``; return a result record."""
    if isinstance(problem, str):
        problem = get_problem(problem)
    elif not isinstance(problem, Problem):
        raise TypeError(f"problem must be a problem name or a Problem, got {problem!r}")
    method = check_name("method", method, METHODS)
    seed = check_int("seed", seed, 0)
    budget = problem.budget if budget is None else check_int("budget", budget)
    device = check_name("device", device, ("cpu", "cuda"))
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict of the method's settings, got {options!r}")
    net = problem.network(seed=seed, backend=device)
    data = _prepared_data(net, problem)
    trace = Trace(net, data, budget)
    options = {**(BACKPROP_OPTIONS if method == "backprop" else METHOD_OPTIONS[method]),
               **(options or {})}
    record = {"problem": problem.name, "method": method, "seed": seed, "budget": budget,
              "device": device, "n_params": net.n_params, "sizes": list(net.sizes),
              "n_train": len(data[0]), "options": options, "status": "completed",
              "message": ""}
    if method == "backprop":
        cost = _run_backprop(net, data, budget, seed, options, trace, problem, record)
    else:
        try:
            runs_as, note = _scale_guard(net, len(data[0]), method, options)
        except ValueError as refusal:
            record.update(status="skipped", message=str(refusal))
            cost = Cost()
        else:
            record.update(runs_as=runs_as, message=note)
            cost = _run_gradient_free(net, data, budget, seed, runs_as, options, trace,
                                      problem, record)
    record.update(trace=trace.points, fpe_to_target=trace.fpe_to_target,
                  target_loss=problem.target_loss, evals=cost.evals, fpe=cost.fpe,
                  seconds=cost.seconds, threads=numba.get_num_threads(),
                  fastnet_version=fastnet.__version__)
    return record


def _scale_guard(net, n_train, method, options):
    """(method to run, note) from ``comparisons.scale.guard`` for this network: full
    CMA-ES too large for the machine runs as sep-CMA-ES, and what cannot fit is
    refused (ValueError) before anything is allocated."""
    popsize = options.get("popsize") or get_trainer(method).default_popsize(net.n_params)
    evaluation_flops = net.flops_per_sample() * n_train * popsize
    return guard(method, net.n_params, popsize, evaluation_flops)


def _run_gradient_free(net, data, budget, seed, method, options, trace, problem, record):
    X_train, Y_train = data[0], data[1]
    options = dict(options)
    trainer = get_trainer(method)(net.params.astype(np.float64), seed=seed, **options)
    cost = Cost()
    per_candidate = len(X_train)
    trace.log(cost, net.params, net.engine.loss(net.params, X_train, Y_train), force=True)
    while True:
        start = time.perf_counter()
        candidates = trainer.ask()
        if cost.fpe + len(candidates) * per_candidate > budget:
            break
        with np.errstate(over="ignore"):  # a huge candidate becomes inf: its loss is worst
            thetas = np.ascontiguousarray(candidates, dtype=net.dtype)
        losses = net.engine.population_loss(thetas, X_train, Y_train)
        trainer.tell(losses)
        cost.add(evals=len(candidates), fpe=len(candidates) * per_candidate,
                 seconds=time.perf_counter() - start)
        trace.reached(cost, trainer.best_loss, problem.target_loss)
        best = np.ascontiguousarray(trainer.best, dtype=net.dtype)
        trace.log(cost, best, trainer.best_loss)
        if trainer.stop():
            _add_message(record, f"trainer stopped: {trainer.stop()}")
            break
    best = np.ascontiguousarray(trainer.best, dtype=net.dtype)
    trace.log(cost, best, trainer.best_loss, force=True)
    if cost.evals == 0:
        record["status"] = "skipped"
        _add_message(record, f"the budget of {budget:,} forward-pass equivalents is less "
                     f"than one generation ({len(candidates)} candidates x {per_candidate} "
                     "samples)")
    elif not math.isfinite(trainer.best_loss):   # NaN and inf losses count as the worst
        record["status"] = "diverged"
        _add_message(record, "the loss was NaN or inf for every candidate: there is no "
                     "finite candidate to keep, and the last point is the starting network")
    return cost


def _add_message(record, text):
    record["message"] = "; ".join(part for part in (record["message"], text) if part)


def _run_backprop(net, data, budget, seed, options, trace, problem, record):
    X_train, Y_train = data[0], data[1]
    options = dict(options)
    batch_size = min(options.pop("batch_size"), len(X_train))
    optimizer = fastnet.Adam(**options)
    rng = np.random.default_rng(seed)
    runner = net.engine.trainer(net.params, X_train, Y_train, batch_size, optimizer,
                                [0.0] * (len(net.sizes) - 2), int(rng.integers(2 ** 62)))
    cost = Cost()
    per_epoch = BACKPROP_FPE_PER_SAMPLE * len(X_train)
    steps_per_epoch = math.ceil(len(X_train) / batch_size)
    trace.log(cost, net.params, net.engine.loss(net.params, X_train, Y_train), force=True)
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
        trace.reached(cost, train_loss, problem.target_loss)
        trace.log(cost, net.params, train_loss)
    runner.sync()
    trace.log(cost, net.params, net.engine.loss(net.params, X_train, Y_train), force=True)
    return cost
