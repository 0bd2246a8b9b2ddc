"""Where a training step's time goes: its BLAS products, on one and two BLAS threads.

    python benchmarks/step_gemms.py [--sizes 64,128,128,10] [--batch 64]

A plain-SGD ``StepTrainer.step`` on an MLP of ``sizes`` makes, for each layer
l, the forward product A_(l-1) W_l, the fused update W_l -= lr A_(l-1)^T D_l
and, above the first layer, the delta D_(l-1) = D_l W_l^T. Each product is
timed alone, through the same ``fastnet.backends.blas`` calls the kernels
make, and then the whole step (ReLU, softmax cross-entropy). Each BLAS thread
count runs in its own process, since OpenBLAS reads OPENBLAS_NUM_THREADS when
it loads. The step minus its products timed alone is the rest: activations,
loss, deltas, biases and the Python call, when the products take as long
inside the step as alone (on one thread; on two, a product waits for the
other thread's share, and inside a step that thread may be slower to answer).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BLOCKS = 7


def median_us(call, calls_per_block):
    """Median over BLOCKS blocks of the time per call, after one warm-up block."""
    call(calls_per_block)
    times = []
    for _ in range(BLOCKS):
        start = time.perf_counter()
        call(calls_per_block)
        times.append((time.perf_counter() - start) / calls_per_block * 1e6)
    return float(np.median(times))


def products(sizes, batch):
    """(name, kind, (rows, inner, columns)) of one step's products, in step order."""
    layers = len(sizes) - 1
    forward = [(f"forward A{l} W{l + 1}", "nn", (batch, sizes[l], sizes[l + 1]))
               for l in range(layers)]
    backward = []
    for l in range(layers - 1, -1, -1):
        if l > 0:
            backward.append((f"delta D{l + 1} W{l + 1}^T", "nt", (batch, sizes[l + 1], sizes[l])))
        backward.append((f"update W{l + 1} += A{l}^T D{l + 1}", "tn", (sizes[l], batch,
                                                                       sizes[l + 1])))
    return forward + backward


def measure(sizes, batch):
    """This process's timings: {product name: us, 'step': us}."""
    from numba import njit

    import fastnet
    from fastnet.backends.blas import gemm_nn, gemm_nt, gemm_tn_add

    @njit
    def repeat_nn(A, B, out, n):
        for _ in range(n):
            gemm_nn(A, B, out)

    @njit
    def repeat_nt(A, B, out, n):
        for _ in range(n):
            gemm_nt(A, B, out)

    @njit
    def repeat_tn(A, B, out, n):
        for _ in range(n):
            gemm_tn_add(A, B, out, -1e-9, 1.0)

    rng = np.random.default_rng(0)

    def matrix(rows, columns):
        return (0.1 * rng.standard_normal((rows, columns))).astype(np.float32)

    timings = {}
    for name, kind, (m, k, n) in products(sizes, batch):
        if kind == "nn":
            args, loop = (matrix(m, k), matrix(k, n), matrix(m, n)), repeat_nn
        elif kind == "nt":
            args, loop = (matrix(m, k), matrix(n, k), matrix(m, n)), repeat_nt
        else:
            args, loop = (matrix(m, k), matrix(m, n), matrix(k, n)), repeat_tn
        timings[name] = median_us(lambda calls: loop(*args, calls), 500)
    net = fastnet.Network(sizes, activation="relu", output="softmax", seed=0)
    X = matrix(batch, sizes[0])
    Y = net.targets(rng.integers(0, sizes[-1], batch))
    trainer = fastnet.StepTrainer(net, fastnet.SGD(lr=0.01))

    def steps(calls):
        for _ in range(calls):
            trainer.step(X, Y)

    timings["step"] = median_us(steps, 500)
    return timings


def table(sizes, batch, by_threads):
    threads = sorted(by_threads)
    header = ["product", "m x k x n"] + [f"us, {t} thread{'s' * (t > 1)}" for t in threads] + [
        f"GFLOP/s, {t}" for t in threads]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals = {t: 0.0 for t in threads}
    for name, _, (m, k, n) in products(sizes, batch):
        us = [by_threads[t][name] for t in threads]
        for t, value in zip(threads, us):
            totals[t] += value
        lines.append(f"| {name} | {m} x {k} x {n} | " + " | ".join(f"{v:.2f}" for v in us)
                     + " | " + " | ".join(f"{2 * m * k * n / v / 1e3:.1f}" for v in us) + " |")
    blank = " |" * len(threads)
    lines.append("| all products | |" + "".join(f" {totals[t]:.1f} |" for t in threads) + blank)
    lines.append("| whole step | |" + "".join(f" {by_threads[t]['step']:.1f} |"
                                            for t in threads) + blank)
    lines.append("| step minus products | |" + "".join(
        f" {by_threads[t]['step'] - totals[t]:.1f} |" for t in threads) + blank)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,128,10",
                        help="layer sizes, comma-separated (default 64,128,128,10)")
    parser.add_argument("--batch", type=int, default=64, help="rows per step (default 64)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    if options.child:
        print(json.dumps(measure(sizes, options.batch)))
        return
    by_threads = {}
    for threads in (1, 2):
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, __file__, "--child", "--sizes", options.sizes,
                               "--batch", str(options.batch)], env=environment,
                              capture_output=True, text=True, check=True)
        by_threads[threads] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"sizes {options.sizes}, batch {options.batch}, float32; medians of {BLOCKS} "
          "blocks\n")
    print(table(sizes, options.batch, by_threads))


if __name__ == "__main__":
    main()
