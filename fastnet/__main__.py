"""python -m fastnet: train a 64-64-10 network on the digits and report it."""
import argparse
import time

import fastnet


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnet", description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    X_train, y_train, X_test, y_test = fastnet.datasets.load("digits", seed=args.seed)
    net = fastnet.Network([64, 64, 10], activation="relu", output="softmax", seed=args.seed)
    start = time.perf_counter()
    net.fit(X_train, y_train, optimizer=fastnet.Adam(lr=1e-3), epochs=args.epochs,
            batch_size=32)
    seconds = time.perf_counter() - start
    print(f"{net}\ndigits: test accuracy {net.score(X_test, y_test):.4f} after "
          f"{args.epochs} epochs in {seconds:.2f} s (first run includes compilation)")


if __name__ == "__main__":
    main()
