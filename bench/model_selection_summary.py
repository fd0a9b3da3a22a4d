#!/usr/bin/python3
"""Medians and [min..max] over the rounds of bench/model_selection.sh: python3 model_selection_summary.py DIR"""
import collections
import glob
import json
import statistics
import sys


def spread(v):
    return f"{statistics.median(v):.3f} [{min(v):.3f}..{max(v):.3f}]"


def main(d):
    times = collections.defaultdict(list)
    found = collections.defaultdict(set)
    for f in sorted(glob.glob(f"{d}/tessera.*.json")):
        t = json.load(open(f))
        for g, runs in t["grids"].items():
            for mode, r in runs.items():
                times[("threads", g, mode)].append(r["seconds"])
                found[("threads", g, mode)].add((r["best"], round(r["best_cv"], 4), round(r["test_accuracy"], 4)))
            times[("threads", g, "speedup")].append(runs["sequential"]["seconds"] / runs["two_slots"]["seconds"])
        if "cv_softmax" in t:
            found[("threads", "cv", "softmax")].add(round(t["cv_softmax"]["mean"], 4))
    for f in sorted(glob.glob(f"{d}/sklearn.*.json")):
        s = json.load(open(f))
        for r in s["searches"]:
            key = ("sklearn", r["grid"] + " " + r["model"], f"n_jobs={r['n_jobs']}")
            times[key].append(r["seconds"])
            found[key].add((r["best_params"], round(r["best_cv"], 4), round(r["test_accuracy"], 4)))
        if "cv_logistic" in s:
            found[("sklearn", "cv", "LogisticRegression(C=1)")].add(round(s["cv_logistic"]["mean"], 4))
    for pattern, label in (("mpi1", "1 rank"), ("mpi4", "4 ranks"), ("mpi4g", "4 ranks")):
        for f in sorted(glob.glob(f"{d}/{pattern}.*.json")):
            m = json.load(open(f))
            for r in m["runs"]:
                key = ("mpi", r["grid"], f"{label}, {r['mode']} (ranks_per_task {r['ranks_per_task']})")
                times[key].append(r["result"]["seconds"])
                res = r["result"]
                found[key].add((res["best"], round(res["best_cv"], 4), round(res["test_accuracy"], 4)))
    print("seconds (or speedup): median [min..max] over rounds")
    for k, v in times.items():
        print(f"  {' | '.join(k):70s} {spread(v)}  (n={len(v)})")
    print("\nwhat was found (best, mean CV accuracy, refit test accuracy), every distinct value over rounds")
    for k, v in found.items():
        for x in sorted(v, key=str):
            print(f"  {' | '.join(k):70s} {x}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tessera-model-selection")
