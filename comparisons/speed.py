"""fastnet's speed against its peers, measured so that the numbers can be trusted.

    python -m comparisons.speed [--only step,epoch,compile,population,trainers]
                                [--repeats N] [--threads N] [--seeds N] [--quick] [--out reports]

Every measurement runs in its own child process (``python
comparisons/speed_peers.py SPEC``, which prints one JSON line), because two libraries' thread pools in one process
distort both. Each child gets NUMBA_NUM_THREADS, OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS (and torch.set_num_threads) set to
``--threads``, warms up before its clock starts, and the libraries alternate
(fastnet, peer, fastnet, peer, ...) over ``--repeats`` rounds (or over
``--seeds`` for the trainers). Tables give medians over the rounds and
ratios of medians, with each target and whether it is met. Writes
``OUT/speed.json`` (every raw timing), ``OUT/speed.md`` and
``OUT/figures/speed.png`` / ``.svg``. What the children run is in
``comparisons/speed_peers.py``.
"""
import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from comparisons.speed_peers import DIGITS_SIZES, SIGMA0, clean, n_parameters
from comparisons.trainers.pso import PSO, VMAX_PER_SIGMA0, constriction_factor

REPO = pathlib.Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
CHILD_TIMEOUT_S = 1800
NOT_INSTALLED = "not installed (pip install 'fastnet[bench]')"
#: the module each peer library imports; fastnet, numpy and ours are always there
PEER_MODULES = {"torch": "torch", "sklearn": "sklearn", "pygad": "pygad", "deap": "deap",
                "pycma": "cma", "scipy": "scipy", "pyswarms": "pyswarms"}
PACKAGES = ("numpy", "numba", "scipy", "torch", "scikit-learn", "cma", "pygad", "deap",
            "pyswarms", "matplotlib")
PARTS = ("step", "epoch", "compile", "population", "trainers")

#: label: (sizes, batch, hidden activation, loss, SGD speedup target vs PyTorch)
SHAPES = {
    "a": ((2, 8, 1), 4, "tanh", "mse", 100.0),
    "b": ((64, 32, 10), 32, "relu", "cross_entropy", 30.0),
    "c": ((64, 128, 128, 10), 64, "relu", "cross_entropy", 4.0),
    "d": ((784, 256, 128, 10), 128, "relu", "cross_entropy", 1.5),
    "e": ((784, 1024, 1024, 10), 256, "relu", "cross_entropy", 1.2),
}
GEMM_FRACTION_TARGETS = {"e": 0.85}
EPOCH_TARGET_MS = 1.5
COMPILE_TARGETS_S = {"cold": 10.0, "warm": 1.5}
#: the compile section's third row: cold, without the helper process
ONE_PROCESS = "cold, one process"
POPULATION = 50
POPULATION_TARGET = 8000.0
ROSENBROCK_DIM = 10
CMA_GENERATION_DIM = n_parameters(DIGITS_SIZES)  # 2,410: the digits network


@dataclasses.dataclass(frozen=True)
class Settings:
    """What --quick changes: sizes of budgets, never what is measured."""
    repeats: int = 5
    seeds: int = 10
    budget_s: float = 1.0          # timed seconds per child, after warm-up
    optimizers: tuple = ("sgd", "adam")
    epochs: int = 20               # epochs per timed fit call
    gemm_n: int = 2048
    search_evals: int = 100_000    # CMA-ES and PSO budget on Rosenbrock
    de_evals: int = 1_000_000
    ga_evals: int = 5_000          # pygad: ~35 s a run here; keep its runs short
    ga_seeds: int = 5


QUICK = Settings(repeats=1, seeds=2, budget_s=0.05, optimizers=("sgd",), epochs=3, gemm_n=1024,
                 search_evals=20_000, de_evals=20_000, ga_evals=300, ga_seeds=1)


@dataclasses.dataclass
class Measurement:
    """One child process: a label for the tables, its spec, extra environment."""
    label: str
    measure: str
    spec: dict
    env: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Section:
    name: str
    title: str
    columns: list          # (header, row key, format string or function)
    rows: list
    raw: dict
    notes: list = dataclasses.field(default_factory=list)
    checks: list = dataclasses.field(default_factory=list)


# --------------------------------------------------------------- statistics
def values_of(runs, key):
    return [run[key] for run in runs if run.get(key) is not None]


def median_of(runs, key):
    found = values_of(runs, key)
    return statistics.median(found) if found else None


def quartiles_of(runs, key):
    found = values_of(runs, key)
    return tuple(np.percentile(found, [25, 75]).tolist()) if found else None


def ratio(top, bottom):
    """top / bottom, None when either is missing or bottom is zero."""
    return top / bottom if top is not None and bottom else None


def ratio_of_medians(numerator_runs, denominator_runs, key):
    return ratio(median_of(numerator_runs, key), median_of(denominator_runs, key))


def check(name, value, op, bound, unit=""):
    """A target: {'check', 'value', 'target', 'met'}; met is None without a value."""
    met = None if value is None else bool(value >= bound if op == ">=" else value <= bound)
    return {"check": name, "value": value, "target": f"{op} {bound:g}{unit}", "met": met}


def information(name, value):
    """A ratio worth reading that has no target."""
    return {"check": name, "value": value, "target": None, "met": None}


def times(value, factor):
    return None if value is None else value * factor


def trouble(runs):
    """Why a library has no numbers ('not installed ...', 'error: ...'), or ''."""
    for run in runs:
        for key in ("unavailable", "error"):
            if key in run:
                return run[key] if key == "unavailable" else f"error: {run[key]}"
    return ""


# ------------------------------------------------------------ child process
def thread_environment(threads):
    return {name: str(threads) for name in THREAD_VARIABLES}


def run_child(measure, spec, threads, cwd, env=None):
    """Run one measurement in a fresh interpreter; its JSON result (or why there is none)."""
    library = measure.split("/")[1]
    module = PEER_MODULES.get(library)
    if module is not None and importlib.util.find_spec(module) is None:
        return {"unavailable": NOT_INSTALLED}
    environment = {**os.environ, **thread_environment(threads), **(env or {}),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                               os.environ.get("PYTHONPATH")]))}
    # The file, not the module: importing the package comparisons would load
    # fastnet (its trainers use fastnet's checks) before the compile clock.
    command = [sys.executable, str(REPO / "comparisons" / "speed_peers.py"),
               json.dumps({**spec, "measure": measure, "threads": threads})]
    try:
        done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


class Bench:
    """Runs measurements for the sections: threads, settings, the scratch folder, digits."""

    def __init__(self, threads, settings, scratch):
        self.threads, self.settings, self.scratch = threads, settings, scratch
        self.digits = str(scratch / "digits.npz")
        self.gemm_gflops = None
        X, y = all_digits()
        self.digits_rows = len(X)
        np.savez(self.digits, X=X, y=y)

    def alternate(self, rounds):
        """Run the rounds in order, each round's measurements in order; {label: [results]}.

        A library found not installed is not asked again.
        """
        results = {}
        for measurements in rounds:
            for m in measurements:
                runs = results.setdefault(m.label, [])
                if runs and "unavailable" in runs[0]:
                    continue
                runs.append(run_child(m.measure, m.spec, self.threads, self.scratch, m.env))
        return results

    def repeated(self, workload, spec, libraries):
        """The libraries alternating over --repeats rounds on the same spec."""
        spec = {**spec, "budget_s": self.settings.budget_s}
        round_ = [Measurement(library, f"{workload}/{library}", spec) for library in libraries]
        return self.alternate([round_] * self.settings.repeats)

    def seeded(self, variants, seeds=None):
        """variants: {label: (measure, spec)}, alternating over seed rounds (--seeds)."""
        return self.alternate([[Measurement(label, measure, {**spec, "seed": seed})
                                for label, (measure, spec) in variants.items()]
                               for seed in range(seeds or self.settings.seeds)])


def all_digits():
    """Every digits row (train + test, standardised as fastnet loads them): X float32, y int64."""
    import fastnet
    X_train, y_train, X_test, y_test = fastnet.datasets.load("digits")
    return (np.concatenate([X_train, X_test]).astype(np.float32),
            np.concatenate([y_train, y_test]).astype(np.int64))


# ------------------------------------------------------------------ machine
def cpu_description():
    text = pathlib.Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = fields.get("flags", "").split()
    return {"cpu": fields.get("model name", platform.processor() or "unknown"),
            "logical_cores": os.cpu_count(), "physical_cores_per_socket": fields.get("cpu cores"),
            "vector_flags": sorted(f for f in flags if f in ("avx", "avx2", "fma")
                                   or f.startswith("avx512"))}


def package_versions():
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    import fastnet
    versions["fastnet"] = fastnet.__version__
    return versions


def numpy_blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except (KeyError, TypeError):
        return "unknown"


def machine_description(bench):
    """CPU, packages, BLAS, and numpy's float32 GEMM rate measured here (median of rounds)."""
    n = bench.settings.gemm_n
    runs = bench.repeated("gemm", {"n": n}, ["numpy"])["numpy"]
    bench.gemm_gflops = median_of(runs, "gflops")
    return {**cpu_description(), "platform": platform.platform(), "packages": package_versions(),
            "numpy_blas": numpy_blas(), "sgemm_n": n, "sgemm_gflops": bench.gemm_gflops,
            "sgemm_runs": runs}


# -------------------------------------------------------------- sections
def gflops(flops, seconds):
    return times(ratio(flops, seconds), 1e-9)


def combined(checks):
    """Several targets in one table cell: their texts joined, met when all are met."""
    mets = [c["met"] for c in checks]
    return {"target": " and ".join(c["target"] for c in checks),
            "met": None if None in mets else all(mets)}


def section_step(bench):
    rows, raw = [], {}
    for label, (sizes, batch, activation, loss, speedup_target) in SHAPES.items():
        for optimizer in bench.settings.optimizers:
            spec = {"sizes": sizes, "batch": batch, "activation": activation, "loss": loss,
                    "optimizer": optimizer}
            runs = bench.repeated("step", spec, ["fastnet", "torch"])
            raw.update({f"{label}/{optimizer}/{library}": r for library, r in runs.items()})
            rows.append(step_row(bench, label, spec, runs, speedup_target))
    return Section("step", "Training step (float32, one Python call per step)", [
        ("shape", "shape", "{}"), ("sizes", "sizes", "{}"), ("batch", "batch", "{}"),
        ("optimizer", "optimizer", "{}"), ("fastnet µs", "fastnet_us", "{:.1f}"),
        ("torch µs", "torch_us", "{:.1f}"), ("fastnet samples/s", "samples_per_s", "{:,.0f}"),
        ("fastnet GFLOP/s", "fastnet_gflops", "{:.2f}"),
        ("torch GFLOP/s", "torch_gflops", "{:.2f}"),
        ("of numpy GEMM", "gemm_fraction", "{:.0%}"), ("speedup vs torch", "speedup", "{:.2f}x"),
        ("target", "target", "{}"), ("met", "met", met_cell), ("note", "note", "{}")],
        rows, raw, notes=[
            "Speedup = median PyTorch step time / median fastnet step time. FLOPs per step = "
            "3 x forward (2 x sum fan_in x fan_out per sample) x batch. Targets apply to SGD; "
            "Adam rows are for information. fastnet: StepTrainer.step(X, Y) with X float32 "
            "C-contiguous and Y = net.targets(y) precomputed; PyTorch: nn.Sequential of Linear "
            "layers, zero_grad / forward / loss / backward / step."
        ] + missed_speedup_notes(rows, bench.gemm_gflops))


def missed_speedup_notes(rows, gemm_gflops):
    """For each SGD row whose speedup target is missed: the arithmetic rate the
    target asks of fastnet, as a share of numpy's GEMM rate, given PyTorch's."""
    notes = []
    for row in rows:
        target = SHAPES[row["shape"]][4]
        if row["optimizer"] != "sgd" or row["speedup"] is None or row["speedup"] >= target \
                or not row["torch_gflops"] or not gemm_gflops:
            continue
        torch_share = row["torch_gflops"] / gemm_gflops
        notes.append(f"({row['shape']}) missed by {1 - row['speedup'] / target:.0%}: with "
                     f"PyTorch at {torch_share:.0%} of numpy's GEMM rate, {target}x needs "
                     f"fastnet at {target * torch_share:.0%}; it runs at "
                     f"{row['gemm_fraction']:.0%}.")
    return notes


def step_row(bench, label, spec, runs, speedup_target):
    fast, peer = runs["fastnet"], runs["torch"]
    flops_per_sample = median_of(fast, "flops_per_sample")
    flops = times(flops_per_sample, 3 * spec["batch"])
    fast_s, torch_s = median_of(fast, "seconds"), median_of(peer, "seconds")
    fast_gflops = gflops(flops, fast_s)
    row = {"shape": label, "sizes": "-".join(map(str, spec["sizes"])), "batch": spec["batch"],
           "optimizer": spec["optimizer"], "fastnet_us": times(fast_s, 1e6),
           "torch_us": times(torch_s, 1e6), "samples_per_s": ratio(spec["batch"], fast_s),
           "fastnet_gflops": fast_gflops, "torch_gflops": gflops(flops, torch_s),
           "gemm_fraction": ratio(fast_gflops, bench.gemm_gflops),
           "speedup": ratio_of_medians(peer, fast, "seconds"),
           "note": trouble(fast) or trouble(peer)}
    if spec["optimizer"] == "sgd":
        checks = [check("speedup", row["speedup"], ">=", speedup_target, "x")]
        if label in GEMM_FRACTION_TARGETS:
            checks.append(check("of numpy GEMM", times(row["gemm_fraction"], 100), ">=",
                                100 * GEMM_FRACTION_TARGETS[label], "% of GEMM"))
        row.update(combined(checks))
    return row


def section_epoch(bench):
    s = bench.settings
    spec = {"data": bench.digits, "batch": 32, "epochs": s.epochs}
    runs = bench.repeated("epoch", spec, ["fastnet", "sklearn", "torch"])
    rows = []
    for library, library_runs in runs.items():
        seconds = median_of(library_runs, "seconds")
        row = {"library": library, "ms_per_epoch": times(seconds, 1e3),
               "samples_per_s": ratio(bench.digits_rows, seconds),
               "fastnet_speedup": None if library == "fastnet"
               else ratio_of_medians(library_runs, runs["fastnet"], "seconds"),
               "note": trouble(library_runs)}
        if library == "fastnet":
            row.update(check("ms per epoch", row["ms_per_epoch"], "<=", EPOCH_TARGET_MS, " ms"))
        rows.append(row)
    return Section("epoch", f"Whole epochs: digits ({bench.digits_rows} rows), 64-32-10 ReLU, "
                   "batch 32, SGD lr 0.01", [
                       ("library", "library", "{}"), ("ms / epoch", "ms_per_epoch", "{:.2f}"),
                       ("samples/s", "samples_per_s", "{:,.0f}"),
                       ("fastnet speedup", "fastnet_speedup", "{:.1f}x"),
                       ("target", "target", "{}"), ("met", "met", met_cell),
                       ("note", "note", "{}")], rows, runs, notes=[
        f"fastnet: net.fit(X, y, epochs={s.epochs}, batch_size=32, optimizer=SGD(lr=0.01)) "
        f"time / {s.epochs}. scikit-learn: MLPClassifier(solver='sgd', momentum=0, alpha=0, "
        "batch_size=32), one partial_fit = one shuffled epoch. PyTorch: randperm, then the "
        "standard step per batch. fastnet speedup = library median / fastnet median."])


def section_compile(bench):
    with tempfile.TemporaryDirectory(dir=bench.scratch) as caches:
        rounds = []
        for r in range(bench.settings.repeats):
            shared = {"NUMBA_CACHE_DIR": os.path.join(caches, f"round{r}")}
            one_process = {"NUMBA_CACHE_DIR": os.path.join(caches, f"round{r}-one-process"),
                           "FASTNET_COMPILE_HELPER": "0"}
            rounds.append([Measurement("cold", "compile/fastnet", {}, shared),
                           Measurement("warm", "compile/fastnet", {}, shared),
                           Measurement(ONE_PROCESS, "compile/fastnet", {}, one_process)])
        runs = bench.alternate(rounds)
    rows = []
    for kind, kind_runs in runs.items():
        row = {"kind": kind, **{key: median_of(kind_runs, key)
                                for key in ("import_s", "fit_s", "population_s", "seconds")},
               "note": trouble(kind_runs)}
        if kind in COMPILE_TARGETS_S:
            row.update(check(f"{kind} seconds", row["seconds"], "<=", COMPILE_TARGETS_S[kind],
                             " s"))
        rows.append(row)
    return Section("compile", "Compile time: import fastnet + first fit (1 epoch, tiny "
                   "problem) + first population_loss", [
                       ("cache", "kind", "{}"), ("import s", "import_s", "{:.2f}"),
                       ("first fit s", "fit_s", "{:.2f}"),
                       ("first population_loss s", "population_s", "{:.2f}"),
                       ("total s", "seconds", "{:.2f}"), ("target", "target", "{}"),
                       ("met", "met", met_cell), ("note", "note", "{}")], rows, runs, notes=[
        "cold: a fresh, empty NUMBA_CACHE_DIR; the first fit compiles half of its kernels "
        "in a helper process, on the second core (fastnet/backends/compile_helper.py). warm: "
        "a second process with the same cache folder. cold, one process: "
        "FASTNET_COMPILE_HELPER=0, for information. Interpreter start-up is not included."])


def section_population(bench):
    spec = {"data": bench.digits, "population": POPULATION, "seed": 0}
    runs = bench.repeated("population", spec, ["fastnet", "numpy", "pygad", "deap"])
    fast = runs["fastnet"]
    flops_per_sample = median_of(fast, "flops_per_sample")
    flops = times(flops_per_sample, POPULATION * bench.digits_rows)
    reference = next((run["losses"] for run in fast if "losses" in run), None)
    rows = []
    for library, library_runs in runs.items():
        seconds = median_of(library_runs, "seconds")
        losses = next((run["losses"] for run in library_runs if "losses" in run), None)
        row = {"library": library, "ms_per_call": times(seconds, 1e3),
               "evaluations_per_s": ratio(POPULATION, seconds),
               "gflops": gflops(flops, seconds),
               "fastnet_speedup": None if library == "fastnet"
               else ratio_of_medians(library_runs, fast, "seconds"),
               "loss_difference": None if losses is None or reference is None
               else float(np.max(np.abs(np.subtract(losses, reference)))),
               "note": trouble(library_runs)}
        if library == "fastnet":
            row.update(check("evaluations/s", row["evaluations_per_s"], ">=", POPULATION_TARGET,
                             "/s"))
        rows.append(row)
    limit = ratio(times(bench.gemm_gflops, 1e9), ratio(flops, POPULATION))
    return Section("population", f"Population evaluation: 64-32-10 on all {bench.digits_rows} "
                   f"digits, mean cross-entropy, P = {POPULATION}", [
                       ("library", "library", "{}"), ("ms / call", "ms_per_call", "{:.2f}"),
                       ("evaluations/s", "evaluations_per_s", "{:,.0f}"),
                       ("GFLOP/s", "gflops", "{:.1f}"),
                       ("fastnet speedup", "fastnet_speedup", "{:.1f}x"),
                       ("max |loss - fastnet's|", "loss_difference", "{:.1e}"),
                       ("target", "target", "{}"), ("met", "met", met_cell),
                       ("note", "note", "{}")], rows, runs, notes=[
        "fastnet: net.population_loss(thetas, X, y) (float32, integer labels). numpy: all "
        "members at once by batched matmul (float32). pygad: GA.cal_pop_fitness over a "
        "per-solution NumPy forward pass; DEAP: map(toolbox.evaluate, population) over list "
        "individuals (np.asarray: float64), as their users write them.",
        f"GEMM-bound limit on this machine: numpy's sgemm rate / FLOPs per evaluation = "
        f"{limit:,.0f} evaluations/s." if limit else "GEMM-bound limit: not measured."])


def search_rows(runs, with_target=True):
    """One row per variant: runs, reached, evaluations (of the runs that reached), seconds."""
    rows = []
    for label, variant_runs in runs.items():
        counted = reached_only(variant_runs) if with_target else variant_runs
        q = quartiles_of(counted, "evaluations")
        rows.append({
            "variant": label,
            "reached": f"{len(counted)}/{len(variant_runs)}" if with_target else None,
            "evaluations": median_of(counted, "evaluations"),
            "evaluations_iqr": q and f"{q[0]:,.0f}-{q[1]:,.0f}",
            "seconds": median_of(variant_runs, "seconds"), "best": median_of(variant_runs, "best"),
            "note": trouble(variant_runs)})
    return rows


SEARCH_COLUMNS = [("variant", "variant", "{}"), ("reached", "reached", "{}"),
                  ("median evaluations", "evaluations", "{:,.0f}"),
                  ("evaluations IQR", "evaluations_iqr", "{}"), ("median s", "seconds", "{:.3f}"),
                  ("median best f", "best", "{:.2e}"), ("note", "note", "{}")]


def rosenbrock_spec(method, max_evals, target):
    return {"objective": "rosenbrock", "dim": ROSENBROCK_DIM, "method": method,
            "max_evals": max_evals, "target": target}


def reached_only(runs):
    return [run for run in runs if run.get("reached")]


def section_cmaes(bench):
    spec = rosenbrock_spec("cmaes", bench.settings.search_evals, 1e-8)
    runs = bench.seeded({"ours (cmaes)": ("search/ours", spec), "pycma": ("search/pycma", spec)})
    evaluations_ratio = ratio_of_medians(reached_only(runs["ours (cmaes)"]),
                                         reached_only(runs["pycma"]), "evaluations")
    return Section("cmaes", f"CMA-ES on {ROSENBROCK_DIM}-D Rosenbrock from x0 = 0, sigma0 = 0.5, "
                   f"to f < 1e-8 (budget {spec['max_evals']:,})", SEARCH_COLUMNS,
                   search_rows(runs), runs,
                   notes=["Default population 4 + floor(3 ln D) in both; medians over the "
                          "seeds that reached the target."],
                   checks=[check("evaluations ours / pycma", evaluations_ratio, "<=", 1.1)])


def section_cma_generation(bench):
    D = CMA_GENERATION_DIM
    spec = {"dim": D, "budget_s": bench.settings.budget_s}
    variants = {"ours cmaes": ("generation/ours", {**spec, "method": "cmaes"}),
                "pycma full": ("generation/pycma", {**spec, "diagonal": False}),
                "ours sep-cmaes": ("generation/ours", {**spec, "method": "sep-cmaes"}),
                "pycma CMA_diagonal": ("generation/pycma", {**spec, "diagonal": True})}
    runs = bench.alternate([[Measurement(label, measure, variant_spec)
                             for label, (measure, variant_spec) in variants.items()]] *
                           bench.settings.repeats)
    rows = [{"variant": label, "ms_per_generation": times(median_of(variant_runs, "seconds"), 1e3),
             "note": trouble(variant_runs)} for label, variant_runs in runs.items()]
    return Section("cma_generation", f"CMA-ES time per generation at D = {D:,} (sphere)", [
        ("variant", "variant", "{}"), ("ms / generation", "ms_per_generation", "{:.2f}"),
        ("note", "note", "{}")], rows, runs, notes=[
        "ask + sphere + tell, default population, after warm-up generations. Both libraries "
        "defer the eigendecomposition (every ~lambda / (c1 + cmu) / D / 10 generations, "
        "hundreds at this D), so the window measures the per-generation update."],
        checks=[check("ours cmaes / pycma full",
                      ratio_of_medians(runs["ours cmaes"], runs["pycma full"], "seconds"),
                      "<=", 0.25),
                check("ours sep-cmaes / pycma CMA_diagonal",
                      ratio_of_medians(runs["ours sep-cmaes"], runs["pycma CMA_diagonal"],
                                       "seconds"), "<=", 0.25)])


def section_de(bench):
    spec = rosenbrock_spec("de", bench.settings.de_evals, 1e-8)
    runs = bench.seeded({
        "ours (de)": ("search/ours", spec),
        "scipy": ("search/scipy", {**spec, "vectorized": False}),
        "scipy vectorized": ("search/scipy", {**spec, "vectorized": True})})
    ours = reached_only(runs["ours (de)"])
    return Section("de", f"DE on {ROSENBROCK_DIM}-D Rosenbrock to f < 1e-8 (budget "
                   f"{spec['max_evals']:,})", SEARCH_COLUMNS, search_rows(runs), runs, notes=[
        "Ours: best/1/bin, P = 10 D, dither F in [0.5, 1], CR 0.9, start x0 + 0.5 N(0, I). "
        "scipy: differential_evolution defaults (best1bin, P = 15 D, F in [0.5, 1], CR 0.7, "
        "Latin hypercube in [-5, 5]^D), polish=False, tol=0; 'scipy' is its default "
        "immediate updating with one call per candidate, 'scipy vectorized' is "
        "vectorized=True (deferred updating)."],
        checks=[check("evaluations ours / scipy",
                      ratio_of_medians(ours, reached_only(runs["scipy"]), "evaluations"),
                      "<=", 1.0),
                check("seconds scipy / ours", ratio_of_medians(runs["scipy"], ours, "seconds"),
                      ">=", 10.0),
                check("seconds scipy vectorized / ours",
                      ratio_of_medians(runs["scipy vectorized"], ours, "seconds"), ">=", 10.0)])


def section_pso(bench):
    spec = rosenbrock_spec("pso", bench.settings.search_evals, 1e-4)
    chi = constriction_factor(4.1)
    peer = {**spec, "popsize": PSO.default_popsize(ROSENBROCK_DIM),
            "options": {"c1": chi * 2.05, "c2": chi * 2.05, "w": chi}}
    runs = bench.seeded({
        "ours (pso)": ("search/ours", spec),
        "pyswarms": ("search/pyswarms", {**peer, "velocity_clamp": None}),
        "pyswarms, our clamp": ("search/pyswarms",
                                {**peer, "velocity_clamp": VMAX_PER_SIGMA0 * SIGMA0})})
    return Section("pso", f"PSO on {ROSENBROCK_DIM}-D Rosenbrock: seeds reaching f < 1e-4 within "
                   f"{spec['max_evals']:,} evaluations", SEARCH_COLUMNS, search_rows(runs), runs,
                   notes=[f"Both: {peer['popsize']} particles from x0 + 0.5 N(0, I), "
                          f"w = {chi:.4f}, c1 = c2 = {chi * 2.05:.5f} (Clerc-Kennedy constriction "
                          f"with c1 = c2 = 2.05, in inertia form). Ours clamps each velocity "
                          f"to +-{VMAX_PER_SIGMA0 * SIGMA0:g}; pyswarms runs unclamped (its "
                          f"default) and with that clamp."])


#: our GA with pygad's operators as ``ga_pygad`` sets them: uniform crossover,
#: 10% of the genes mutated, a fixed mutation std (0.2 sigma0, our default)
GA_AS_PYGAD = {"crossover": "uniform", "mutation_rate": 0.1, "self_adaptive": False}


def section_ga(bench):
    n_elite, seeds = 2, min(bench.settings.seeds, bench.settings.ga_seeds)
    children = POPULATION - n_elite  # evaluations per generation after the first
    generations = max(1, (bench.settings.ga_evals - POPULATION) // children)
    spec = {"data": bench.digits, "max_evals": POPULATION + generations * children,
            "popsize": POPULATION, "n_elite": n_elite}
    runs = bench.seeded({"ours (ga), defaults": ("ga/ours", {**spec, "options": {}}),
                         "ours (ga), pygad's operators": ("ga/ours",
                                                          {**spec, "options": GA_AS_PYGAD}),
                         "pygad": ("ga/pygad", spec)}, seeds)
    like = runs["ours (ga), pygad's operators"]
    return Section("ga", f"GA on the digits network (64-32-10, all {bench.digits_rows} rows) "
                   f"at {spec['max_evals']:,} evaluations, {seeds} seed(s)", [
                       ("variant", "variant", "{}"), ("median evaluations", "evaluations",
                                                       "{:,.0f}"),
                       ("median s", "seconds", "{:.2f}"), ("median final loss", "best", "{:.4f}"),
                       ("note", "note", "{}")], search_rows(runs, with_target=False), runs,
                   notes=["Population 50, 2 elites, tournaments of 3, from the network's "
                          "initial parameters + 0.5 N(0, I); mutation std 0.1. Our defaults: "
                          "SBX (eta 15) at rate 0.9 and a self-adaptive Gaussian mutation of "
                          "every gene, chosen on problems of up to 10 dimensions; at this D "
                          "(2,410) they barely move. pygad's operators, in both libraries: "
                          "uniform crossover at rate 0.9 and a mutation of 10% of the genes "
                          "(ours Gaussian, pygad's its default uniform noise, of the same std). "
                          "Ours evaluates with net.population_loss, pygad with a per-solution "
                          "NumPy forward pass. pygad's SBX and every-gene mutation exist but "
                          "run per-gene Python loops (about 2.5 s per generation each here)."],
                   checks=[information("seconds pygad / ours, pygad's operators",
                                       ratio_of_medians(runs["pygad"], like, "seconds")),
                           information("final loss pygad / ours, pygad's operators",
                                       ratio_of_medians(runs["pygad"], like, "best")),
                           information("final loss pygad / ours, defaults", ratio_of_medians(
                               runs["pygad"], runs["ours (ga), defaults"], "best"))])


SECTIONS = {"step": [section_step], "epoch": [section_epoch], "compile": [section_compile],
            "population": [section_population],
            "trainers": [section_cmaes, section_cma_generation, section_de, section_pso,
                         section_ga]}


# -------------------------------------------------------------- markdown
def met_cell(met):
    return {True: "met", False: "**missed**"}[met]


def cell(value, form):
    if value is None or value == "":
        return "—"
    return form(value) if callable(form) else form.format(value)


def markdown_table(columns, rows):
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key), form) for _, key, form in columns) + " |"
              for row in rows]
    return "\n".join(lines)


CHECK_COLUMNS = [("check", "check", "{}"), ("value", "value", "{:.3g}"),
                 ("target", "target", "{}"), ("met", "met", met_cell)]


def targets_summary(sections):
    """Every target of every section: {'section', 'item', 'target', 'met'}."""
    summary = []
    for section in sections.values():
        first_key = section.columns[0][1]
        for row in section.rows:
            if row.get("target"):
                item = " ".join(str(row[key]) for key in (first_key, "optimizer") if key in row)
                summary.append({"section": section.name, "item": item, "target": row["target"],
                                "met": row["met"]})
        summary += [{"section": section.name, "item": c["check"], "target": c["target"],
                     "met": c["met"]} for c in section.checks if c["target"]]
    return summary


SUMMARY_COLUMNS = [("section", "section", "{}"), ("item", "item", "{}"),
                   ("target", "target", "{}"), ("met", "met", met_cell)]


def section_markdown(section):
    parts = [f"## {section.title}", markdown_table(section.columns, section.rows)]
    if section.checks:
        parts.append(markdown_table(CHECK_COLUMNS, section.checks))
    parts += section.notes
    return "\n\n".join(parts) + "\n"


def report_markdown(report):
    machine = report["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    sgemm = machine["sgemm_gflops"]
    lines = [
        "# fastnet speed", "",
        f"Command: `{report['command']}` ({report['date']})", "",
        f"- CPU: {machine['cpu']}; {machine['logical_cores']} logical cores "
        f"({machine['physical_cores_per_socket']} physical per socket); vector flags: "
        f"{', '.join(machine['vector_flags']) or 'none'}",
        f"- numpy float32 GEMM ({machine['sgemm_n']}^3): "
        f"{'not measured' if sgemm is None else f'{sgemm:.1f} GFLOP/s'}; BLAS: "
        f"{machine['numpy_blas']}",
        f"- Threads: {', '.join(f'{k}={v}' for k, v in report['threads'].items())}, "
        f"torch.set_num_threads({report['settings']['threads']}); seen in the children: "
        f"{threads_seen(report)}",
        f"- Rounds: {report['settings']['repeats']} (timings), seeds: "
        f"{report['settings']['seeds']} (trainers); each child warms up, then times "
        f"{report['settings']['budget_s']} s in blocks; medians of rounds, ratios of medians"
        + ("; **--quick: tiny budgets, numbers are not meaningful**" if report["settings"]["quick"]
           else ""),
        f"- Packages: {packages}", f"- Platform: {machine['platform']}", "",
        "## Targets", "", markdown_table(SUMMARY_COLUMNS, targets_summary(report["sections"])),
        ""]
    return "\n".join(lines) + "\n" + "\n".join(map(section_markdown,
                                                   report["sections"].values()))


def threads_seen(report):
    seen = {f"{library}={count}" for section in report["sections"].values()
            for runs in section.raw.values() for run in runs
            for library, count in run.get("threads_seen", {}).items()}
    return ", ".join(sorted(seen)) or "none reported"


# ----------------------------------------------------------------- files
def write_atomic(path, data):
    """Write text or bytes to ``path`` through a temporary file and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        temporary.write_bytes(data)
    else:
        temporary.write_text(data)
    os.replace(temporary, path)


def report_json(report):
    """The report as JSON: each section's rows, checks, notes and raw child results."""
    sections = {name: {key: value for key, value in dataclasses.asdict(section).items()
                       if key != "columns"} for name, section in report["sections"].items()}
    return json.dumps(clean({**report, "targets": targets_summary(report["sections"]),
                             "sections": sections}), indent=1) + "\n"


def write_report(report, out):
    write_atomic(out / "speed.json", report_json(report))
    write_atomic(out / "speed.md", report_markdown(report))


def shape_label(shape):
    """'(e) batch 256' over the layer sizes, split in two lines when long."""
    sizes = [str(size) for size in SHAPES[shape][0]]
    half = len(sizes) // 2 if len("-".join(sizes)) > 12 else len(sizes)
    lines = ["-".join(sizes[:half]) + ("-" if half < len(sizes) else ""), "-".join(sizes[half:])]
    return "\n".join([f"({shape}) batch {SHAPES[shape][1]}", *filter(None, lines)])


def write_figure(report, out):
    """Left: speedup vs PyTorch per shape (log) with targets; right: GFLOP/s vs numpy GEMM."""
    import io
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = report["sections"]["step"].rows
    shapes = list(dict.fromkeys(row["shape"] for row in rows))
    x = np.arange(len(shapes))
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    # labels outside the pair of markers: SGD's to the left, Adam's to the right
    for optimizer, marker, shift, side in (("sgd", "o", -0.08, -1), ("adam", "s", 0.08, 1)):
        found = {row["shape"]: row.get("speedup") for row in rows if row["optimizer"] == optimizer}
        if not found:
            continue
        speedups = [found.get(s) or np.nan for s in shapes]
        left.plot(x + shift, speedups, marker, ms=8, ls="none",
                  label=f"fastnet vs PyTorch, {optimizer.upper()}",
                  fillstyle="full" if optimizer == "sgd" else "none")
        for xi, value in zip(x + shift, speedups):
            if np.isfinite(value):
                left.annotate(f"{value:,.0f}x" if value >= 100 else f"{value:.3g}x", (xi, value),
                              textcoords="offset points", xytext=(7 * side, 6),
                              ha="left" if side > 0 else "right", fontsize=7)
    left.scatter(x, [SHAPES[s][4] for s in shapes], marker="_", s=900, color="tab:red",
                 label="target (SGD)", zorder=3)
    left.axhline(1, color="grey", lw=0.8)
    left.set_xlim(-0.6, len(shapes) - 0.4)  # room for the outermost labels
    left.set_yscale("log")
    left.set_ylabel("speedup (PyTorch time / fastnet time)")
    left.set_title("Training step: speedup vs PyTorch")
    sgd = {row["shape"]: row for row in rows if row["optimizer"] == "sgd"}
    for shift, key, name in ((-0.2, "fastnet_gflops", "fastnet"), (0.2, "torch_gflops", "PyTorch")):
        right.bar(x + shift, [sgd.get(s, {}).get(key) or 0 for s in shapes], width=0.4,
                  label=f"{name}, SGD")
    if report["machine"]["sgemm_gflops"]:
        right.axhline(report["machine"]["sgemm_gflops"], color="black", ls="--",
                      label="numpy float32 GEMM")
    right.set_yscale("log")
    right.set_ylabel("GFLOP/s (a step counted as 3 forward passes)")
    right.set_title("Arithmetic rate per shape")
    for axis in (left, right):
        axis.set_xticks(x, [shape_label(s) for s in shapes], fontsize=8)
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
        axis.grid(axis="y", which="both", alpha=0.3)
    figure.suptitle(f"fastnet speed on {report['machine']['cpu']}, "
                    f"{report['settings']['threads']} threads, medians over "
                    f"{report['settings']['repeats']} round(s)", fontsize=10)
    figure.tight_layout()
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix, dpi=130)
        write_atomic(out / "figures" / f"speed.{suffix}", buffer.getvalue())
    plt.close(figure)


# ------------------------------------------------------------------- CLI
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m comparisons.speed",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts among {','.join(PARTS)}")
    parser.add_argument("--repeats", type=int, help="rounds per timing (default 5; quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for every library (default: os.cpu_count())")
    parser.add_argument("--seeds", type=int, help="seeds per trainer (default 10; quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny repeats and budgets: a dry run of the machinery")
    parser.add_argument("--out", default="reports",
                        help="folder for speed.json, speed.md and figures/")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part(s) {unknown}; choose among {list(PARTS)}")
    for name in ("repeats", "threads", "seeds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.parts = parts
    return args


def settings_from(args):
    base = QUICK if args.quick else Settings()
    return dataclasses.replace(base, repeats=args.repeats or base.repeats,
                               seeds=args.seeds or base.seeds)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = settings_from(args)
    out = pathlib.Path(args.out)
    with tempfile.TemporaryDirectory(prefix="fastnet-speed-") as scratch:
        bench = Bench(args.threads, settings, pathlib.Path(scratch))
        report = {"command": " ".join(["python -m comparisons.speed", *argv]),
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "threads": thread_environment(args.threads),
                  "settings": {**dataclasses.asdict(settings), "threads": args.threads,
                               "quick": args.quick, "parts": args.parts},
                  "machine": machine_description(bench), "sections": {}}
        print(f"numpy float32 GEMM: {report['machine']['sgemm_gflops'] or float('nan'):.1f} "
              f"GFLOP/s on {report['machine']['cpu']}, {args.threads} threads\n", flush=True)
        for part in args.parts:
            for make_section in SECTIONS[part]:
                section = make_section(bench)
                report["sections"][section.name] = section
                print(section_markdown(section), flush=True)
                write_report(report, out)
        write_report(report, out)
        if "step" in report["sections"]:
            write_figure(report, out)
    print(f"wrote {out / 'speed.json'} and {out / 'speed.md'}")


if __name__ == "__main__":
    main()
