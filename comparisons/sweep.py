"""Sweeps: problems x methods x seeds, in worker processes or on a Dask cluster.

Runs are independent and deterministic given (problem, method, seed,
budget), so results do not depend on how many workers run them. Only the
parent process writes the results store, one run at a time, as each
finishes: a sweep that is killed loses only the runs in flight, and a
re-run skips every run already stored.
"""
import dataclasses
import itertools

from comparisons.problems import get_problem
from comparisons.results import ResultsStore
from comparisons.runs import run

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is a dependency; this keeps a bare checkout importable
    tqdm = None


@dataclasses.dataclass(frozen=True)
class Task:
    problem: str
    method: str
    seed: int
    budget: int
    device: str = "cpu"

    def key(self):
        return (self.problem, self.method, self.seed, self.budget, self.device)


def tasks(problems, methods, seeds, budget_scale=1.0, device="cpu"):
    """Every (problem, method, seed) as a Task, budgets scaled from each problem's own."""
    return [Task(name, method, seed, max(1, int(get_problem(name).budget * budget_scale)),
                 device)
            for name, method, seed in itertools.product(problems, methods, seeds)]


def run_task(task):
    """One run on one CPU thread (Numba's and BLAS's), however many workers run.

    Runs are parallel across workers instead: that scales, keeps workers
    from fighting over cores, and makes every run's seconds comparable.
    """
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(1)
    with threadpool_limits(limits=1):
        return run(task.problem, task.method, task.seed, budget=task.budget, device=task.device)


def sweep(task_list, results_path, jobs=1, scheduler=None, progress=True):
    """Run every task not yet in the store; return the number of runs done now.

    ``jobs`` worker processes (joblib/loky) locally, or the Dask cluster at
    ``scheduler`` (an address such as "tcp://127.0.0.1:8786", or a
    ``distributed.Client``). Ctrl-C stops the sweep; finished runs are kept.
    """
    store = ResultsStore(results_path)
    done = store.done_keys()
    todo = [task for task in task_list if task.key() not in done]
    bar = _progress(len(task_list), len(task_list) - len(todo), progress)
    finished = 0
    try:
        for record in _execute(todo, jobs, scheduler):
            store.append(record)
            finished += 1
            if bar is not None:
                bar.set_postfix_str(f"{record['problem']}/{record['method']}/{record['seed']}")
                bar.update(1)
    except KeyboardInterrupt:
        if bar is not None:
            bar.write(f"interrupted: {finished} runs saved to {results_path}; re-run to resume")
        raise
    finally:
        if bar is not None:
            bar.close()
    return finished


def _progress(total, already, enabled):
    if not enabled or tqdm is None:
        return None
    return tqdm(total=total, initial=already, desc="runs", unit="run")


def _execute(todo, jobs, scheduler):
    """Yield each task's record as it finishes."""
    if not todo:
        return
    if scheduler is not None:
        yield from _execute_dask(todo, scheduler)
    elif jobs == 1:
        for task in todo:
            yield run_task(task)
    else:
        from joblib import Parallel, delayed
        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
        yield from parallel(delayed(run_task)(task) for task in todo)


def _execute_dask(todo, scheduler):
    from distributed import Client, as_completed
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = client.map(run_task, todo, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        if client is not scheduler:
            client.close()

