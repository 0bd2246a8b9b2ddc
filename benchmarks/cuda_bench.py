"""Speed of fastnet's CUDA backend on an NVIDIA GPU, against PyTorch on the same GPU.

    python benchmarks/cuda_bench.py              # needs a GPU and numba-cuda
    python benchmarks/cuda_bench.py --dry-run    # tiny sizes; runs in the simulator too
                                                 # (NUMBA_ENABLE_CUDASIM=1)

Training: one SGD step (softmax cross-entropy; (a) is tanh / MSE) per shape:
time per step, samples/s and GFLOP/s, counting a step as 3 forward passes
(forward + backward) of 2 x multiply-adds per sample. Population: the loss
of P candidate vectors of a 64-32-10 network on the 1797 digits, in one
call: evaluations/s and GFLOP/s (one forward pass per sample and member).
Each rate is also given as a fraction of the GPU's FP32 peak (no tensor
cores: SMs x FP32 lanes per SM x 2 x clock). PyTorch runs the same work
when it is importable and sees the GPU. Writes reports/cuda_speed.json and
reports/cuda_speed.md.
"""
import argparse
import json
import pathlib
import time

import numpy as np

import fastnet

TRAINING = [  # (label, sizes, batch, hidden activation, loss)
    ("a", [2, 8, 1], 4, "tanh", "mse"),
    ("b", [64, 32, 10], 32, "relu", "cross_entropy"),
    ("c", [64, 128, 128, 10], 64, "relu", "cross_entropy"),
    ("d", [784, 256, 128, 10], 128, "relu", "cross_entropy"),
    ("e", [784, 1024, 1024, 10], 256, "relu", "cross_entropy"),
]
POPULATION_SIZES = [64, 32, 10]
POPULATIONS = [256, 4096]
DRY_TRAINING = [("a", [2, 8, 1], 4, "tanh", "mse"), ("b", [6, 5, 3], 4, "relu", "cross_entropy")]
DRY_POPULATIONS = [2, 3]
#: FP32 lanes per SM by compute capability (major, minor); other majors: 128
FP32_LANES = {(6, 0): 64, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64}


def fp32_peak_gflops(device):
    """SMs x lanes x 2 x clock, or None where the device does not say (the simulator's)."""
    try:
        lanes = FP32_LANES.get(tuple(device.compute_capability), 128)
        return device.MULTIPROCESSOR_COUNT * lanes * 2 * device.CLOCK_RATE * 1e3 / 1e9
    except AttributeError:
        return None


def device_name(device):
    name = getattr(device, "name", "the CUDA simulator")
    return name.decode() if isinstance(name, bytes) else str(name)


def synthetic(n, sizes, loss, rng):
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    if loss == "cross_entropy":
        return X, rng.integers(0, sizes[-1], size=n)
    return X, rng.normal(size=(n, sizes[-1])).astype(np.float32)


def timed(function, repeats):
    function()  # compiles, allocates
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def fastnet_step_seconds(sizes, batch, activation, loss, steps, repeats, rng):
    """Seconds per step, from whole epochs of ``steps`` batches run by the fit runner."""
    net = fastnet.Network(sizes, activation=activation, loss=loss, backend="cuda")
    X, y = synthetic(batch * steps, sizes, loss, rng)
    X, Y = net._data(X, y)
    runner = net.engine.trainer(net.params, X, Y, batch, fastnet.SGD(lr=0.01), [], 0)
    order = np.arange(len(X))
    return timed(lambda: runner.run_epoch(order, 0.01), repeats) / steps, net


def torch_model(torch, sizes, activation):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.Tanh() if activation == "tanh"
                   else torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).cuda()


def torch_step_seconds(torch, sizes, batch, activation, loss, steps, repeats, rng):
    model = torch_model(torch, sizes, activation)
    X, y = synthetic(batch * steps, sizes, loss, rng)
    X = torch.from_numpy(X).cuda()
    y = torch.from_numpy(y).cuda()
    criterion = torch.nn.CrossEntropyLoss() if loss == "cross_entropy" else torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def epoch():
        for start in range(0, len(X), batch):
            optimizer.zero_grad()
            criterion(model(X[start:start + batch]), y[start:start + batch]).backward()
            optimizer.step()
        torch.cuda.synchronize()
    return timed(epoch, repeats) / steps


def torch_population_seconds(torch, thetas, X, labels, sizes, repeats):
    """All members at once with batched products (members chunked to bound memory)."""
    thetas, X = torch.from_numpy(thetas).cuda(), torch.from_numpy(X).cuda()
    labels = torch.from_numpy(labels).cuda()
    members = max(1, int(2 ** 30 // (4 * len(X) * max(sizes[1:]))))

    def evaluate():
        losses = []
        for first in range(0, len(thetas), members):
            A, offset = X.expand(min(members, len(thetas) - first), *X.shape), 0
            theta = thetas[first:first + members]
            for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                W = theta[:, offset:offset + n_in * n_out].reshape(-1, n_in, n_out)
                b = theta[:, offset + n_in * n_out:offset + (n_in + 1) * n_out]
                A = torch.baddbmm(b[:, None, :], A, W)
                A = A if l == len(sizes) - 2 else torch.relu(A)
                offset += (n_in + 1) * n_out
            losses.append(torch.nn.functional.cross_entropy(
                A.transpose(1, 2), labels.expand(A.shape[0], -1), reduction="none").mean(1))
        torch.cuda.synchronize()
        return torch.cat(losses)
    return timed(evaluate, repeats)


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def bench_training(shapes, steps, repeats, peak, torch, rng):
    rows = []
    for label, sizes, batch, activation, loss in shapes:
        seconds, net = fastnet_step_seconds(sizes, batch, activation, loss, steps, repeats, rng)
        flops = 3 * net.flops_per_sample() * batch
        row = {"shape": label, "sizes": sizes, "batch": batch, "step_ms": seconds * 1e3,
               "samples_per_s": batch / seconds, "gflops": flops / seconds / 1e9}
        if peak:
            row["peak_fraction"] = row["gflops"] / peak
        if torch is not None:
            torch_seconds = torch_step_seconds(torch, sizes, batch, activation, loss, steps,
                                               repeats, rng)
            row["torch_step_ms"] = torch_seconds * 1e3
            row["speedup_vs_torch"] = torch_seconds / seconds
        rows.append(row)
    return rows


def bench_population(members_list, n_rows, repeats, peak, torch, rng):
    X_train, y_train, X_test, y_test = fastnet.datasets.load("digits")
    X = np.concatenate([X_train, X_test]).astype(np.float32)[:n_rows]
    labels = np.concatenate([y_train, y_test])[:n_rows]
    net = fastnet.Network(POPULATION_SIZES, activation="relu", output="softmax", backend="cuda")
    X, Y = net._data(X, labels)
    cuda = net.engine.k.cuda
    d_X, d_Y = cuda.to_device(X), cuda.to_device(Y)
    rows = []
    for P in members_list:
        thetas = (rng.normal(size=(P, net.n_params)) * 0.1).astype(np.float32)
        d_thetas = cuda.to_device(thetas)
        seconds = timed(lambda: net.engine.population_loss(d_thetas, d_X, d_Y), repeats)
        flops = P * len(X) * net.flops_per_sample()
        row = {"shape": f"digits {'-'.join(map(str, POPULATION_SIZES))}", "P": P,
               "rows": len(X), "call_ms": seconds * 1e3, "evaluations_per_s": P / seconds,
               "gflops": flops / seconds / 1e9}
        if peak:
            row["peak_fraction"] = row["gflops"] / peak
        if torch is not None:
            torch_seconds = torch_population_seconds(torch, thetas, X, labels, POPULATION_SIZES,
                                                     repeats)
            row["torch_call_ms"] = torch_seconds * 1e3
            row["speedup_vs_torch"] = torch_seconds / seconds
        rows.append(row)
    return rows


def markdown(report):
    def cell(row, key, form):
        return form.format(row[key]) if key in row else "n/a"
    lines = [f"# fastnet CUDA speed on {report['device']}", "",
             f"FP32 peak: {cell(report, 'fp32_peak_gflops', '{:.0f}')} GFLOP/s. "
             f"PyTorch: {report['torch']}.", "", "## Training (one SGD step)", "",
             "| shape | sizes | batch | step (ms) | samples/s | GFLOP/s | of peak | "
             "torch step (ms) | vs torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["training"]:
        lines.append(f"| {row['shape']} | {'-'.join(map(str, row['sizes']))} | {row['batch']} | "
                     f"{row['step_ms']:.3f} | {row['samples_per_s']:.0f} | {row['gflops']:.2f} | "
                     f"{cell(row, 'peak_fraction', '{:.2%}')} | "
                     f"{cell(row, 'torch_step_ms', '{:.3f}')} | "
                     f"{cell(row, 'speedup_vs_torch', '{:.2f}x')} |")
    lines += ["", "## Population evaluation (one call)", "",
              "| shape | P | rows | call (ms) | evaluations/s | GFLOP/s | of peak | "
              "torch call (ms) | vs torch |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in report["population"]:
        lines.append(f"| {row['shape']} | {row['P']} | {row['rows']} | {row['call_ms']:.3f} | "
                     f"{row['evaluations_per_s']:.0f} | {row['gflops']:.2f} | "
                     f"{cell(row, 'peak_fraction', '{:.2%}')} | "
                     f"{cell(row, 'torch_call_ms', '{:.3f}')} | "
                     f"{cell(row, 'speedup_vs_torch', '{:.2f}x')} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes and few steps, to check the script (simulator-friendly)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per timed epoch")
    parser.add_argument("--out", default="reports", help="folder for cuda_speed.json / .md")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    probe = fastnet.Network([1, 1], backend="cuda")  # raises with instructions when unavailable
    device = probe.engine.k.cuda.get_current_device()
    peak = fp32_peak_gflops(device)
    torch = None if args.dry_run else import_torch()
    shapes, populations, steps, repeats, n_rows = TRAINING, POPULATIONS, args.steps, 3, None
    if args.dry_run:
        shapes, populations, steps, repeats, n_rows = DRY_TRAINING, DRY_POPULATIONS, 2, 1, 5
    report = {"device": device_name(device), "fp32_peak_gflops": peak,
              "torch": torch.__version__ if torch else "not run (not importable or no GPU)",
              "dry_run": args.dry_run,
              "training": bench_training(shapes, steps, repeats, peak, torch, rng),
              "population": bench_population(populations, n_rows, repeats, peak, torch, rng)}
    if peak is None:
        del report["fp32_peak_gflops"]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / "cuda_speed.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
