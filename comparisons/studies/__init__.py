"""Studies: the experiments that explain the comparison, one module each.

A study module defines

- ``NAME``: its identifier (the stem of its result file and figures);
- ``TITLE``: the heading of its report section;
- ``run(quick, seed) -> (result, figures)``: runs the experiment and returns a
  JSON-able dict of every number the section quotes, and a dict
  ``{figure_name: matplotlib Figure}`` (figure names start with ``NAME``);
  ``quick=True`` is a small version for tests and smoke runs;
- ``section(result) -> list of markdown lines``: the paragraph(s), every
  number taken from ``result``, and the figures as ``figures/NAME....png``.

``python -m comparisons studies`` runs them and rewrites the report.
``run_study`` saves the figures (PNG + SVG) and the result (with the seconds
it took, the seed and ``quick``) atomically, so a killed ``studies`` command
keeps every finished study and a re-run skips it. ``sections`` rebuilds the
report's text from the stored results without running anything.
"""
import importlib
import json
import os
import shlex
import time

from comparisons import plots

#: study modules, in report order
STUDY_MODULES = ("mnist1d", "two_spirals", "parity", "montana_davis", "gradient_flow",
                 "step_cosine", "landscape", "hybrids", "nondifferentiable", "saliency",
                 "scale_guard")


def study(name):
    """The module of study ``name``; ValueError naming the known ones otherwise."""
    if name not in STUDY_MODULES:
        raise ValueError(f"study must be one of {', '.join(STUDY_MODULES)}, got {name!r}")
    return importlib.import_module(f"comparisons.studies.{name}")


def result_path(out_dir, name):
    return os.path.join(out_dir, "studies", f"{name}.json")


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1, allow_nan=True)
        file.write("\n")
    os.replace(temporary, path)


def run_study(name, out_dir, quick=False, seed=0, force=False):
    """Run study ``name`` into ``out_dir`` unless its result is there; return the result."""
    path = result_path(out_dir, name)
    if os.path.exists(path) and not force:
        return load_result(out_dir, name)
    module = study(name)
    start = time.perf_counter()
    result, figures = module.run(quick=quick, seed=seed)
    seconds = time.perf_counter() - start
    for figure_name, figure in figures.items():
        plots.save(figure, out_dir, figure_name)
    stored = {"study": name, "quick": quick, "seed": seed, "seconds": seconds,
              "figures": sorted(figures), "result": result}
    _write_json(path, stored)
    return stored


def load_result(out_dir, name):
    with open(result_path(out_dir, name), encoding="utf-8") as file:
        return json.load(file)


def stored_results(out_dir):
    """The stored results of the studies run into ``out_dir``, in report order."""
    return [load_result(out_dir, name) for name in STUDY_MODULES
            if os.path.exists(result_path(out_dir, name))]


def sections(stored):
    """Markdown lines of the ``stored`` study results (see ``stored_results``)."""
    lines = []
    for entry in stored:
        module = study(entry["study"])
        lines += [f"## {module.TITLE}", ""] + module.section(entry["result"]) + [""]
    return lines


def command(out_dir, stored):
    """The command that regenerates the ``stored`` study results into ``out_dir``."""
    names = [entry["study"] for entry in stored]
    parts = ["python -m comparisons studies --force"]
    if names != list(STUDY_MODULES):
        parts.append(f"--only {','.join(names)}")
    if all(entry["quick"] for entry in stored):
        parts.append("--quick")
    seeds = {entry["seed"] for entry in stored}
    if seeds != {0}:
        parts.append(f"--seed {min(seeds)}")
    parts.append(f"--out {shlex.quote(str(out_dir))}")
    return " ".join(parts)
