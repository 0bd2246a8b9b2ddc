"""The scale-guard study: its measurements against independent counts, and the guard's curve
against ``comparisons.scale.guard`` itself."""
import json
import types

import numpy as np
import pytest

from comparisons import scale, studies
from comparisons.studies import scale_guard
from comparisons.trainers import get_trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale_guard")
    return out, studies.run_study("scale_guard", out, quick=True, seed=0)


def test_held_bytes_counts_every_array_and_the_population():
    holder = types.SimpleNamespace(a=np.zeros(10), b=np.zeros((3, 4), np.float32), c=7)
    assert scale_guard.held_bytes(holder, np.zeros((2, 5))) == 80 + 48 + 80


def test_only_full_cmaes_pays_for_a_decomposition():
    for method, pays in (("cmaes", True), ("sep-cmaes", False), ("ga", False)):
        trainer = get_trainer(method)(np.zeros(200), seed=0)
        assert (scale_guard.decomposition_seconds(trainer) > 0) == pays


def test_guard_curve_is_the_guards_own_decision_and_switches_once():
    curve = scale_guard.guard_curve(n_train=1347)
    decisions = [row["methods"]["cmaes"]["decision"] for row in curve]
    first = decisions.index("sep-cmaes")
    assert set(decisions[:first]) == {"cmaes"} and set(decisions[first:]) == {"sep-cmaes"}
    row = curve[first]
    popsize = get_trainer("cmaes").default_popsize(row["D"])
    flops = 2.0 * sum(a * b for a, b in zip([64, row["width"]], [row["width"], 10])) * 1347 * \
        popsize
    assert scale.guard("cmaes", row["D"], popsize, flops)[0] == "sep-cmaes"
    before = curve[first - 1]
    popsize = get_trainer("cmaes").default_popsize(before["D"])
    flops = 2.0 * (64 * before["width"] + before["width"] * 10) * 1347 * popsize
    assert scale.guard("cmaes", before["D"], popsize, flops) == ("cmaes", "")
    assert all(row["methods"]["ga"]["decision"] == "ga" for row in curve)


def test_quick_study_measures_what_it_estimates(stored):
    out, entry = stored
    result = entry["result"]
    assert [p["D"] for p in result["measured"]] == [75 * k + 10 for k in (1, 2, 4)]
    for point in result["measured"]:
        for method, values in point["methods"].items():
            # the estimates are upper bounds on memory (see tests/test_scale.py)
            assert 0.2 < values["memory"] / values["memory_estimate"] <= 1, (point["D"], method)
            assert values["seconds"] > 0 and values["evaluation_seconds"] > 0
    assert result["switch_D"] == 75 * result["switch_width"] + 10
    assert result["switch_to"] == "sep-cmaes"
    on_disk = json.loads((out / "studies" / "scale_guard.json").read_text())
    assert on_disk["result"]["switch_D"] == result["switch_D"]
    assert (out / "figures" / "scale_guard.png").read_bytes()[:8] == PNG_MAGIC


def test_section_quotes_the_numbers(stored):
    result = stored[1]["result"]
    text = "\n".join(scale_guard.section(result))
    assert f"D = {result['switch_D']:,}" in text
    assert f"K = {result['switch_width']}" in text
    cma = result["measured"][-1]["methods"]["cmaes"]
    assert f"{cma['memory'] / 2 ** 20:.3g} MiB" in text
    assert "figures/scale_guard.png" in text
