"""Command line: ``python -m comparisons {quick,run,report,studies,list}``."""
import argparse
import math
import os
import sys
import time

from comparisons.problems import PROBLEMS
from comparisons.runs import HYBRID_METHODS, METHODS

# "scaling": (problem, hidden widths) run on top of the problems, for the scaling figure
QUICK = {"problems": ["xor", "parity4", "moons", "sine", "iris", "digits"],
         "methods": list(METHODS), "seeds": 3, "budget_scale": 0.1,
         "scaling": ("xor", (2, 4, 8, 16, 32)),
         "results": "results/quick.jsonl", "out": "reports/quick"}
FULL = {"problems": list(PROBLEMS), "methods": list(METHODS), "seeds": 5, "budget_scale": 1.0,
        "scaling": ("parity4", (4, 8, 16, 32, 64)),
        "results": "reports/results.jsonl", "out": "reports"}


def _names(text, valid, what, also=()):
    """The names in comma-separated ``text`` (each in ``valid`` or ``also``); 'all': ``valid``."""
    if text == "all":
        return list(valid)
    names = [name.strip() for name in text.split(",") if name.strip()]
    valid = list(valid) + list(also)
    for name in names:
        base, _, width = name.partition("-w") if what == "problem" else (name, "", "")
        if width and not (width.isdigit() and int(width) > 0):
            raise SystemExit(f"error: {what} {name!r}: the width after '-w' must be a whole "
                             f"number > 0, got {width!r}")
        if base not in valid:
            import difflib
            close = difflib.get_close_matches(base, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"error: unknown {what} {name!r}; expected one of "
                             f"{', '.join(valid)}{hint}")
    return names


def _positive(kind):
    def parse(text):
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value
    return parse


def _add_sweep_arguments(parser, preset):
    parser.add_argument("--problems", default=",".join(preset["problems"]),
                        help="comma-separated problem names, or 'all'")
    parser.add_argument("--methods", default=",".join(preset["methods"]),
                        help="comma-separated method names (the hybrids "
                             f"{', '.join(HYBRID_METHODS)} too), or 'all' (every method "
                             "but the hybrids)")
    parser.add_argument("--seeds", type=_positive(int), default=preset["seeds"],
                        help="number of seeds (0..N-1)")
    parser.add_argument("--budget-scale", type=_positive(float), default=preset["budget_scale"],
                        help="multiply every problem's budget (forward-pass equivalents)")
    parser.add_argument("--jobs", type=_positive(int), default=os.cpu_count() or 1,
                        help="worker processes (default: one per core)")
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address (tcp://host:port) to run the sweep on")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--results", default=preset["results"], help="results file (JSON lines)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-scaling", dest="scaling", action="store_const", const=None,
                        default=preset["scaling"],
                        help=f"skip the scaling runs ({preset['scaling'][0]} widened to "
                             f"{', '.join(map(str, preset['scaling'][1]))} hidden units)")


def _run(args):
    from comparisons.sweep import sweep, tasks
    methods = _names(args.methods, METHODS, "method", also=HYBRID_METHODS)
    problems = _names(args.problems, list(PROBLEMS), "problem")
    if args.scaling:
        base, widths = args.scaling
        problems += [f"{base}-w{width}" for width in widths]
    task_list = tasks(problems, methods, range(args.seeds), args.budget_scale, args.device)
    try:
        done = sweep(task_list, args.results, jobs=args.jobs, scheduler=args.scheduler,
                     progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: every finished run is saved in {args.results}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"{done} new runs; {len(task_list)} in the sweep; results in {args.results}")
    return 0


def _report(args):
    from comparisons.report import build_report
    path = build_report(args.results, args.out)
    print(f"report written to {path}")
    return 0


def _studies(args):
    from comparisons import studies
    names = _names(args.only, list(studies.STUDY_MODULES), "study")
    for name in names:
        start = time.perf_counter()
        try:
            studies.run_study(name, args.out, quick=args.quick, seed=args.seed, force=args.force)
        except KeyboardInterrupt:
            print(f"interrupted during {name}: every finished study is saved in "
                  f"{os.path.join(args.out, 'studies')}; run the same command without "
                  "--force to go on", file=sys.stderr)
            return 130
        print(f"{name}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return _report(args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m comparisons", description=(
        "Backprop against gradient-free training on the same networks."))
    commands = parser.add_subparsers(dest="command", required=True)
    quick = commands.add_parser("quick", help="a quick sweep (minutes on 2 cores) and its report")
    _add_sweep_arguments(quick, QUICK)
    quick.add_argument("--out", default=QUICK["out"], help="report folder")
    full = commands.add_parser("run", help="run a sweep (default: the full one behind reports/)")
    _add_sweep_arguments(full, FULL)
    report = commands.add_parser("report", help="write REPORT.md and figures from results")
    report.add_argument("--results", default=FULL["results"])
    report.add_argument("--out", default=FULL["out"])
    explain = commands.add_parser("studies", help=(
        "run the explanatory studies (classic benchmarks, gradient flow, landscapes, "
        "hybrids...) and rewrite the report with them"))
    explain.add_argument("--only", default="all", help="comma-separated study names")
    explain.add_argument("--quick", action="store_true", help="small versions (seconds each)")
    explain.add_argument("--force", action="store_true",
                         help="re-run studies whose results are already stored")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--results", default=FULL["results"],
                         help="sweep results the rewritten report also draws on")
    explain.add_argument("--out", default=FULL["out"], help="report folder")
    commands.add_parser("list", help="list problems, methods and studies")
    args = parser.parse_args(argv)
    if args.command == "list":
        for problem in PROBLEMS.values():
            print(f"{problem.name:10s} {problem.description}")
        print("methods:", ", ".join(METHODS))
        print("hybrids:", ", ".join(HYBRID_METHODS))
        from comparisons.studies import STUDY_MODULES
        print("studies:", ", ".join(STUDY_MODULES))
        return 0
    if args.command == "report":
        return _report(args)
    if args.command == "studies":
        return _studies(args)
    status = _run(args)
    if args.command == "quick" and status == 0:
        status = _report(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
