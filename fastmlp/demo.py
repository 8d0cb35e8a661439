"""`python -m fastmlp.demo`: train on scikit-learn's bundled digits and report.

Prints each epoch's loss, test accuracy and time, then the samples/s of one
training epoch for fastmlp and its NumPy twin measured side by side.
"""

import argparse
import time

import numpy as np

import fastmlp
import fastmlp.reference


def load_digits_split(seed=0):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("the demo needs scikit-learn for its bundled digits: pip install 'fastmlp[sklearn]'")
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def epoch_samples_per_second(model, X, y, repeats=5, **fit_kwargs):
    model.fit(X, y, epochs=1, **fit_kwargs)  # warm-up: compiles, allocates workspaces
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(X, y, epochs=1, **fit_kwargs)
        best = min(best, time.perf_counter() - start)
    return len(X) / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_digits_split(args.seed)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels, 10 classes")
    model = fastmlp.MLP([64, args.hidden, 10], "relu", "softmax", random_state=args.seed)
    print(model)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.partial_fit(X_train, y_train, batch_size=args.batch_size, lr=args.lr, optimizer="adam",
                          alpha=1e-4)
        seconds = time.perf_counter() - t0
        accuracy = (model.predict(X_test) == y_test).mean()
        print(f"epoch {epoch:3d}  loss {model.loss_curve_[-1]:.5f}  test accuracy {accuracy:.4f}  "
              f"{seconds * 1e3:7.1f} ms")
    total = time.perf_counter() - start
    accuracy = (model.predict(X_test) == y_test).mean()
    print(f"\ntest accuracy {accuracy:.4f} after {args.epochs} epochs in {total:.2f} s "
          "(the first epoch includes compiling or loading the kernels)")

    print("\none epoch of SGD, 64-32-10, batch 32, float64, best of 5:")
    rates = {}
    for name, cls in (("fastmlp", fastmlp.MLP), ("fastmlp.reference", fastmlp.reference.MLP)):
        rates[name] = epoch_samples_per_second(cls([64, 32, 10], random_state=0), X_train, y_train,
                                               batch_size=32, lr=0.01)
        print(f"  {name:18s} {rates[name]:12,.0f} samples/s")
    print(f"  speed-up {rates['fastmlp'] / rates['fastmlp.reference']:.1f}x")
    return accuracy


if __name__ == "__main__":
    main()
