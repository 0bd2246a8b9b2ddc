"""Runs, sweeps and the results store: determinism, resumption, parallelism."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from comparisons.results import ResultsStore, run_key
from comparisons.problems import get_problem
from comparisons.runs import prepared_data, run
from comparisons.sweep import sweep, tasks

XOR_BUDGET = 40_000  # forward-pass equivalents: 10,000 evaluations of the 4 XOR points
DETERMINISTIC = ("evals", "fpe", "train_loss", "test_loss", "test_score")


def _without_time(record):
    return {key: record["trace"][key] for key in DETERMINISTIC}


@pytest.mark.parametrize("method", ["ga", "pso", "de", "cmaes", "es"])
def test_population_methods_solve_xor(method):
    record = run("xor", method, seed=0, budget=XOR_BUDGET)
    assert record["status"] == "completed"
    assert record["trace"]["test_score"][-1] == 1.0
    assert record["fpe"] <= XOR_BUDGET


def test_backprop_solves_xor_and_counts_three_fpe_per_sample():
    record = run("xor", "backprop", seed=0, budget=XOR_BUDGET)
    assert record["trace"]["test_score"][-1] == 1.0
    epochs = record["evals"]  # batch 32 > 4 samples: one step per epoch
    assert record["fpe"] == 3 * 4 * epochs


def test_same_seed_same_trace():
    first = run("iris", "sep-cmaes", seed=3, budget=50_000)
    second = run("iris", "sep-cmaes", seed=3, budget=50_000)
    assert _without_time(first) == _without_time(second)
    other = run("iris", "sep-cmaes", seed=4, budget=50_000)
    assert _without_time(first) != _without_time(other)


def test_budget_is_never_exceeded_and_trace_is_monotone():
    record = run("iris", "ga", seed=0, budget=30_000)
    trace = record["trace"]
    assert record["fpe"] <= 30_000
    assert np.all(np.diff(trace["fpe"]) >= 0)
    assert np.all(np.diff(trace["train_loss"]) <= 0)  # best so far never worsens


def test_scale_guard_runs_full_cmaes_where_it_fits_and_sep_cmaes_where_not():
    fits = run("digits", "cmaes", seed=0, budget=50_000)      # D = 2410: 46 MB, a few ms
    assert (fits["status"], fits["runs_as"], fits["message"]) == ("completed", "cmaes", "")
    # D = 38,410: a 11.8 GB covariance, and an eigendecomposition that dwarfs the evaluations
    large = run("digits-w512", "cmaes", seed=0, budget=50_000)
    assert large["status"] == "completed" and large["runs_as"] == "sep-cmaes"
    assert large["message"].startswith("switched to sep-cmaes: cmaes at D=38,410")


def test_a_budget_below_one_generation_is_skipped_with_the_numbers():
    record = run("iris", "ga", seed=0, budget=100)
    assert record["status"] == "skipped" and record["evals"] == 0
    assert "budget of 100 forward-pass equivalents is less than one generation" in \
        record["message"]


def test_results_do_not_depend_on_jobs(tmp_path):
    task_list = tasks(["xor"], ["backprop", "ga", "hillclimb"], range(2), budget_scale=0.02)
    serial, parallel = tmp_path / "serial.jsonl", tmp_path / "parallel.jsonl"
    assert sweep(task_list, serial, jobs=1, progress=False) == 6
    assert sweep(task_list, parallel, jobs=2, progress=False) == 6
    by_key = {run_key(r): _without_time(r) for r in ResultsStore(serial).records()}
    assert by_key == {run_key(r): _without_time(r) for r in ResultsStore(parallel).records()}


def test_rerun_skips_finished_runs(tmp_path):
    path = tmp_path / "results.jsonl"
    task_list = tasks(["xor"], ["ga"], range(2), budget_scale=0.02)
    assert sweep(task_list, path, progress=False) == 2
    assert sweep(task_list, path, progress=False) == 0
    more = tasks(["xor"], ["ga"], range(3), budget_scale=0.02)
    assert sweep(more, path, progress=False) == 1
    assert len(ResultsStore(path).records()) == 3


def test_partial_last_line_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append({"problem": "p", "method": "m", "seed": 0, "budget": 1})
    with open(path, "ab") as file:
        file.write(b'{"problem": "p", "method": "m", "se')  # a crash mid-write
    assert len(store.records()) == 1
    store.append({"problem": "p", "method": "m", "seed": 1, "budget": 1})
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1]


def _count_lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sweep_killed_midway_resumes_to_the_same_results(tmp_path):
    args = ["--problems", "xor", "--methods", "backprop,ga,de,hillclimb,random",
            "--seeds", "2", "--budget-scale", "0.02", "--no-scaling", "--no-progress"]
    killed = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "comparisons", "run", *args]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for attempt in range(3):  # kill at different points: after 1, 3 and 5 finished runs
        process = subprocess.Popen(command + ["--results", str(killed)], env=env)
        deadline = time.monotonic() + 120
        while _count_lines(killed) < 1 + 2 * attempt and process.poll() is None:
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    subprocess.run(command + ["--results", str(killed)], env=env, check=True)
    clean = tmp_path / "clean.jsonl"
    subprocess.run(command + ["--results", str(clean)], env=env, check=True)
    killed_records = ResultsStore(killed).records()
    assert len(killed_records) == 10
    assert killed.read_bytes().count(b"\n") == 10  # no partial or duplicate lines
    by_key = {run_key(r): _without_time(r) for r in killed_records}
    assert by_key == {run_key(r): _without_time(r) for r in ResultsStore(clean).records()}


def test_sweep_on_a_local_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask is in the test extra")
    task_list = tasks(["xor"], ["backprop", "sep-cmaes"], range(2), budget_scale=0.02)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address  # the sweep connects as a remote client would
        assert address.startswith("tcp://127.0.0.1:")
        assert sweep(task_list, tmp_path / "dask.jsonl", scheduler=address,
                     progress=False) == 4
    local = tmp_path / "local.jsonl"
    sweep(task_list, local, progress=False)
    by_key = {run_key(r): _without_time(r) for r in ResultsStore(tmp_path / "dask.jsonl").records()}
    assert by_key == {run_key(r): _without_time(r) for r in ResultsStore(local).records()}


def test_on_log_receives_the_parameters_of_every_logged_point():
    path = []
    record = run("iris", "ga", seed=0, budget=30_000, on_log=path.append)
    assert len(path) == len(record["trace"]["fpe"]) > 2
    problem = get_problem("iris")
    net = problem.network(seed=0)
    np.testing.assert_array_equal(path[0], net.params.astype(np.float64))
    X, Y = prepared_data(net, problem)[:2]
    last = net.loss(X, Y, params=path[-1].astype(net.dtype))
    assert last == pytest.approx(record["trace"]["train_loss"][-1], rel=1e-5)


def test_the_run_command_sweeps_hybrids_by_name_and_all_leaves_them_out(tmp_path):
    from comparisons.__main__ import main
    from comparisons.runs import HYBRID_METHODS, METHODS
    results = tmp_path / "hybrids.jsonl"
    assert main(["run", "--problems", "xor", "--methods", "ga+bp,memetic", "--seeds", "1",
                 "--budget-scale", "0.05", "--no-scaling", "--no-progress", "--jobs", "1",
                 "--results", str(results)]) == 0
    records = ResultsStore(results).records()
    assert sorted(r["method"] for r in records) == ["ga+bp", "memetic"]
    assert records[0]["hybrid"]["gradient_free"] == "ga"
    from comparisons.__main__ import _names
    assert _names("all", METHODS, "method", also=HYBRID_METHODS) == list(METHODS)
