#!/usr/bin/python3
"""scikit-learn baselines for the digits example (run with Debian's /usr/bin/python3).

On the exact split tessera uses (the comparable numbers):

    ./build/release/examples/digits --export-split /tmp/split
    /usr/bin/python3 bench/sklearn_digits.py /tmp/split/train.csv /tmp/split/test.csv

Or on a split that sklearn makes itself (train_test_split, stratified by label, random_state=--seed).
NOTE: this split is NOT the one tessera's digits example uses (tessera shuffles with its own RNG),
so accuracies from this mode are only a rough reference, not a like-for-like comparison:

    /usr/bin/python3 bench/sklearn_digits.py --full data/digits.csv --seed 0 --test-fraction 0.2

CSV format (as data/digits.csv): a header row, then one sample per line, label in the last column.
Standardises with statistics of the training part (StandardScaler), then fits
LogisticRegression (multinomial, lbfgs, C=1.0, max_iter=5000) and
MLPClassifier(hidden_layer_sizes=(128,), adam, random_state=0, max_iter=500), and prints one
line of test accuracy for each.
"""
import argparse
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def load(path):
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    return a[:, :-1], a[:, -1].astype(int)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train", nargs="?", help="train CSV (header row, label last)")
    p.add_argument("test", nargs="?", help="test CSV (header row, label last)")
    p.add_argument("--full", metavar="CSV", help="whole data set; split it with sklearn's train_test_split")
    p.add_argument("--seed", type=int, default=0, help="random_state of train_test_split (with --full)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test_size of train_test_split (with --full)")
    a = p.parse_args()

    if a.full:
        if a.train or a.test:
            p.error("give either --full CSV or TRAIN TEST, not both")
        x, y = load(a.full)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=a.test_fraction, random_state=a.seed, stratify=y)
        print(f"sklearn train_test_split of {a.full}: seed={a.seed} test_fraction={a.test_fraction} "
              f"train={len(ytr)} test={len(yte)} (not tessera's split)")
    elif a.train and a.test:
        xtr, ytr = load(a.train)
        xte, yte = load(a.test)
    else:
        p.error("need TRAIN TEST or --full CSV")

    s = StandardScaler().fit(xtr)
    xtr, xte = s.transform(xtr), s.transform(xte)
    # With lbfgs and more than two classes, multi_class="auto" (the default) is multinomial (softmax);
    # not passed explicitly because sklearn >= 1.5 deprecates the multi_class argument.
    lr = LogisticRegression(solver="lbfgs", C=1.0, max_iter=5000).fit(xtr, ytr)
    print(f"sklearn LogisticRegression test_accuracy={(lr.predict(xte) == yte).mean():.4f}")
    mlp = MLPClassifier(hidden_layer_sizes=(128,), random_state=0, max_iter=500).fit(xtr, ytr)
    print(f"sklearn MLPClassifier(128) test_accuracy={(mlp.predict(xte) == yte).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
