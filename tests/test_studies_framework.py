"""The studies runner, the report's manifest and the `studies` command, with a stand-in study.

Oracles: the files on disk (PNG magic bytes, JSON contents), a counter of
how often the study actually ran, git's own answer for the commit, and the
installed packages' versions.
"""
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from matplotlib.figure import Figure

from comparisons import manifest, report, studies
from comparisons.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def toy_study(monkeypatch):
    """A study 'toy' that draws one figure and counts its runs."""
    module = types.ModuleType("comparisons.studies.toy")
    module.NAME, module.TITLE, module.calls = "toy", "A toy study", []

    def run(quick, seed):
        module.calls.append((quick, seed))
        figure = Figure()
        figure.add_subplot().plot([0, 1], [seed, seed + 1])
        return {"slope": 1.0, "seed_seen": seed}, {"toy": figure}

    module.run = run
    module.section = lambda result: [f"The slope is {result['slope']:g} "
                                     f"(seed {result['seed_seen']}).",
                                     "", "![toy](figures/toy.png)"]
    monkeypatch.setitem(sys.modules, "comparisons.studies.toy", module)
    monkeypatch.setattr(studies, "STUDY_MODULES", ("toy",))
    return module


def test_run_study_saves_figures_and_result_and_skips_when_stored(toy_study, tmp_path):
    stored = studies.run_study("toy", tmp_path, quick=True, seed=3)
    assert (tmp_path / "figures" / "toy.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "figures" / "toy.svg").exists()
    on_disk = json.loads((tmp_path / "studies" / "toy.json").read_text())
    assert on_disk == stored
    assert on_disk["result"] == {"slope": 1.0, "seed_seen": 3}
    assert on_disk["quick"] is True and on_disk["seed"] == 3 and on_disk["seconds"] >= 0
    studies.run_study("toy", tmp_path, quick=True, seed=3)
    assert toy_study.calls == [(True, 3)]          # stored: not run again
    studies.run_study("toy", tmp_path, quick=False, seed=4, force=True)
    assert toy_study.calls == [(True, 3), (False, 4)]
    assert studies.load_result(tmp_path, "toy")["result"]["seed_seen"] == 4


def test_unknown_study_is_named(toy_study):
    with pytest.raises(ValueError, match="study must be one of toy, got 'toys'"):
        studies.study("toys")


def test_sections_render_stored_results_and_command_reproduces_them(toy_study, tmp_path):
    studies.run_study("toy", tmp_path, quick=True, seed=2)
    stored = studies.stored_results(tmp_path)
    assert studies.sections(stored)[:3] == ["## A toy study", "",
                                            "The slope is 1 (seed 2)."]
    assert studies.command(tmp_path, stored) == (
        f"python -m comparisons studies --force --quick --seed 2 --out {tmp_path}")


def test_studies_command_runs_then_writes_report_with_sections_and_manifest(toy_study,
                                                                             tmp_path):
    out, results = tmp_path / "report", tmp_path / "none.jsonl"
    status = main(["studies", "--quick", "--out", str(out), "--results", str(results)])
    assert status == 0 and toy_study.calls == [(True, 0)]
    text = (out / "REPORT.md").read_text()
    assert "## A toy study" in text and "The slope is 1 (seed 0)." in text
    assert "## Manifest" in text
    assert f"python -m comparisons studies --force --quick --out {out}" in text
    facts = json.loads((out / "manifest.json").read_text())
    assert facts["studies"]["toy"]["quick"] is True
    assert facts["sweep"]["runs"] == 0


def test_manifest_states_commit_packages_and_machine():
    head = subprocess.run(["git", "-C", manifest.REPOSITORY, "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    records = [{"problem": "xor", "budget": 100, "seed": 1, "device": "cpu"},
               {"problem": "xor", "budget": 200, "seed": 0, "device": "cpu"},
               {"problem": "iris", "budget": 100, "seed": 0, "device": "cpu"}]
    facts = manifest.collect(records, [], ["python -m comparisons report"])
    if head:
        assert facts["commit"] == head
    assert facts["packages"]["numpy"] == np.__version__
    assert facts["cores"] >= 1 and facts["cpu"]
    assert facts["sweep"] == {"runs": 3, "seeds": [0, 1], "devices": ["cpu"],
                              "budgets_fpe": {"iris": [100], "xor": [100, 200]}}
    text = "\n".join(manifest.section(facts))
    assert "xor 100, 200" in text and "python -m comparisons report" in text
    assert f"numpy {np.__version__}" in text


def test_report_manifest_lists_the_sweep_commands(tmp_path):
    from comparisons.results import ResultsStore
    from comparisons.runs import run
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(run("xor", "hillclimb", 0, budget=400))
    report.build_report(tmp_path / "results.jsonl", tmp_path / "out")
    facts = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert facts["commands"][0].startswith("python -m comparisons run --problems xor "
                                           "--methods hillclimb --seeds 1")
    assert facts["commands"][-1].startswith("python -m comparisons report")
    assert facts["sweep"]["budgets_fpe"] == {"xor": [400]}
