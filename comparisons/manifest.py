"""The manifest every report carries: what produced it, on what, and how to do it again.

``collect`` gathers the package versions, the machine (CPU model, cores,
GPU if one is visible), the commit of the checkout (and whether it had
uncommitted changes), and what the report was built from (seeds, budgets,
studies); ``write`` stores it as JSON next to the report and ``section``
renders it as the report's last section.
"""
import importlib.metadata
import json
import os
import platform
import subprocess

#: the packages whose versions decide the numbers in a report
PACKAGES = ("fastnet", "numba", "llvmlite", "numpy", "scipy", "matplotlib", "joblib",
            "threadpoolctl", "mnist1d", "numba-cuda")
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model():
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model():
    """The first CUDA GPU's name, or None; never initialises CUDA where there is none."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    try:
        from numba import cuda
        if not cuda.is_available():
            return None
        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:       # no driver, no toolkit: the report simply has no GPU
        return None


def commit():
    """(commit hash, whether the checkout had uncommitted changes), or (None, None)."""
    def git(*arguments):
        return subprocess.run(["git", "-C", REPOSITORY, *arguments], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head, dirty


def collect(records, studies, commands):
    """The manifest of a report built from result ``records`` and stored ``studies``."""
    head, dirty = commit()
    budgets = {}
    for record in records:
        budgets.setdefault(record["problem"], set()).add(record["budget"])
    return {
        "commands": list(commands),
        "commit": head, "uncommitted_changes": dirty,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_model(),
        "packages": package_versions(),
        "sweep": {"runs": len(records),
                  "seeds": sorted({r.get("seed") for r in records}, key=str),
                  "budgets_fpe": {p: sorted(b) for p, b in sorted(budgets.items())},
                  "devices": sorted({r.get("device", "cpu") for r in records})},
        "studies": {s["study"]: {"seed": s["seed"], "quick": s["quick"],
                                 "seconds": round(s["seconds"], 1)} for s in studies},
    }


def write(manifest, out_dir):
    path = os.path.join(out_dir, "manifest.json")
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(manifest, file, indent=1, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)
    return path


def section(manifest):
    """The report's manifest section, in markdown."""
    packages = ", ".join(f"{name} {version}" for name, version in manifest["packages"].items()
                         if version)
    if manifest["commit"]:
        state = " (with uncommitted changes)" if manifest["uncommitted_changes"] else ""
        source = f"commit `{manifest['commit'][:12]}`{state}"
    else:
        source = "not a git checkout"
    sweep = manifest["sweep"]
    budgets = "; ".join(f"{problem} {', '.join(f'{b:,}' for b in values)}"
                        for problem, values in sweep["budgets_fpe"].items())
    lines = ["## Manifest", "",
             f"- Built from {source}, Python {manifest['python']} on {manifest['platform']}.",
             f"- Machine: {manifest['cpu']}, {manifest['cores']} cores; GPU: "
             f"{manifest['gpu'] or 'none visible'}.",
             f"- Packages: {packages}.",
             f"- Sweep: {sweep['runs']} runs, seeds {', '.join(map(str, sweep['seeds'])) or '-'}"
             f", devices {', '.join(sweep['devices']) or '-'}; budgets in forward-pass "
             f"equivalents: {budgets or '-'}."]
    if manifest["studies"]:
        lines.append("- Studies: " + "; ".join(
            f"{name} (seed {s['seed']}{', quick' if s['quick'] else ''}, {s['seconds']:g} s)"
            for name, s in manifest["studies"].items()) + ".")
    lines += ["- Regenerate with:", "", "```sh", *manifest["commands"], "```", ""]
    lines += [note for note in manifest.get("notes", [])]
    lines += ["", "The same facts are in [manifest.json](manifest.json)."]
    return lines + [""]

