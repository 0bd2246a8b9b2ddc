"""The report and its figures: built from real tiny runs and hand-made records.

Oracles: numpy's percentiles on the records themselves, a hand-worked step
function, the PNG magic bytes, and the one colour table in plots.py.
"""
import copy
import math
import os
import re

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from comparisons import plots, report
from comparisons.results import ResultsStore
from comparisons.runs import run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ("backprop", "cmaes", "hillclimb")
SEEDS = (0, 1)
# xor reaches its target loss within this budget for backprop and hill climbing
BUDGET = 4000


@pytest.fixture(scope="module")
def records():
    """Real runs: 3 methods x 2 seeds on xor and on xor widened to 2 and 8 units.

    One compiled thread, as the sweep's workers use: on a busy machine the
    threads of a parallel kernel on a 4-sample problem wait on one another
    and a run takes seconds instead of milliseconds.
    """
    import numba
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return [run(problem, method, seed, budget=BUDGET)
                for problem in ("xor", "xor-w2", "xor-w8")
                for method in METHODS for seed in SEEDS]
    finally:
        numba.set_num_threads(threads)


@pytest.fixture(scope="module")
def built(records, tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    store = ResultsStore(directory / "results.jsonl")
    for record in records:
        store.append(record)
    path = report.build_report(store.path, str(directory / "out"))
    with open(path, encoding="utf-8") as file:
        return path, file.read(), store.records()


def _synthetic(problem="sine", method="backprop", seed=0, losses=(1.0, 0.5, 0.1),
               fpe=(0, 100, 1000), scores=(0.0, 0.5, 0.9), status="completed", budget=1000):
    """A hand-made record with the fields a run writes."""
    n = len(losses)
    return {"problem": problem, "method": method, "seed": seed, "budget": budget,
            "device": "cpu", "n_params": 49, "sizes": [1, 16, 1], "n_train": 300,
            "options": {}, "status": status, "message": "",
            "trace": {"evals": list(range(n)), "fpe": list(fpe),
                      "seconds": [0.01 * i for i in range(n)], "train_loss": list(losses),
                      "test_loss": list(losses), "test_score": list(scores)},
            "fpe_to_target": None, "target_loss": 0.01, "evals": n - 1, "fpe": fpe[-1],
            "seconds": 0.01 * (n - 1), "fastnet_version": "test", "format_version": 1}


# ------------------------------------------------------------- the report
def test_every_figure_named_in_the_report_is_a_png_with_an_svg(built):
    path, text, _ = built
    names = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    assert sorted(os.path.basename(n) for n in names) == sorted(
        f"{name}.png" for name in plots.FIGURES)
    for name in names:
        png = os.path.join(os.path.dirname(path), name)
        with open(png, "rb") as file:
            assert file.read(8) == PNG_MAGIC, png
        with open(png[:-4] + ".svg", "rb") as file:
            assert b"<svg" in file.read(2000), png
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


def _table_rows(text):
    """{(problem, method): cells} from the report's main results table."""
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0] not in ("problem",) and not cells[0].startswith("---"):
            rows[cells[0], cells[1]] = cells
    return rows


def _number(text):
    return math.inf if text == "—" else float(text)


def test_table_medians_and_iqr_equal_numpy(built):
    _, text, records = built
    rows = _table_rows(text)
    assert {key[1] for key in rows} == set(METHODS)
    for method in METHODS:
        runs = [r for r in records if r["problem"] == "xor" and r["method"] == method]
        assert len(runs) == len(SEEDS)
        cells = rows["xor", method]
        scores = [r["trace"]["test_score"][-1] for r in runs]
        low, median, high = np.percentile(scores, [25, 50, 75])
        shown = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cells[3]).groups()
        np.testing.assert_allclose([float(v) for v in shown], [median, low, high], rtol=5e-3)
        losses = [r["trace"]["train_loss"][-1] for r in runs]
        assert float(cells[4]) == pytest.approx(np.median(losses), rel=5e-3, abs=1e-12)
        reached = [r["fpe_to_target"] for r in runs]
        assert cells[5] == f"{sum(x is not None for x in reached)}/{len(runs)}"
        for column, axis in ((6, "fpe"), (7, "seconds")):
            costs = [x[axis] if x else math.inf for x in reached]
            assert _number(cells[column]) == pytest.approx(np.median(costs), rel=5e-3)
    # the real runs exercise both cases: a median cost to the target, and none
    assert any(cells[6] != "—" for cells in rows.values())


def test_summary_statistics_equal_numpy_exactly(records):
    runs = [r for r in records if r["problem"] == "xor" and r["method"] == "backprop"]
    summary = report.summarise(runs)
    scores = [r["trace"]["test_score"][-1] for r in runs]
    losses = [r["trace"]["train_loss"][-1] for r in runs]
    np.testing.assert_array_equal(summary["score"], np.percentile(scores, [25, 50, 75]))
    np.testing.assert_array_equal(summary["loss"], np.percentile(losses, [25, 50, 75]))


def test_captions_state_numbers_from_the_results(built):
    _, text, records = built
    caption = text.split("**Figure 1.**", 1)[1].split("\n", 1)[0]
    runs = [r for r in records if r["problem"] == "xor" and r["method"] == "backprop"]
    fpe = np.median([r["fpe_to_target"]["fpe"] if r["fpe_to_target"] else math.inf
                     for r in runs])
    assert math.isfinite(fpe)  # xor's backprop runs reach the target within BUDGET
    assert f"backprop reached the target after a median {report.fmt(fpe)} FPE" in caption
    assert "scaling" in text and "xor" in text.split("## Scaling runs", 1)[1]
    assert "python -m comparisons run" in text and "python -m comparisons report" in text


# ------------------------------------------------- interpolation, quantiles
def test_step_interpolation_takes_the_last_value_at_or_before_each_point():
    x = [0, 10, 100, 100, 1000]
    y = [5.0, 3.0, 2.0, 1.0, 0.5]
    grid = [-1, 0, 1, 10, 99.9, 100, 500, 1000, 10 ** 6]
    expected = [np.nan, 5.0, 5.0, 3.0, 3.0, 1.0, 1.0, 0.5, 0.5]
    np.testing.assert_array_equal(plots.step_interpolate(x, y, grid), expected)


def test_curves_on_a_common_grid_by_hand():
    a = _synthetic(losses=(1.0, 0.5, 0.1), fpe=(0, 10, 100))
    b = _synthetic(seed=1, losses=(1.0, 0.3, 0.2, None), fpe=(0, 20, 50, 200),
                   scores=(0, 0, 0, 0))
    grid, stats = plots.curves([a, b], "fpe", "train_loss",
                               grid=np.array([5, 10, 20, 60, 150, 200, 300]))
    curve = stats["backprop"]
    # a (ends at 100):  1, .5, .5, .5, .1, .1  and nothing past the longest run (200)
    # b (diverges):     1,  1, .3, .2, .2, inf (a non-finite loss is the worst)
    np.testing.assert_allclose(curve.median[:6], [1.0, 0.75, 0.4, 0.35, 0.15, math.inf])
    # numpy's linear 25th percentile of two values: a + (b - a) / 4
    np.testing.assert_allclose(curve.low[:5], [1.0, 0.625, 0.35, 0.275, 0.125])
    assert curve.low[5] == math.inf and curve.high[5] == math.inf
    assert np.isnan([curve.low[6], curve.median[6], curve.high[6]]).all()
    assert curve.runs == 2 and curve.start == 10 and curve.end == 200


def test_quantiles_match_numpy_and_keep_infinities():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 5))
    np.testing.assert_array_equal(plots.quantiles(values),
                                  np.percentile(values, [25, 50, 75], axis=0))
    low, median, high = plots.quantiles(np.array([[1.0], [2.0], [math.inf]]))[:, 0]
    assert (low, median, high) == (1.5, 2.0, math.inf)
    assert np.isnan(plots.quantiles(np.full((3, 1), np.nan))).all()


# ------------------------------------------------------------------ colours
def _method_colours(figure):
    """{method: set of RGBA} over every artist tagged with a method, and the legend."""
    colours = {}
    for ax in figure.axes:
        for artist in ax.get_children():
            gid = artist.get_gid() or ""
            if not gid.startswith("method:"):
                continue
            if hasattr(artist, "get_markeredgecolor") and artist.get_linestyle() == "None":
                colour = artist.get_markeredgecolor()
            elif hasattr(artist, "get_color"):
                colour = artist.get_color()
            else:
                colour = artist.get_facecolor()
            colour = np.atleast_2d(to_rgba_array(colour))[0]
            colours.setdefault(gid[7:], set()).add(tuple(np.round(colour[:3], 6)))
    for legend in figure.legends:
        for handle, label in zip(legend.legend_handles, legend.get_texts()):
            method = label.get_text().split(" ")[0]
            if method in plots.METHOD_COLOURS:
                colours.setdefault(method, set()).add(
                    tuple(np.round(to_rgba(handle.get_color())[:3], 6)))
    return colours


def to_rgba_array(colour):
    from matplotlib.colors import to_rgba_array as convert
    return convert(colour)


def test_a_method_has_one_colour_in_every_figure(records):
    figures = [plots.convergence_figure(records, x) for x in ("fpe", "seconds", "evals")]
    figures += [plots.test_score_figure(records), plots.scaling_figure(records)]
    seen = {}
    for figure in figures:
        assert figure is not None
        colours = _method_colours(figure)
        assert set(colours) == set(METHODS)
        for method, found in colours.items():
            seen.setdefault(method, set()).update(found)
    for method, found in seen.items():
        assert found == {tuple(np.round(to_rgba(plots.METHOD_COLOURS[method])[:3], 6))}, method
    assert len({plots.METHOD_COLOURS[m] for m in plots.METHOD_ORDER}) == len(plots.METHOD_ORDER)
    assert plots.METHOD_COLOURS["backprop"] == "#000000"


# ---------------------------------------------------------- missing data
def test_missing_data_leaves_figures_out_and_says_so(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "scaling.png").write_bytes(PNG_MAGIC)  # stale, from an old report
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(_synthetic())
    store.append(_synthetic(seed=1, losses=(1.0, None), fpe=(0, 30), scores=(0.1, None),
                            status="diverged"))
    skipped = _synthetic(problem="digits", method="cmaes", status="skipped")
    skipped.update(message="full CMA-ES needs a big covariance", trace={})
    store.append(skipped)
    switched = _synthetic(problem="digits", method="cmaes", seed=1)
    switched.update(runs_as="sep-cmaes", message="switched to sep-cmaes: over the limit")
    store.append(switched)
    text = open(report.build_report(store.path, str(out)), encoding="utf-8").read()
    assert "no scaling runs" in text
    assert "figures/scaling.png" not in text and not (out / "figures" / "scaling.png").exists()
    assert "(figures/convergence_fpe.png)" in text
    assert "Skipped: cmaes on digits (seeds 0): full CMA-ES needs a big covariance" in text
    assert "Diverged: backprop on sine (seeds 1)" in text
    assert "Switched: cmaes on digits (seeds 1): switched to sep-cmaes: over the limit" in text
    rows = _table_rows(text)
    assert rows["sine", "backprop"][2] == "2 (1 diverged)"
    # the diverged run's loss counts as infinite: the median of (0.1, inf) is inf
    assert rows["sine", "backprop"][4] == "inf"


def test_an_empty_store_gives_a_report_not_a_crash(tmp_path):
    path = report.build_report(tmp_path / "none.jsonl", str(tmp_path / "out"))
    text = open(path, encoding="utf-8").read()
    assert "No completed runs" in text and "python -m comparisons" in text


def test_only_widened_runs_still_draw_convergence(records):
    widened = [copy.deepcopy(r) for r in records
               if r["problem"] == "xor-w8" and r["method"] == "backprop"]
    figure = plots.convergence_figure(widened)
    assert figure is not None and [ax.get_title(loc="left").split("\n")[0]
                                   for ax in figure.axes] == ["xor-w8"]
    assert plots.scaling_figure(widened) is not None
    assert plots.scaling_figure([r for r in records if r["problem"] == "xor"]) is None


def test_runs_with_nothing_past_their_start_are_left_out_with_a_reason(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    for method in ("backprop", "cmaes"):
        store.append(_synthetic(method=method, losses=(0.7,), fpe=(0,), scores=(0.5,)))
    text = open(report.build_report(store.path, str(tmp_path / "out")), encoding="utf-8").read()
    assert "![" not in text and "no curve to draw" in text
    assert _table_rows(text)["sine", "cmaes"][4] == "0.7"
