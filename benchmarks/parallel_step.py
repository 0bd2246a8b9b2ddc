"""Which training steps gain from sharing their rows among threads.

    python benchmarks/parallel_step.py [--blocks 7] [--fit]

For each shape and batch below, ``StepTrainer.step`` (plain SGD, ReLU,
softmax cross-entropy, float32) is timed both ways: serial (``cpu.fit_step``:
BLAS splits each product among its own threads) and data-parallel
(``cpu.fit_step_parallel``: each of Numba's threads runs a share of the rows
on one BLAS thread). With ``--fit``, a ``net.fit`` epoch of 32 batches is
timed instead, per batch (``cpu.fit_epoch`` against ``fit_epoch_parallel``).
Each way runs in its own processes, alternating, since the thread pools of
one way keep spinning a while after their last work and slow the other down
(up to 3x, measured in one process). The table gives the median over
processes of each process' median time per step, their ratio, the forward
pass' multiply-adds per step and the parameters: the quantities
``engine.PARALLEL_STEP_MIN_WORK`` and ``PARALLEL_STEP_MAX_PARAMS`` bound.
"""
import argparse
import json
import math
import subprocess
import sys
import time

import numpy as np

CASES = [((64, 32, 10), 32), ((64, 32, 10), 256), ((64, 128, 128, 10), 16),
         ((64, 128, 128, 10), 32), ((64, 128, 128, 10), 64), ((64, 128, 128, 10), 128),
         ((64, 128, 128, 10), 512), ((784, 32, 10), 64), ((64, 256, 256, 10), 64),
         ((784, 256, 128, 10), 32), ((784, 256, 128, 10), 128), ((784, 1024, 1024, 10), 64)]
#: seconds per block of steps
BLOCK_S = 0.2
#: (``engine.PARALLEL_STEP_MIN_WORK``, ``PARALLEL_STEP_MAX_PARAMS``) that make
#: every step serial, or every step parallel
BOUNDS = {"serial": (math.inf, 0), "parallel": (0, math.inf)}


#: batches per epoch with --fit
FIT_BATCHES = 32


def measure(sizes, batch, mode, blocks, fit):
    """Median time per step over ``blocks`` blocks, in us, of the ``mode`` step
    (with ``fit``: of a step inside a ``net.fit`` epoch)."""
    import fastnet
    from fastnet import engine

    engine.PARALLEL_STEP_MIN_WORK, engine.PARALLEL_STEP_MAX_PARAMS = BOUNDS[mode]
    rng = np.random.default_rng(0)
    net = fastnet.Network(sizes, activation="relu", output="softmax", seed=0)
    rows = batch * (FIT_BATCHES if fit else 1)
    X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], rows)
    Y = net.targets(y)
    trainer = fastnet.StepTrainer(net, fastnet.SGD(lr=0.01), batch_size=batch)
    steps_per_call = FIT_BATCHES if fit else 1

    def block(calls):
        """us per step of ``calls`` steps, or of one fit of ``calls`` epochs."""
        start = time.perf_counter()
        if fit:
            net.fit(X, y, optimizer=fastnet.SGD(lr=0.01), epochs=calls, batch_size=batch)
        else:
            for _ in range(calls):
                trainer.step(X, Y)
        return (time.perf_counter() - start) / (calls * steps_per_call) * 1e6

    calls = max(10, int(BLOCK_S * 1e6 / (block(10) * steps_per_call)))
    return float(np.median([block(calls) for _ in range(blocks)]))


def in_child(sizes, batch, mode, blocks, fit):
    done = subprocess.run([sys.executable, __file__, "--blocks", str(blocks), "--child",
                           ",".join(map(str, sizes)), str(batch), mode] + ["--fit"] * fit,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5, help="blocks of steps per process")
    parser.add_argument("--rounds", type=int, default=3,
                        help="processes per way and case, alternating (default 3)")
    parser.add_argument("--fit", action="store_true",
                        help=f"time net.fit epochs of {FIT_BATCHES} batches, per batch")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        sizes = [int(s) for s in options.child[0].split(",")]
        print(json.dumps(measure(sizes, int(options.child[1]), options.child[2],
                                 options.blocks, options.fit)))
        return
    import numba
    what = f"net.fit epochs of {FIT_BATCHES} batches" if options.fit else "StepTrainer steps"
    print(f"{what}, float32, plain SGD; {numba.get_num_threads()} Numba threads; medians of "
          f"{options.rounds} processes' medians of {options.blocks} blocks\n")
    print("| sizes | parameters | batch | forward multiply-adds | serial, us | parallel, us | "
          "serial / parallel |")
    print("|---|---|---|---|---|---|---|")
    for sizes, batch in CASES:
        runs = {mode: [] for mode in BOUNDS}
        for _ in range(options.rounds):
            for mode in BOUNDS:
                runs[mode].append(in_child(sizes, batch, mode, options.blocks, options.fit))
        us = {mode: float(np.median(values)) for mode, values in runs.items()}
        per_row = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        print(f"| {'-'.join(map(str, sizes))} | {per_row + sum(sizes[1:]):,} | {batch} | "
              f"{batch * per_row:,} | {us['serial']:.1f} | "
              f"{us['parallel']:.1f} | {us['serial'] / us['parallel']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
