"""REPORT.md from stored results: tables, figures and captions with numbers.

``build_report(results_path, out_dir)`` reads the results store, draws the
figures (plots.py) into ``out_dir/figures`` and writes ``out_dir/REPORT.md``
atomically. Every number in the text is computed here from the records:
a caption states what its figure shows for these results, never a claim
written in advance. What cannot be drawn (one method only, no widened
runs) is left out, and the report says so.

Statistics over seeds are medians with the interquartile range (numpy's
linear percentiles, see ``plots.quantiles``). A run that never reached the
target loss counts as needing infinitely many forward passes, so the
median cost to the target is finite only when at least half of the runs
reached it; a diverged run's non-finite loss counts as infinite.
"""
import math
import os
import shlex
import tempfile

import numpy as np

from comparisons import manifest, plots, studies
from comparisons.results import ResultsStore

FIGURE_TITLES = {
    "convergence_fpe": "Training loss against forward-pass equivalents",
    "convergence_seconds": "Training loss against seconds",
    "convergence_evals": "Training loss against evaluations",
    "test_score_fpe": "Test score against forward-pass equivalents",
    "scaling": "Cost to the target loss as the network widens",
}
UNITS = {"fpe": "FPE", "seconds": "s", "evals": "evaluations"}


# --------------------------------------------------------------- numbers
def fmt(value, digits=3):
    """A number in ``digits`` significant figures, exponents written 2.1e6."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _ratio(value):
    return fmt(value, 2) + "×"


def _ties(values, best=min):
    """The methods sharing the best value, as text: "a", "a and b", "a, b and 3 others"."""
    value = best(values.values())
    names = [method for method, v in values.items() if v == value]
    if len(names) > 3:
        return f"{', '.join(names[:2])} and {len(names) - 2} others", value
    return (" and ".join(names) if len(names) < 3
            else f"{names[0]}, {names[1]} and {names[2]}"), value


def final_value(record, name):
    """The last logged value of a trace column; a non-finite one is the worst."""
    values = record["trace"].get(name) or [None]
    value = values[-1]
    return plots.worst_value(name) if value is None else float(value)


def cost_to_target(record, axis):
    """Evaluations, FPE or seconds at which the run first reached the target (inf: never)."""
    reached = record.get("fpe_to_target")
    return float(reached[axis]) if reached else math.inf


def summarise(runs):
    """Medians and quartiles over the seeds of one problem and method."""
    scores = np.array([final_value(run, "test_score") for run in runs])
    losses = np.array([final_value(run, "train_loss") for run in runs])
    summary = {"runs": len(runs),
               "diverged": sum(run.get("status") == "diverged" for run in runs),
               "reached": sum(bool(run.get("fpe_to_target")) for run in runs),
               "score": plots.quantiles(scores[:, None])[:, 0],
               "loss": plots.quantiles(losses[:, None])[:, 0],
               "budget": max(run["budget"] for run in runs)}
    for axis in ("fpe", "seconds", "evals"):
        to_target = np.array([cost_to_target(run, axis) for run in runs])
        summary[f"{axis}_to_target"] = plots.quantiles(to_target[:, None])[:, 0]
        total = np.array([float(run[axis]) for run in runs])
        summary[f"{axis}_total"] = plots.quantiles(total[:, None])[:, 0]
    return summary


# --------------------------------------------------------------- records
class Selection:
    """The records a report uses, and what it leaves out and why."""

    def __init__(self, records):
        self.skipped = [r for r in records if r.get("status") == "skipped"]
        trained = plots.usable(records)
        self.unusable = len(records) - len(self.skipped) - len(trained)
        # one budget per problem: a store that mixes sweeps of several budget
        # scales would otherwise mix their curves; the largest budget is kept
        budgets = {}
        for record in trained:
            budgets.setdefault(record["problem"], set()).add(record["budget"])
        self.ignored = []
        for problem, values in sorted(budgets.items()):
            for budget in sorted(values)[:-1]:
                count = sum(r["problem"] == problem and r["budget"] == budget
                            for r in trained)
                self.ignored.append(f"{problem}: {count} runs at a budget of {fmt(budget)} FPE "
                                    f"(the report uses those at {fmt(max(values))})")
        self.used = [r for r in trained if r["budget"] == max(budgets[r["problem"]])]
        self.diverged = [r for r in self.used if r.get("status") == "diverged"]
        self.groups = plots.by_problem_and_method(self.used)
        self.summaries = {problem: {method: summarise(runs) for method, runs in methods.items()}
                          for problem, methods in self.groups.items()}
        self.base = [p for p in self.groups if plots.widened_name(p) is None]
        self.widened = [p for p in self.groups if plots.widened_name(p) is not None]


# ----------------------------------------------------------------- report
def build_report(results_path, out_dir):
    """Write out_dir/REPORT.md and out_dir/figures/ from the results store; return the path."""
    records = ResultsStore(results_path).records()
    selection = Selection(records)
    os.makedirs(out_dir, exist_ok=True)
    figures = {name: draw(selection.used, out_dir) for name, draw in plots.FIGURES.items()}
    commands, notes = reproduce_commands(selection, results_path, out_dir)
    stored_studies = studies.stored_results(out_dir)
    if stored_studies:
        commands.append(studies.command(out_dir, stored_studies))
    the_manifest = manifest.collect(selection.used + selection.skipped, stored_studies,
                                    commands)
    the_manifest["notes"] = notes
    manifest.write(the_manifest, out_dir)
    text = render(selection, figures, results_path, out_dir, n_records=len(records),
                  study_sections=studies.sections(stored_studies), the_manifest=the_manifest)
    path = os.path.join(out_dir, "REPORT.md")
    fd, temporary = tempfile.mkstemp(dir=out_dir, prefix=".REPORT.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def render(selection, figures, results_path, out_dir, n_records, study_sections, the_manifest):
    lines = ["# Backprop against gradient-free training: results", ""]
    lines += [_introduction(selection, results_path, n_records), ""]
    if not selection.used:
        lines += ["**No completed runs in these results**: there is nothing to tabulate "
                  "or draw yet.", ""]
    else:
        lines += _problems_table(selection)
        lines += _main_table(selection)
        lines += _figures(selection, figures)
        if selection.widened:
            lines += _scaling_tables(selection)
    lines += study_sections
    lines += _speed_section(out_dir)
    lines += _left_out(selection)
    lines += manifest.section(the_manifest)
    return "\n".join(lines).rstrip() + "\n"


def _speed_section(out_dir):
    """The engine's speed figure, when ``python -m comparisons.speed`` wrote one here."""
    if not os.path.exists(os.path.join(out_dir, "speed.md")):
        return []
    lines = ["## Speed", "",
             "How fast the engine runs the same networks as PyTorch (CPU) and the reference "
             "implementations of the gradient-free methods, each measured in its own process "
             "by `python -m comparisons.speed`. The tables, the machine, the thread counts "
             "and every target met or missed are in [speed.md](speed.md).", ""]
    if os.path.exists(os.path.join(out_dir, "figures", "speed.png")):
        lines += ["![Speed against PyTorch per training-step shape, and GFLOP/s against "
                  "numpy's float32 GEMM rate](figures/speed.png)", ""]
    return lines


def _introduction(selection, results_path, n_records):
    methods = sorted({r["method"] for r in selection.used + selection.skipped},
                     key=plots.method_sort_key)
    gradient_free = [m for m in methods if m != "backprop"]
    problems = selection.base or selection.widened
    seeds = sorted({r.get("seed") for r in selection.used}, key=str)
    devices = sorted({str(r.get("device", "cpu")) for r in selection.used}) or ["cpu"]
    versions = sorted({str(r.get("fastnet_version")) for r in selection.used
                       if r.get("fastnet_version")})
    compared = (f"backprop and {len(gradient_free)} gradient-free methods "
                f"({', '.join(gradient_free)})" if "backprop" in methods and gradient_free
                else ", ".join(methods) or "no methods")
    text = (
        f"This report compares {compared} at training the same fixed-topology networks "
        f"on {len(problems)} problem{'s' * (len(problems) != 1)} "
        f"({', '.join(problems) or 'none'})"
        + (f", plus {len(selection.widened)} widened variants for the scaling figure"
           if selection.widened and selection.base else "")
        + f", over {len(seeds)} seed{'s' * (len(seeds) != 1)}: a seed fixes the network's "
        "initial parameters, which every method starts from. Costs are counted three ways "
        "(comparisons/budget.py): **forward-pass equivalents** (FPE: one sample through the "
        "network's forward pass = 1; a gradient-free loss evaluation on N training samples "
        "costs N, a backprop step on a batch of B costs 3B, forward plus backward), "
        "**evaluations** (a gradient-free method's candidate losses on the whole training "
        "set; backprop's mini-batch steps) and **seconds** of training, timed around the "
        "training work only. Each run stops at its problem's FPE budget. The training loss "
        "of a gradient-free method is that of its best candidate so far; backprop's is "
        "that of its current parameters on the whole training set. Statistics over seeds "
        "are the median and the interquartile range (IQR); a run that never reached the "
        "target loss counts as needing infinite cost, so a median cost to the target is "
        "given only where at least half of the runs reached it.")
    source = (f"\n\nResults: `{results_path}`, {n_records} records ({len(selection.used)} "
              f"runs used, {len(selection.diverged)} of them diverged; "
              f"{len(selection.skipped)} skipped); device: {', '.join(devices)}"
              + (f"; fastnet {', '.join(versions)}" if versions else "") + ".")
    settings = _settings(selection)
    return text + source + (f"\n\nSettings: {settings}." if settings else "")


def _settings(selection):
    options = {}
    for record in selection.used:
        pairs = sorted(record.get("options", {}).items())
        options.setdefault(record["method"], set()).add(
            ", ".join(f"{key} {value}" for key, value in pairs))
    parts = []
    for method in sorted(options, key=plots.method_sort_key):
        text = "; ".join(sorted(options[method])) or "defaults"
        parts.append(f"{method} ({'Adam, ' if method == 'backprop' else ''}{text})")
    return "; ".join(parts)


def _problems_table(selection):
    lines = ["## Problems", "",
             "| problem | network | parameters | training samples | budget (FPE) | "
             "target loss | loss |",
             "|---|---|---:|---:|---:|---:|---|"]
    for problem, methods in selection.groups.items():
        run = next(iter(methods.values()))[0]
        kind = plots.loss_kind(problem)
        lines.append(f"| {problem} | {'-'.join(map(str, run.get('sizes', [])))} | "
                     f"{run.get('n_params', '—')} | {run.get('n_train', '—')} | "
                     f"{fmt(run['budget'])} | {fmt(run.get('target_loss'))} | "
                     f"{plots.LOSS_NAMES.get(kind, kind or '—')} |")
    return lines + [""]


def _main_table(selection):
    problems = selection.base or selection.widened
    lines = ["## Results", "",
             "Final values are those at the end of each run's budget (test score: "
             "accuracy, or R² for sine regression). *Reached* counts the runs whose "
             "training loss reached the problem's target loss; the costs to the target "
             "are medians over all runs, a run that never reached it counting as infinite "
             "(— where half or more did not).", "",
             "| problem | method | runs | final test score, median [IQR] | "
             "final training loss, median | reached target | FPE to target, median | "
             "seconds to target, median |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    skipped = _skipped_by_group(selection)
    for problem in problems:
        for method, s in selection.summaries[problem].items():
            runs = f"{s['runs']}" + (f" ({s['diverged']} diverged)" if s["diverged"] else "")
            low, median, high = s["score"]
            lines.append(
                f"| {problem} | {method} | {runs} | {fmt(median)} [{fmt(low)}, {fmt(high)}] | "
                f"{fmt(s['loss'][1])} | {s['reached']}/{s['runs']} | "
                f"{_finite_or_dash(s['fpe_to_target'][1])} | "
                f"{_finite_or_dash(s['seconds_to_target'][1])} |")
        for method, seeds in skipped.get(problem, {}).items():
            lines.append(f"| {problem} | {method} | 0 ({len(seeds)} skipped) "
                         "| — | — | — | — | — |")
    return lines + [""]


def _finite_or_dash(value):
    return fmt(value) if math.isfinite(value) else "—"


def _skipped_by_group(selection):
    groups = {}
    for record in selection.skipped:
        if record["method"] in selection.groups.get(record["problem"], {}):
            continue  # the problem/method has trained runs too: listed below only
        groups.setdefault(record["problem"], {}).setdefault(record["method"], []) \
            .append(record.get("seed"))
    return groups


# ---------------------------------------------------------------- figures
def _figures(selection, figures):
    lines = ["## Figures", ""]
    captions = {
        "convergence_fpe": lambda: _convergence_caption(selection, "fpe"),
        "convergence_seconds": lambda: _convergence_caption(selection, "seconds"),
        "convergence_evals": lambda: _convergence_caption(selection, "evals"),
        "test_score_fpe": lambda: _test_score_caption(selection),
        "scaling": lambda: _scaling_caption(selection),
    }
    number = 0
    for name, paths in figures.items():
        lines += [f"### {FIGURE_TITLES.get(name, name)}", ""]
        if not paths:
            lines += [f"*Left out:* {_missing_reason(selection, name)}", ""]
            continue
        number += 1
        lines += [f"![{FIGURE_TITLES.get(name, name)}](figures/{name}.png)", "",
                  f"**Figure {number}.** {captions[name]()} "
                  f"([SVG for print](figures/{name}.svg))", ""]
    return lines


def _missing_reason(selection, name):
    if name == "scaling":
        return ("these results hold no scaling runs (problems named NAME-wK, a problem "
                "with every hidden layer K units wide), so there is no scaling figure.")
    if not selection.used:
        return "these results hold no completed runs to draw."
    return ("no run in these results logged a point after its start (a budget smaller "
            "than one step or generation), so there is no curve to draw.")


def _methods_in(selection, problem):
    return selection.summaries.get(problem, {})


def _convergence_caption(selection, axis):
    problems = selection.base or selection.widened
    opening = {
        "fpe": "Training loss against forward-pass equivalents, one panel per problem: the "
               "median over seeds (line) and the interquartile range (band), each run put "
               "on a common log-spaced grid by its last logged value at or before each "
               "point. The dotted line is the target loss.",
        "seconds": "The same runs against seconds of training (wall clock around the "
                   "training work, on a CPU shared with other work, so expect noise between "
                   "seeds). Seconds add to FPE the cost of each method's own arithmetic "
                   "and Python overhead per step or generation.",
        "evals": "The same runs against evaluations. An evaluation is not the same unit "
                 "for every method: for backprop it is one mini-batch step "
                 f"(about 3B FPE for a batch of B{_batch_phrase(selection)}), for a "
                 "gradient-free method one candidate's loss on the whole training set "
                 "(N FPE for N training samples).",
    }[axis]
    sentences = [_target_sentence(selection, problem, axis) for problem in problems]
    text = opening + " " + " ".join(s for s in sentences if s)
    if axis == "fpe":
        text += " " + _lowest_loss_sentence(selection, problems)
        alone = [f"{p} ({next(iter(_methods_in(selection, p)))})" for p in problems
                 if len(_methods_in(selection, p)) == 1]
        if alone:
            text += (f" Only one method was run on {', '.join(alone)}: there is nothing to "
                     "compare it with there.")
        floor = _below_floor(selection)
        if floor:
            text += (f" Losses below {fmt(plots.LOSS_FLOOR)} (on {floor}, including exact "
                     "zeros where a saturated sigmoid output makes the float32 loss 0) are "
                     f"drawn at {fmt(plots.LOSS_FLOOR)}.")
    if axis == "seconds":
        text += " " + _run_time_sentence(selection, problems)
    return text


def _batch_phrase(selection):
    sizes = {run.get("options", {}).get("batch_size") for run in selection.used
             if run["method"] == "backprop"} - {None}
    return f"; here B = {', '.join(str(s) for s in sorted(sizes))}" if sizes else ""


def _target_sentence(selection, problem, axis):
    unit = UNITS[axis]
    methods = _methods_in(selection, problem)
    target = next(iter(selection.groups[problem].values()))[0].get("target_loss")
    if target is None:
        return ""
    key = f"{axis}_to_target"
    gradient_free = {m: s[key][1] for m, s in methods.items()
                     if m != "backprop" and math.isfinite(s[key][1])}
    best = min(gradient_free, key=gradient_free.get) if gradient_free else None
    where = f"On {problem} (target loss {fmt(target)})"
    bp = methods.get("backprop")
    if bp is not None and math.isfinite(bp[key][1]):
        head = (f"{where}, backprop reached the target after a median {fmt(bp[key][1])} {unit} "
                f"({bp['reached']}/{bp['runs']} runs reached it)")
        if best is None:
            return head + ("; no gradient-free method reached it in at least half of its "
                           "runs." if len(methods) > 1 else ".")
        ratio = gradient_free[best] / bp[key][1]
        fewer = "less" if axis == "seconds" else "fewer"
        if ratio >= 1:
            return (head + f", {_ratio(ratio)} {fewer} than the best gradient-free method, "
                    f"{best} ({fmt(gradient_free[best])} {unit}, "
                    f"{methods[best]['reached']}/{methods[best]['runs']} runs).")
        return (head + f"; the best gradient-free method, {best}, needed {_ratio(1 / ratio)} "
                f"{fewer} ({fmt(gradient_free[best])} {unit}, "
                f"{methods[best]['reached']}/{methods[best]['runs']} runs).")
    if bp is not None:
        head = (f"{where}, backprop did not reach the target in at least half of its runs "
                f"({bp['reached']}/{bp['runs']})")
        if best is None:
            return head + ", nor did any gradient-free method."
        return (head + f"; the fastest gradient-free method, {best}, did after a median "
                f"{fmt(gradient_free[best])} {unit} ({methods[best]['reached']}/"
                f"{methods[best]['runs']} runs).")
    if best is None:
        return f"{where}, no method reached the target in at least half of its runs."
    return (f"{where}, the fastest method to the target was {best}, after a median "
            f"{fmt(gradient_free[best])} {unit} ({methods[best]['reached']}/"
            f"{methods[best]['runs']} runs).")


def _lowest_loss_sentence(selection, problems):
    parts = []
    for problem in problems:
        methods = _methods_in(selection, problem)
        finals = {m: s["loss"][1] for m, s in methods.items()}
        best, value = _ties(finals, min)
        text = f"{problem}: {best} ({fmt(value)})"
        if "backprop" in finals and finals["backprop"] != value:
            text += f", backprop {fmt(finals['backprop'])}"
        parts.append(text)
    return "Lowest median final training loss — " + "; ".join(parts) + "."


def _below_floor(selection):
    problems = selection.base or selection.widened
    low = []
    for problem in problems:
        for runs in selection.groups[problem].values():
            if any(value is not None and value < plots.LOSS_FLOOR
                   for run in runs for value in run["trace"]["train_loss"]):
                low.append(problem)
                break
    return ", ".join(low)


def _run_time_sentence(selection, problems):
    parts = []
    for problem in problems:
        totals = {m: s["seconds_total"][1] for m, s in _methods_in(selection, problem).items()}
        fastest = min(totals, key=totals.get)
        slowest = max(totals, key=totals.get)
        text = (f"{problem} {fmt(totals[fastest])} s ({fastest}) to "
                f"{fmt(totals[slowest])} s ({slowest})")
        if "backprop" in totals and "backprop" not in (fastest, slowest):
            text += f", backprop {fmt(totals['backprop'])} s"
        parts.append(text)
    return "A whole run's budget took a median of " + "; ".join(parts) + "."


def _test_score_caption(selection):
    problems = selection.base or selection.widened
    parts = []
    for problem in problems:
        methods = _methods_in(selection, problem)
        name = plots.score_name(problem)
        medians = {m: s["score"][1] for m, s in methods.items()}
        best, top = _ties(medians, max)
        worst, bottom = _ties(medians, min)
        first = max(medians, key=medians.get)
        low, high = methods[first]["score"][0], methods[first]["score"][2]
        text = (f"on {problem} the highest median final test {name} was {fmt(top)} ({best}"
                + (f"; IQR {fmt(low)}–{fmt(high)})" if best == first else ")"))
        if "backprop" in medians and medians["backprop"] != top:
            text += f", backprop's {fmt(medians['backprop'])}"
        if bottom != top:
            text += f", the lowest {fmt(bottom)} ({worst})"
        parts.append(text)
    clipped = [p for p in problems if plots.score_name(p) == "R²" and any(
        value is not None and value < plots.SCORE_FLOOR
        for runs in selection.groups[p].values() for run in runs
        for value in run["trace"]["test_score"])]
    text = ("Test score (accuracy; R² for the regression) of the parameters a method "
            "holds (for gradient-free methods, the best candidate so far) against "
            "forward-pass equivalents, median and IQR over seeds. Test data are held out "
            "from training, except for the truth tables (xor, parity) and the two spirals, "
            "which are scored on their training points as in their historical benchmarks. "
            "At the "
            "end of the budget, " + "; ".join(parts) + ".")
    if clipped:
        text += (f" The R² axis is cut at {fmt(plots.SCORE_FLOOR)} (on {', '.join(clipped)}); "
                 "lower values are drawn there.")
    return text


def _scaling_caption(selection):
    points = plots.scaling_points(selection.used)
    text = ("Forward-pass equivalents needed to reach the target loss against the number "
            "of parameters, as every hidden layer is widened (top axis: hidden units per "
            "layer); median over seeds with IQR bars, a run that never reached the target "
            "counting as infinite. A filled marker is a finite median; an open marker at "
            "the budget (dashed line) means that half or more of the runs did not reach "
            "the target, and an IQR bar that ends at the budget includes such runs. The "
            "legend counts the runs that reached the target over all widths. Markers are "
            "offset slightly sideways so that they do not hide one another.")
    for base, per_method in points.items():
        growth, never = [], []
        for method, rows in per_method.items():
            finite = [(row[1], row[4]) for row in rows if math.isfinite(row[4])]
            if not finite:
                never.append(method)
                continue
            if len(finite) >= 2:
                x, y = np.log([f[0] for f in finite]), np.log([f[1] for f in finite])
                slope = np.polyfit(x, y, 1)[0]
                growth.append((slope, method, finite))
        sentences = []
        if growth:
            described = []
            for slope, method, finite in sorted(growth):
                described.append(
                    f"{method} from {fmt(finite[0][1])} FPE at {finite[0][0]} parameters to "
                    f"{fmt(finite[-1][1])} at {finite[-1][0]} (log-log slope {slope:.2f})")
            sentences.append(f"On {base}, the median FPE to the target went: "
                             + "; ".join(described) + ".")
        single = [m for m, rows in per_method.items()
                  if sum(math.isfinite(row[4]) for row in rows) == 1]
        if single:
            sentences.append(f"{', '.join(single)} reached it at one width only.")
        if never:
            sentences.append(f"Not reached by most runs at any width: {', '.join(never)}.")
        text += " " + " ".join(sentences)
    return text


def _scaling_tables(selection):
    points = plots.scaling_points(selection.used)
    lines = ["## Scaling runs", "",
             "FPE to reach the target loss, median over seeds (runs that reached it / runs); "
             "— where half or more did not reach it.", ""]
    for base, per_method in points.items():
        columns = sorted({(row[0], row[1]) for rows in per_method.values() for row in rows})
        lines.append(f"**{base}**, hidden layers widened:")
        lines.append("")
        lines.append("| method | " + " | ".join(f"width {w} ({n} params)" for w, n in columns)
                     + " |")
        lines.append("|---|" + "---:|" * len(columns))
        for method, rows in per_method.items():
            cells = {row[0]: f"{_finite_or_dash(row[4])} ({row[6]}/{row[7]})" for row in rows}
            lines.append(f"| {method} | " + " | ".join(cells.get(w, "not run")
                                                       for w, _ in columns) + " |")
        lines.append("")
    return lines


# ------------------------------------------------------- left out, reproduce
def _left_out(selection):
    lines = []
    # the scale guard ran these as another method (full CMA-ES as sep-CMA-ES)
    switched = [r for r in selection.used if r.get("runs_as", r["method"]) != r["method"]]
    if selection.skipped or selection.diverged or switched or selection.ignored or \
            selection.unusable:
        lines += ["## Runs left out, cut short or switched", ""]
    for title, records in (("Skipped", selection.skipped), ("Diverged", selection.diverged),
                           ("Switched", switched)):
        groups = {}
        for record in records:
            key = (record["problem"], record["method"], record.get("message") or "no message")
            groups.setdefault(key, []).append(record.get("seed"))
        for (problem, method, message), seeds in sorted(
                groups.items(), key=lambda item: (plots.problem_sort_key(item[0][0]),
                                                  plots.method_sort_key(item[0][1]))):
            seeds = ", ".join(str(s) for s in sorted(seeds, key=str))
            lines.append(f"- {title}: {method} on {problem} (seeds {seeds}): {message}")
    for note in selection.ignored:
        lines.append(f"- Not used: {note}")
    if selection.unusable:
        lines.append(f"- Not used: {selection.unusable} records without a trace or with an "
                     "unknown status")
    return lines + [""] if lines else []


def reproduce_commands(selection, results_path, out_dir):
    """(shell commands that regenerate the sweep and this report, notes on them)."""
    from comparisons.__main__ import FULL, QUICK
    from comparisons.problems import get_problem
    from comparisons.runs import METHODS
    records = selection.used + selection.skipped
    if not records:
        return ["python -m comparisons quick"], [
            "`python -m comparisons quick` runs a small sweep and writes its report; "
            "`python -m comparisons run` then `python -m comparisons report` the full one."]
    methods = sorted({r["method"] for r in records}, key=plots.method_sort_key)
    seeds = sorted({r.get("seed") for r in records}, key=str)
    devices = sorted({r.get("device", "cpu") for r in records})
    base = sorted({r["problem"] for r in records if not plots.widened_name(r["problem"])},
                  key=plots.problem_sort_key)
    widened = sorted({r["problem"] for r in records if plots.widened_name(r["problem"])},
                     key=plots.problem_sort_key)
    scales = {}
    for record in records:
        try:
            scale = record["budget"] / get_problem(record["problem"]).budget
        except Exception:
            scale = None
        scales.setdefault(float(f"{scale:.4g}") if scale else None, set()).add(record["problem"])
    seed_count = len(seeds) if seeds == list(range(len(seeds))) else None
    method_text = "all" if set(methods) == set(METHODS) else ",".join(methods)
    quick_widened = {f"{QUICK['scaling'][0]}-w{w}" for w in QUICK["scaling"][1]}
    full_widened = {f"{FULL['scaling'][0]}-w{w}" for w in FULL["scaling"][1]}
    if (base == QUICK["problems"] and set(widened) == quick_widened and seed_count == 3
            and method_text == "all" and list(scales) == [QUICK["budget_scale"]]
            and devices == ["cpu"]):
        command = f"python -m comparisons quick --results {shlex.quote(str(results_path))} " \
                  f"--out {shlex.quote(str(out_dir))}"
        return [command], ["`quick` runs the sweep, skipping runs already stored, then writes "
                           "this report."]
    commands = []
    for scale, problems in sorted(scales.items(), key=lambda item: str(item[0])):
        problems = sorted(problems, key=plots.problem_sort_key)
        names = [p for p in problems if not plots.widened_name(p)]
        widened_here = {p for p in problems if plots.widened_name(p)}
        scaling = ""
        if widened_here != full_widened:
            names += sorted(widened_here, key=plots.problem_sort_key)
            scaling = " --no-scaling"
        parts = ["python -m comparisons run", f"--problems {','.join(names)}",
                 f"--methods {method_text}"]
        if seed_count:
            parts.append(f"--seeds {seed_count}")
        if scale:
            parts.append(f"--budget-scale {scale:g}")
        if devices != ["cpu"]:
            parts.append(f"--device {devices[0]}")
        parts.append(f"--results {shlex.quote(str(results_path))}")
        commands.append(" ".join(parts) + scaling)
    commands.append(f"python -m comparisons report --results {shlex.quote(str(results_path))} "
                    f"--out {shlex.quote(str(out_dir))}")
    notes = []
    if not seed_count:
        notes.append(f"The seeds used were {', '.join(map(str, seeds))}, not 0..N-1: the "
                     "command's --seeds N runs 0..N-1.")
    if len(devices) > 1:
        notes.append(f"Runs came from several devices ({', '.join(devices)}).")
    if None in scales:
        notes.append("Some problems are not registered, so their budget scale is unknown.")
    notes.append("`python -m comparisons quick` runs the quick preset and writes its report "
                 "in one step.")
    return commands, notes
