#!/usr/bin/python3
"""PyTorch and NumPy peers of bench_train_step and bench_least_squares (CPU, 2 threads by default).

  /usr/bin/python3 bench/torch_mlp_step.py [--threads 2] [--reps 5]

- one SGD training step (zero_grad, forward, softmax cross-entropy, backward, step) of
  784-1024-1024-10 (ReLU) at batch 256 and of 64-128-128-10 at batch 64: samples/s and GFLOP/s,
  counting the flops as bench_train_step does (4 B in out for the first layer, whose input needs no
  gradient, 6 B in out for the others);
- the two-pass least-squares gradient r = X w + b - y, g = X^T r for X = 10^6 x 64 float32 in
  NumPy (and in PyTorch): GB/s of X (256 MB per gradient, counted once).
Each figure is the median of --reps timed runs of about --seconds each, after a warm-up.
Needs Debian's python3-torch (apt-get install -y python3-torch) and python3-numpy.
"""
import argparse
import os
import sys

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and OMP_NUM_THREADS")
ap.add_argument("--blas-threads", type=int, default=None,
                help="OPENBLAS_NUM_THREADS (default: --threads); Debian's torch and numpy call the pthread "
                     "OpenBLAS, whose pool competes with torch's OpenMP pool")
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--seconds", type=float, default=1.0)
args = ap.parse_args()

# BLAS and OpenMP read their thread counts when loaded: set them before importing numpy / torch.
blas_threads = args.blas_threads if args.blas_threads is not None else args.threads
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["MKL_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)


def timed(fn, seconds, reps):
    """Median seconds per call of fn over `reps` runs of about `seconds` each."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.2 or n < 3:
        fn()
        n += 1
    per_run = max(1, int(seconds / ((time.perf_counter() - t0) / n)))
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(per_run):
            fn()
        runs.append((time.perf_counter() - t0) / per_run)
    return statistics.median(runs), min(runs), max(runs)


def flops(sizes, batch):
    return sum((4.0 if l == 1 else 6.0) * batch * sizes[l - 1] * sizes[l] for l in range(1, len(sizes)))


def mlp_step(sizes, batch):
    torch.manual_seed(1)
    layers = []
    for i in range(1, len(sizes)):
        layers.append(torch.nn.Linear(sizes[i - 1], sizes[i]))
        if i + 1 < len(sizes):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, sizes[0])
    y = torch.arange(batch) % sizes[-1]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    med, lo, hi = timed(step, args.seconds, args.reps)
    name = "-".join(map(str, sizes))
    print(f"torch step {name} batch {batch}: {batch / med:,.0f} samples/s ({1e3 * med:.3f} ms/step, "
          f"min {1e3 * lo:.3f}, max {1e3 * hi:.3f}), {flops(sizes, batch) / med * 1e-9:.1f} GFLOP/s")


def least_squares():
    n, d = 1_000_000, 64
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    w = (0.1 * rng.standard_normal(d)).astype(np.float32)
    b = np.float32(0.25)
    scale = np.float32(2.0 / n)
    xbytes = X.nbytes

    def numpy_grad():
        r = X @ w + b - y
        return scale * (X.T @ r), scale * r.sum(), r @ r

    med, lo, hi = timed(numpy_grad, args.seconds, args.reps)
    print(f"numpy two-pass least-squares gradient 10^6 x 64: {1e3 * med:.2f} ms "
          f"(min {1e3 * lo:.2f}, max {1e3 * hi:.2f}), {xbytes / med * 1e-9:.2f} GB/s of X")

    Xt, yt, wt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w)

    def torch_grad():
        r = torch.addmv(yt, Xt, wt, beta=-1.0).add_(float(b))  # X w - y + b
        return torch.mv(Xt.t(), r).mul_(float(scale)), r.sum(), torch.dot(r, r)

    med, lo, hi = timed(torch_grad, args.seconds, args.reps)
    print(f"torch two-pass least-squares gradient 10^6 x 64: {1e3 * med:.2f} ms "
          f"(min {1e3 * lo:.2f}, max {1e3 * hi:.2f}), {xbytes / med * 1e-9:.2f} GB/s of X")


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, "
          f"threads {torch.get_num_threads()}, OpenBLAS threads {blas_threads}", flush=True)
    mlp_step([784, 1024, 1024, 10], 256)
    mlp_step([64, 128, 128, 10], 64)
    least_squares()
