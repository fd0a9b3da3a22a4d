#!/usr/bin/python3
"""scikit-learn baselines for the digits example, on the exact split tessera uses.

    ./build/release/examples/digits --export-split /tmp/split
    /usr/bin/python3 bench/sklearn_digits.py /tmp/split/train.csv /tmp/split/test.csv

Standardises with statistics of the training part, then fits LogisticRegression (lbfgs,
multinomial, C=1) and MLPClassifier(hidden_layer_sizes=(128,), adam) and prints test accuracy.
"""
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def load(path):
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    return a[:, :-1], a[:, -1].astype(int)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    xtr, ytr = load(sys.argv[1])
    xte, yte = load(sys.argv[2])
    s = StandardScaler().fit(xtr)
    xtr, xte = s.transform(xtr), s.transform(xte)
    lr = LogisticRegression(max_iter=5000).fit(xtr, ytr)
    print(f"sklearn LogisticRegression test_accuracy={(lr.predict(xte) == yte).mean():.4f}")
    mlp = MLPClassifier(hidden_layer_sizes=(128,), random_state=0, max_iter=500).fit(xtr, ytr)
    print(f"sklearn MLPClassifier(128) test_accuracy={(mlp.predict(xte) == yte).mean():.4f}")


if __name__ == "__main__":
    main()
