#!/usr/bin/python3
"""Writes data/digits.csv from the copy of the UCI digits shipped in Debian's python3-sklearn,
and checks it against sklearn.datasets.load_digits()."""
import gzip
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

SOURCE = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.csv")

raw = np.loadtxt(gzip.open(SOURCE, "rt"), delimiter=",")
ref = load_digits()
assert raw.shape == (1797, 65), raw.shape
assert (raw == np.rint(raw)).all() and raw[:, :64].min() >= 0 and raw[:, :64].max() <= 16, "not integers 0..16"
assert (raw[:, :64] == ref.data).all() and (raw[:, 64] == ref.target).all(), "differs from load_digits()"
with open(out, "w", newline="\n") as f:
    f.write(",".join([f"pixel_{i}" for i in range(64)] + ["label"]) + "\n")
    for row in raw.astype(int):
        f.write(",".join(map(str, row)) + "\n")
print(f"wrote {out}: {raw.shape[0]} rows")
