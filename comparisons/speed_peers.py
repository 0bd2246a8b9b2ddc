"""What each child process of ``python -m comparisons.speed`` measures.

The parent runs this file as a script, ``python comparisons/speed_peers.py
SPEC``: it imports nothing from the package, whose import would load fastnet.

One function per (workload, library), named in ``MEASURES`` as
"workload/library"; each takes the JSON spec the parent sent and returns a
dict of plain numbers. Libraries are imported inside the functions, so a
child loads only the library it measures (and ``fastnet`` is never loaded
before the compile measurement starts its clock). Timed calls are warmed up
first (compilation, caches, allocator) and timed in blocks; a block's time
per call is one sample and the child reports their median.

The peers are written as their own users write them: PyTorch's standard
training loop, scikit-learn's ``partial_fit``, pygad's ``cal_pop_fitness``
and DEAP's ``map(toolbox.evaluate, population)`` over a per-individual NumPy
fitness function, pycma's ask/tell loop, SciPy's ``differential_evolution``
and pyswarms' ``GlobalBestPSO.optimize``.
"""
import importlib.util
import json
import math
import statistics
import sys
import time

import numpy as np

WARMUP_CALLS = 3
TIMED_BLOCKS = 5
LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3}
DIGITS_SIZES = (64, 32, 10)
SIGMA0 = 0.5  # the spread every search starts with, around x0


# ------------------------------------------------------------------ helpers
def seconds_per_call(call, budget_s):
    """Median seconds per call over TIMED_BLOCKS blocks filling ``budget_s``, after warm-up."""
    for _ in range(WARMUP_CALLS):
        call()
    start = time.perf_counter()
    call()
    calls = max(1, int(budget_s / TIMED_BLOCKS / (time.perf_counter() - start)))
    blocks = []
    for _ in range(TIMED_BLOCKS):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        blocks.append((time.perf_counter() - start) / calls)
    return {"seconds": statistics.median(blocks), "blocks": blocks, "calls_per_block": calls}


def rosenbrock(X):
    """Rosenbrock's function of each row of the (P, D) matrix X."""
    return (100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2).sum(axis=1)


def sphere(X):
    return (X * X).sum(axis=1)


OBJECTIVES = {"rosenbrock": rosenbrock, "sphere": sphere}


class StopRun(Exception):
    """Raised by CountedObjective to end a peer's run at the target or the budget."""


class CountedObjective:
    """A vectorised objective that counts evaluations and ends the run (StopRun)
    once the best value reaches ``target`` or ``max_evals`` are spent; takes
    one vector or a (P, D) matrix, as the caller's library passes them."""

    def __init__(self, fun, target=-math.inf, max_evals=math.inf):
        self.fun, self.target, self.max_evals = fun, target, max_evals
        self.evaluations, self.best, self.evaluations_to_target = 0, math.inf, None
        self.start = time.perf_counter()

    def __call__(self, X):
        X = np.asarray(X)
        values = self.fun(np.atleast_2d(X))
        self.evaluations += len(values)
        self.best = min(self.best, float(values.min()))
        if self.best <= self.target and self.evaluations_to_target is None:
            self.evaluations_to_target = self.evaluations
            raise StopRun
        if self.evaluations >= self.max_evals:
            raise StopRun
        return values if X.ndim == 2 else float(values[0])

    def run(self, loop):
        """Run ``loop()`` until it returns or this objective stops it; the run's record."""
        try:
            loop()
        except StopRun:
            pass
        reached = (self.evaluations_to_target is not None
                   and self.evaluations_to_target <= self.max_evals)
        return {"evaluations": self.evaluations, "reached": reached, "best": self.best,
                "seconds": time.perf_counter() - self.start}


def load_digits(spec):
    """All 1797 digits, standardised (X float32, integer labels), as the parent saved them."""
    with np.load(spec["data"]) as data:
        return data["X"], data["y"]


def synthetic_batch(spec):
    rng = np.random.default_rng(0)
    sizes, batch = spec["sizes"], spec["batch"]
    X = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    if spec["loss"] == "cross_entropy":
        return X, rng.integers(0, sizes[-1], size=batch)
    return X, rng.standard_normal(batch, dtype=np.float32)


def population_thetas(spec, n_params):
    """The population every library evaluates: P random float32 parameter vectors."""
    rng = np.random.default_rng(spec["seed"])
    return 0.1 * rng.standard_normal((spec["population"], n_params), dtype=np.float32)


def n_parameters(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def numpy_population_loss(thetas, X, labels, sizes=DIGITS_SIZES):
    """Mean softmax cross-entropy (ReLU hidden layers) of each row of ``thetas``
    (P, n_params) by batched matrix products, or of one vector (n_params,)."""
    lead, A, offset = thetas.shape[:-1], X, 0
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = thetas[..., offset:offset + n_in * n_out].reshape(lead + (n_in, n_out))
        offset += n_in * n_out
        b = thetas[..., None, offset:offset + n_out]
        offset += n_out
        A = A @ W + b
        if layer < len(sizes) - 2:
            A = np.maximum(A, 0)
    A = A - A.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(A).sum(axis=-1))
    picked = A[..., np.arange(len(labels)), labels]
    return (log_sum - picked).mean(axis=-1)


# ---------------------------------------------------------------- machine
def gemm_numpy(spec):
    """numpy's float32 matrix product (n x n times n x n), GFLOP/s."""
    rng = np.random.default_rng(0)
    n = spec["n"]
    A, B = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    timing = seconds_per_call(lambda: A @ B, spec["budget_s"])
    return {**timing, "gflops": 2 * n ** 3 / timing["seconds"] / 1e9}


# ---------------------------------------------------------- training step
def step_fastnet(spec):
    import fastnet
    net = fastnet.Network(spec["sizes"], activation=spec["activation"], loss=spec["loss"])
    X, y = synthetic_batch(spec)
    Y = net.targets(y)
    optimizer = {"sgd": fastnet.SGD, "adam": fastnet.Adam}[spec["optimizer"]]
    trainer = fastnet.StepTrainer(net, optimizer(lr=LEARNING_RATES[spec["optimizer"]]),
                                  batch_size=len(X))
    timing = seconds_per_call(lambda: trainer.step(X, Y), spec["budget_s"])
    return {**timing, "flops_per_sample": net.flops_per_sample()}


def torch_training(spec, torch):
    """The standard PyTorch loop's step: zero_grad, forward, loss, backward, step."""
    torch.set_num_threads(spec["threads"])
    sizes = spec["sizes"]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out),
                   torch.nn.Tanh() if spec["activation"] == "tanh" else torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    criterion = (torch.nn.CrossEntropyLoss() if spec["loss"] == "cross_entropy"
                 else torch.nn.MSELoss())
    optimizer_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[spec["optimizer"]]
    optimizer = optimizer_class(model.parameters(), lr=LEARNING_RATES[spec["optimizer"]])

    def step(X, y):
        optimizer.zero_grad()
        loss = criterion(model(X), y)
        loss.backward()
        optimizer.step()
        return loss
    return step


def torch_targets(torch, y):
    y = torch.from_numpy(y)
    return y.reshape(-1, 1) if y.is_floating_point() else y


def step_torch(spec):
    import torch
    step = torch_training(spec, torch)
    X, y = synthetic_batch(spec)
    X, y = torch.from_numpy(X), torch_targets(torch, y)
    return seconds_per_call(lambda: step(X, y), spec["budget_s"])


# ---------------------------------------------------------------- epochs
def epoch_fastnet(spec):
    import fastnet
    X, y = load_digits(spec)
    net = fastnet.Network(DIGITS_SIZES, activation="relu", output="softmax")
    epochs = spec["epochs"]

    def fit():
        net.fit(X, y, epochs=epochs, batch_size=spec["batch"],
                optimizer=fastnet.SGD(lr=LEARNING_RATES["sgd"]))
    timing = seconds_per_call(fit, spec["budget_s"])
    return {**timing, "seconds": timing["seconds"] / epochs}


def epoch_sklearn(spec):
    """One ``partial_fit`` is one shuffled pass over the data in mini-batches."""
    from sklearn.neural_network import MLPClassifier
    X, y = load_digits(spec)
    model = MLPClassifier(hidden_layer_sizes=DIGITS_SIZES[1:-1], activation="relu",
                          solver="sgd", batch_size=spec["batch"],
                          learning_rate_init=LEARNING_RATES["sgd"], momentum=0.0, alpha=0.0,
                          shuffle=True, random_state=0)
    model.partial_fit(X, y, classes=np.arange(DIGITS_SIZES[-1]))
    timing = seconds_per_call(lambda: model.partial_fit(X, y), spec["budget_s"])
    return {**timing, "dtype": str(model.coefs_[0].dtype)}


def epoch_torch(spec):
    import torch
    X, y = load_digits(spec)
    step = torch_training({**spec, "sizes": DIGITS_SIZES, "activation": "relu",
                           "loss": "cross_entropy", "optimizer": "sgd"}, torch)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    batch = spec["batch"]

    def epoch():
        order = torch.randperm(len(X))
        for start in range(0, len(X), batch):
            rows = order[start:start + batch]
            step(X[rows], y[rows])
    return seconds_per_call(epoch, spec["budget_s"])


# --------------------------------------------------------------- compile
def compile_fastnet(spec):
    """Seconds to import fastnet, run a first one-epoch fit and a first population_loss."""
    if "fastnet" in sys.modules:
        raise RuntimeError("fastnet was imported before the compile measurement began")
    start = time.perf_counter()
    import fastnet
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    net = fastnet.Network([4, 8, 3], output="softmax")
    net.fit(X, y, epochs=1, optimizer=fastnet.SGD(lr=LEARNING_RATES["sgd"]))
    fitted = time.perf_counter()
    net.population_loss(np.tile(net.params, (3, 1)), X, y)
    done = time.perf_counter()
    return {"import_s": imported - start, "fit_s": fitted - imported,
            "population_s": done - fitted, "seconds": done - start}


# ------------------------------------------------------------ population
def timed_population(spec, evaluate_all):
    """Time ``evaluate_all()`` (P losses of the population); report the losses too."""
    timing = seconds_per_call(evaluate_all, spec["budget_s"])
    return {**timing, "losses": [float(v) for v in evaluate_all()]}


def population_fastnet(spec):
    import fastnet
    X, y = load_digits(spec)
    net = fastnet.Network(DIGITS_SIZES, activation="relu", output="softmax")
    thetas = population_thetas(spec, net.n_params)
    result = timed_population(spec, lambda: net.population_loss(thetas, X, y))
    return {**result, "flops_per_sample": net.flops_per_sample()}


def population_numpy(spec):
    X, y = load_digits(spec)
    thetas = population_thetas(spec, n_parameters(DIGITS_SIZES))
    return timed_population(spec, lambda: numpy_population_loss(thetas, X, y))


def population_pygad(spec):
    """pygad's own loop over a per-solution fitness function (pygad maximises: -loss)."""
    import pygad
    X, y = load_digits(spec)
    thetas = population_thetas(spec, n_parameters(DIGITS_SIZES))

    def fitness(ga, solution, index):
        return -numpy_population_loss(solution, X, y)
    ga = pygad.GA(num_generations=1, num_parents_mating=2, fitness_func=fitness,
                  initial_population=thetas, suppress_warnings=True)

    def evaluate_all():
        ga.population = thetas.copy()
        return -ga.cal_pop_fitness()
    return timed_population(spec, evaluate_all)


def population_deap(spec):
    """DEAP's list individuals, evaluated by map(toolbox.evaluate, population)."""
    from deap import base, creator
    X, y = load_digits(spec)
    thetas = population_thetas(spec, n_parameters(DIGITS_SIZES))
    creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
    creator.create("Individual", list, fitness=creator.FitnessMin)
    toolbox = base.Toolbox()
    toolbox.register("evaluate", lambda individual: (numpy_population_loss(
        np.asarray(individual), X, y),))
    population = [creator.Individual(row) for row in thetas.tolist()]

    def evaluate_all():
        for individual, fitness in zip(population, map(toolbox.evaluate, population)):
            individual.fitness.values = fitness
        return [individual.fitness.values[0] for individual in population]
    return timed_population(spec, evaluate_all)


# --------------------------------------------------------------- trainers
def search_ours(spec):
    """One run of our trainer through ``minimize`` on the spec's objective."""
    from comparisons.optimize import minimize
    fun = OBJECTIVES[spec["objective"]]
    start = time.perf_counter()
    result = minimize(fun, np.zeros(spec["dim"]), spec["method"], spec["max_evals"],
                      target=spec["target"], seed=spec["seed"], vectorized=True, sigma0=SIGMA0)
    return {"evaluations": result.nfev, "reached": bool(result.success), "best": result.fun,
            "seconds": time.perf_counter() - start}


def search_pycma(spec):
    import cma
    objective = CountedObjective(OBJECTIVES[spec["objective"]], spec["target"], spec["max_evals"])
    es = cma.CMAEvolutionStrategy(np.zeros(spec["dim"]), SIGMA0,
                                  {"verbose": -9, "seed": spec["seed"] + 1})  # 0 = clock seed

    def loop():
        while not es.stop():
            X = es.ask()
            es.tell(X, objective(np.array(X)).tolist())
    return objective.run(loop)


def search_scipy_de(spec):
    """SciPy's defaults (best1bin, popsize 15 D, Latin hypercube in [-5, 5]^D), no polish."""
    from scipy.optimize import differential_evolution
    objective = CountedObjective(OBJECTIVES[spec["objective"]], spec["target"], spec["max_evals"])
    vectorized = spec["vectorized"]
    fun = (lambda x: objective(x.T)) if vectorized else objective
    return objective.run(lambda: differential_evolution(
        fun, [(-5.0, 5.0)] * spec["dim"], rng=spec["seed"], tol=0.0, atol=0.0, maxiter=10 ** 9,
        polish=False, vectorized=vectorized, updating="deferred" if vectorized else "immediate"))


def search_pyswarms(spec):
    """GlobalBestPSO with our swarm size and start (x0 + sigma0 N(0, I))."""
    import pyswarms
    objective = CountedObjective(OBJECTIVES[spec["objective"]], spec["target"], spec["max_evals"])
    np.random.seed(spec["seed"])  # pyswarms draws from numpy's global generator
    x0, clamp = np.zeros(spec["dim"]), spec["velocity_clamp"]
    start = x0 + SIGMA0 * np.random.standard_normal((spec["popsize"], spec["dim"]))
    swarm = pyswarms.single.GlobalBestPSO(
        spec["popsize"], spec["dim"], options=spec["options"], init_pos=start,
        velocity_clamp=None if clamp is None else (-clamp, clamp))
    return objective.run(lambda: swarm.optimize(objective, iters=10 ** 9, verbose=False))


def generation_ours(spec):
    """Seconds per generation (ask, sphere, tell) of our CMA-ES in dimension D."""
    from comparisons.trainers import get_trainer
    trainer = get_trainer(spec["method"])(np.zeros(spec["dim"]), SIGMA0, seed=1)
    return seconds_per_call(lambda: trainer.tell(sphere(trainer.ask())), spec["budget_s"])


def generation_pycma(spec):
    import cma
    es = cma.CMAEvolutionStrategy(np.zeros(spec["dim"]), SIGMA0,
                                  {"verbose": -9, "seed": 1, "CMA_diagonal": spec["diagonal"]})

    def generation():
        X = es.ask()
        es.tell(X, sphere(np.array(X)).tolist())
    return seconds_per_call(generation, spec["budget_s"])


def digits_start(seed):
    """The digits network's initial parameters for ``seed`` (fastnet's initialiser)."""
    import fastnet
    return fastnet.Network(DIGITS_SIZES, activation="relu", output="softmax", seed=seed).params


def ga_ours(spec):
    """Our GA with the options ``spec["options"]`` (none: its defaults)."""
    import fastnet
    from comparisons.optimize import minimize
    X, y = load_digits(spec)
    net = fastnet.Network(DIGITS_SIZES, activation="relu", output="softmax", seed=spec["seed"])
    Y = net.targets(y)
    net.population_loss(net.params[None], X[:2], Y[:2])  # compiled or loaded before the clock
    start = time.perf_counter()
    result = minimize(lambda thetas: net.population_loss(thetas, X, Y), net.params, "ga",
                      spec["max_evals"], seed=spec["seed"], vectorized=True, sigma0=SIGMA0,
                      popsize=spec["popsize"], n_elite=spec["n_elite"], **spec["options"])
    return {"evaluations": result.nfev, "best": result.fun,
            "seconds": time.perf_counter() - start}


def ga_pygad(spec):
    """pygad as its users run it, with our selection and elitism: tournament of 3, uniform
    crossover (rate 0.9), its default random mutation of 10% of the genes by uniform
    noise of our initial mutation std (0.2 sigma0). pygad's SBX and every-gene mutation
    are per-gene Python loops, seconds per generation at D = 2,410."""
    import pygad
    X, y = load_digits(spec)
    x0, P = digits_start(spec["seed"]), spec["popsize"]
    rng = np.random.default_rng(spec["seed"])
    start_population = x0 + SIGMA0 * rng.standard_normal((P, x0.size))
    start_population[0] = x0
    objective = CountedObjective(lambda thetas: numpy_population_loss(thetas, X, y))
    half_width = 0.2 * SIGMA0 * math.sqrt(3)
    ga = pygad.GA(num_generations=(spec["max_evals"] - P) // (P - spec["n_elite"]),
                  num_parents_mating=P, sol_per_pop=P, initial_population=start_population,
                  fitness_func=lambda ga, solution, index: -objective(solution),
                  parent_selection_type="tournament", K_tournament=3,
                  keep_elitism=spec["n_elite"], crossover_type="uniform",
                  crossover_probability=0.9, mutation_type="random",
                  mutation_by_replacement=False, random_mutation_min_val=-half_width,
                  random_mutation_max_val=half_width, random_seed=spec["seed"],
                  suppress_warnings=True)
    return objective.run(ga.run)


MEASURES = {
    "gemm/numpy": gemm_numpy,
    "step/fastnet": step_fastnet, "step/torch": step_torch,
    "epoch/fastnet": epoch_fastnet, "epoch/sklearn": epoch_sklearn, "epoch/torch": epoch_torch,
    "compile/fastnet": compile_fastnet,
    "population/fastnet": population_fastnet, "population/numpy": population_numpy,
    "population/pygad": population_pygad, "population/deap": population_deap,
    "search/ours": search_ours, "search/pycma": search_pycma,
    "search/scipy": search_scipy_de, "search/pyswarms": search_pyswarms,
    "generation/ours": generation_ours, "generation/pycma": generation_pycma,
    "ga/ours": ga_ours, "ga/pygad": ga_pygad,
}


def clean(value):
    """JSON-safe: numpy scalars as Python numbers, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def child_main(spec_json):
    """The child's side: run the measurement, print its result as the last stdout line."""
    spec = json.loads(spec_json)
    result = MEASURES[spec["measure"]](spec)
    seen = {}
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        seen["numba"] = numba.get_num_threads()
        try:
            seen["numba_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel ran
            pass
    if "torch" in sys.modules:
        seen["torch"] = sys.modules["torch"].get_num_threads()
    if importlib.util.find_spec("threadpoolctl") is not None:  # BLAS and OpenMP pools
        from threadpoolctl import threadpool_info
        seen.update({pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()})
    print(json.dumps(clean({**result, "threads_seen": seen})))


if __name__ == "__main__":
    child_main(sys.argv[1])
