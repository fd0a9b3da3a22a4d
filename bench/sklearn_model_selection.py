#!/usr/bin/python3
"""scikit-learn peer of bench_model_selection (run with Debian's /usr/bin/python3).

On the exact split and folds tessera uses:

    ./build/release/bench/bench_model_selection --export /tmp/msel
    /usr/bin/python3 bench/sklearn_model_selection.py /tmp/msel

DIR holds train.csv and test.csv (header row, label last) and folds.csv (header "fold", then the
fold that tests each training row), which become a PredefinedSplit. Every search is a
GridSearchCV over a Pipeline(StandardScaler, model), so that each fold is standardized on its own
training rows, as tessera's search does, with refit=True; it runs with n_jobs=2 and n_jobs=1.
The grids are tessera's (bench/model_selection.hpp), in scikit-learn's terms:

  softmax  LogisticRegression(lbfgs, multinomial, max_iter=5000), C = 1 / (wd n) for tessera's
           weight decays wd {1e-4, 1e-3} over the n training rows of a fold, and penalty=None for
           wd = 0 (lbfgs has no learning rate: 3 points against tessera's 12). Also, as a check of
           the model family, MLPClassifier(hidden_layer_sizes=()) with adam: softmax regression
           trained as tessera trains it, lr {1e-3,3e-3,1e-2,3e-2} x wd, the same 12 points.
  mlp64    MLPClassifier((64,), relu, adam, batch 32, exactly EPOCHS epochs), learning_rate_init
           {1e-3,3e-3,1e-2,3e-2} x alpha = wd * 32 for wd {0, 1e-4, 1e-3} (sklearn adds
           alpha |W|^2 / 2 to the loss summed over a batch, divided by the batch size).
  uneven   MLPClassifier hidden {(), (256,)} x lr {1e-3,1e-2,3e-2} x wd {0, 1e-3}.

Then the plain 5-fold accuracy of LogisticRegression(C=1.0, lbfgs, max_iter=5000) on the same
folds, against tessera's 5-fold softmax regression (weight decay 1 / (C n)).
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, PredefinedSplit, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def load(path):
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    return a[:, :-1], a[:, -1].astype(int)


def mlp(hidden, epochs, batch):
    # n_iter_no_change above max_iter: every fit runs exactly `epochs` epochs, as tessera's does.
    return MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver="adam", batch_size=batch,
                         max_iter=epochs, n_iter_no_change=epochs + 1, shuffle=True, random_state=1)


def grids(epochs, batch, n_fold):
    wd = [0.0, 1e-4, 1e-3]
    lr4 = [1e-3, 3e-3, 1e-2, 3e-2]
    lr_pipe = Pipeline([("scale", StandardScaler()),
                        ("clf", LogisticRegression(solver="lbfgs", max_iter=5000))])
    lr_grid = [{"clf__C": [1.0 / (w * n_fold) for w in wd if w > 0]}, {"clf__penalty": [None]}]
    def mlp_pipe(hidden):
        return Pipeline([("scale", StandardScaler()), ("clf", mlp(hidden, epochs, batch))])
    return [
        ("softmax", "LogisticRegression", lr_pipe, lr_grid),
        ("softmax", "MLPClassifier(())", mlp_pipe(()),
         {"clf__learning_rate_init": lr4, "clf__alpha": [w * batch for w in wd]}),
        ("mlp64", "MLPClassifier((64,))", mlp_pipe((64,)),
         {"clf__learning_rate_init": lr4, "clf__alpha": [w * batch for w in wd]}),
        ("uneven", "MLPClassifier((),(256,))", mlp_pipe(()),
         {"clf__hidden_layer_sizes": [(), (256,)], "clf__learning_rate_init": [1e-3, 1e-2, 3e-2],
          "clf__alpha": [0.0, 1e-3 * batch]}),
    ]


def points(grid):
    n = 0
    for g in grid if isinstance(grid, list) else [grid]:
        k = 1
        for v in g.values():
            k *= len(v)
        n += k
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="folder with train.csv, test.csv and folds.csv (bench_model_selection --export)")
    p.add_argument("--epochs", type=int, default=30, help="epochs of every MLPClassifier fit (tessera's --epochs)")
    p.add_argument("--batch", type=int, default=32, help="rows per step")
    p.add_argument("--grids", default="softmax,mlp64,uneven,cv", help="comma-separated: softmax,mlp64,uneven,cv")
    p.add_argument("--jobs", default="2,1", help="n_jobs values to run, comma-separated")
    p.add_argument("--json", help="write the results as JSON to this file")
    a = p.parse_args()
    wanted = set(a.grids.split(","))
    jobs = [int(j) for j in a.jobs.split(",")]

    xtr, ytr = load(f"{a.dir}/train.csv")
    xte, yte = load(f"{a.dir}/test.csv")
    folds = np.loadtxt(f"{a.dir}/folds.csv", skiprows=1).astype(int)
    if len(folds) != len(ytr):
        sys.exit(f"folds.csv has {len(folds)} rows, train.csv {len(ytr)}")
    cv = PredefinedSplit(folds)
    k = cv.get_n_splits()
    n_fold = len(ytr) * (k - 1) / k
    print(f"sklearn: train {len(ytr)}, test {len(yte)}, {k} predefined folds; batch {a.batch}, {a.epochs} epochs")
    # MLPClassifier warns at every fit that max_iter ended it, which is what the epochs ask for; the
    # environment variable reaches GridSearchCV's worker processes too.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    os.environ["PYTHONWARNINGS"] = "ignore::UserWarning"

    out = {"epochs": a.epochs, "searches": []}
    print(f"\n{'grid':8} {'model':26} {'points':>6} {'n_jobs':>6} {'seconds':>9}  {'best cv':8} {'test acc':8} best params")
    for name, model, pipe, grid in grids(a.epochs, a.batch, n_fold):
        if name not in wanted:
            continue
        for n_jobs in jobs:
            gs = GridSearchCV(pipe, grid, cv=cv, n_jobs=n_jobs, refit=True, scoring="accuracy")
            t0 = time.perf_counter()
            gs.fit(xtr, ytr)
            seconds = time.perf_counter() - t0
            test = gs.score(xte, yte)
            fit_times = gs.cv_results_["mean_fit_time"]
            print(f"{name:8} {model:26} {points(grid):6d} {n_jobs:6d} {seconds:9.3f}  {gs.best_score_:.4f}   "
                  f"{test:.4f}   {gs.best_params_}  (mean fit {statistics.mean(fit_times):.3f} s)")
            out["searches"].append({"grid": name, "model": model, "points": points(grid), "n_jobs": n_jobs,
                                    "seconds": seconds, "best_cv": gs.best_score_, "test_accuracy": test,
                                    "best_params": str(gs.best_params_),
                                    "mean_fit_seconds": statistics.mean(fit_times)})
    if "cv" in wanted:
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(solver="lbfgs", C=1.0, max_iter=5000))])
        t0 = time.perf_counter()
        s = cross_val_score(pipe, xtr, ytr, cv=cv, scoring="accuracy", n_jobs=1)
        seconds = time.perf_counter() - t0
        print(f"\n5-fold CV, LogisticRegression(C=1.0, lbfgs, max_iter=5000): mean accuracy {s.mean():.4f} "
              f"(std {s.std():.4f}) in {seconds:.3f} s; folds " + " ".join(f"{v:.4f}" for v in s))
        out["cv_logistic"] = {"mean": s.mean(), "std": s.std(), "seconds": seconds, "folds": list(s)}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
