"""The speed suite's machinery (never its timings): children, statistics, reports."""
import json

import pytest

from comparisons import speed, speed_peers


def runs(key, *values):
    return [{key: value} for value in values]


def test_median_ignores_runs_without_the_value():
    assert speed.median_of(runs("seconds", 3.0, 1.0, 2.0) + [{"error": "boom"}], "seconds") == 2.0
    assert speed.median_of(runs("seconds", 1.0, 4.0), "seconds") == 2.5
    assert speed.median_of([{"unavailable": "x"}], "seconds") is None


def test_ratio_of_medians_not_median_of_ratios():
    torch = runs("seconds", 10.0, 30.0, 20.0)   # median 20
    fastnet = runs("seconds", 1.0, 4.0, 2.0)    # median 2 (ratios per round: 10, 7.5, 10)
    assert speed.ratio_of_medians(torch, fastnet, "seconds") == pytest.approx(10.0)
    assert speed.ratio_of_medians(torch, [], "seconds") is None
    assert speed.ratio_of_medians(torch, runs("seconds", 0.0), "seconds") is None


def test_quartiles_and_checks():
    assert speed.quartiles_of(runs("evaluations", 1, 2, 3, 4, 5), "evaluations") == (2.0, 4.0)
    assert speed.check("speedup", 31.0, ">=", 30, "x") == {
        "check": "speedup", "value": 31.0, "target": ">= 30x", "met": True}
    assert speed.check("ms", 2.0, "<=", 1.5)["met"] is False
    assert speed.check("ms", None, "<=", 1.5)["met"] is None
    both = speed.combined([speed.check("a", 2, ">=", 1), speed.check("b", 0, ">=", 1)])
    assert both == {"target": ">= 1 and >= 1", "met": False}


def test_a_missed_speedup_says_what_share_of_gemm_it_needs():
    # (e): target 1.2x; PyTorch at 177.1 of 194 GFLOP/s (91%) -> 1.2 x 91% = 110% needed
    e = {"shape": "e", "optimizer": "sgd", "speedup": 1.14, "torch_gflops": 177.1,
         "gemm_fraction": 1.04}
    met = {**e, "shape": "d", "speedup": 1.63}
    adam = {**e, "optimizer": "adam", "speedup": 0.5}
    assert speed.SHAPES["e"][4] == 1.2 and speed.SHAPES["d"][4] == 1.5
    assert speed.missed_speedup_notes([e, met, adam], 194.0) == [
        "(e) missed by 5%: with PyTorch at 91% of numpy's GEMM rate, 1.2x needs fastnet at "
        "110%; it runs at 104%."]
    assert speed.missed_speedup_notes([{**e, "speedup": None}], 194.0) == []


def test_clean_makes_json_safe():
    import numpy as np
    cleaned = speed_peers.clean({"a": np.float32(1.5), "b": [float("nan"), np.int64(2)],
                                 "c": float("inf")})
    assert cleaned == {"a": 1.5, "b": [None, 2], "c": None}
    json.dumps(cleaned, allow_nan=False)


def test_markdown_table_marks_missing_values_and_missed_targets():
    columns = [("library", "library", "{}"), ("ms", "ms", "{:.1f}"), ("met", "met", speed.met_cell)]
    table = speed.markdown_table(columns, [{"library": "fastnet", "ms": 1.25, "met": False},
                                           {"library": "torch", "ms": None}])
    assert table.splitlines() == ["| library | ms | met |", "|---|---|---|",
                                  "| fastnet | 1.2 | **missed** |", "| torch | — | — |"]


def test_child_measurement_returns_json(tmp_path):
    result = speed.run_child("gemm/numpy", {"n": 64, "budget_s": 0.01}, 1, tmp_path)
    assert result["seconds"] > 0 and result["gflops"] > 0
    assert len(result["blocks"]) == 5
    assert result["threads_seen"].get("openblas", 1) == 1


def test_child_script_does_not_load_fastnet():
    """The compile measurement's clock must start before fastnet is imported:
    the child script must not import the comparisons package, which loads it."""
    import subprocess
    import sys
    script = speed.REPO / "comparisons" / "speed_peers.py"
    probe = (f"import runpy, sys; runpy.run_path({str(script)!r}, run_name='probe'); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastnet', 'comparisons')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_child_failure_is_reported_not_raised(tmp_path):
    result = speed.run_child("gemm/numpy", {"budget_s": 0.01}, 1, tmp_path)  # no "n"
    assert "KeyError" in result["error"]


def test_missing_peer_is_reported_not_raised(monkeypatch, tmp_path):
    monkeypatch.setitem(speed.PEER_MODULES, "torch", "no_such_module_for_fastnet")
    result = speed.run_child("step/torch", {}, 1, tmp_path)
    assert result == {"unavailable": speed.NOT_INSTALLED}
    assert speed.trouble([result]) == speed.NOT_INSTALLED


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit):
        speed.parse_args(["--only", "steps"])


def test_quick_population_writes_reports(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(speed.PEER_MODULES, "pygad", "no_such_module_for_fastnet")
    speed.main(["--quick", "--only", "population", "--threads", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "speed.json").read_text())
    rows = {row["library"]: row for row in report["sections"]["population"]["rows"]}
    assert set(rows) == {"fastnet", "numpy", "pygad", "deap"}
    assert rows["fastnet"]["evaluations_per_s"] > 0 and rows["fastnet"]["met"] in (True, False)
    assert rows["numpy"]["loss_difference"] < 1e-4
    assert rows["pygad"]["note"] == speed.NOT_INSTALLED
    assert report["machine"]["sgemm_gflops"] > 0
    assert report["threads"] == {name: "1" for name in speed.THREAD_VARIABLES}
    assert {"section": "population", "item": "fastnet", "target": ">= 8000/s",
            "met": rows["fastnet"]["met"]} in report["targets"]
    markdown = (tmp_path / "speed.md").read_text()
    assert "## Population evaluation" in markdown and speed.NOT_INSTALLED in markdown
    assert "## Population evaluation" in capsys.readouterr().out
