#!/usr/bin/env python3
"""Pictures from tessera's outputs: a fit's history, and the benchmarks' Google Benchmark JSON.

Runs with Debian's Python and matplotlib (apt-get install python3-matplotlib):

  /usr/bin/python3 tools/plot.py history  HISTORY.csv|.json [...] [--labels A B ...] -o curves.png
      loss (and validation loss) and validation metric (accuracy or R^2) per epoch, one line per
      history; the CSV or JSON that History::write_csv / write_json write
  /usr/bin/python3 tools/plot.py scaling  bench_data_parallel.json -o scaling.png
      training samples/s with 1 and 2 workers per model (bench_data_parallel), speed-up written on top
  /usr/bin/python3 tools/plot.py allreduce bench_mpi_allreduce.json [bench_allreduce.json] -o allreduce.png
      all-reduce bandwidth against buffer size: tessera's sum over ranks against raw MPI_Allreduce
      (bench_mpi_allreduce), and the thread all-reduce against memcpy (bench_allreduce)
  /usr/bin/python3 tools/plot.py bubble   bench_pipeline.json -o bubble.png
      the measured pipeline bubble (BM_pipeline, 1F1B and GPipe) against the fill-drain theory
      (S-1)/(M+S-1), per stage count S, against the micro-batch count M
  /usr/bin/python3 tools/plot.py timeline run.rank0.json [run.rank1.json ...] -o timeline.png [--from MS --to MS]
      a Gantt chart of TrainerOptions::timeline files (one per rank, merged): one row per rank and
      worker, one bar per span colored by its name, nested spans (an update inside a gradient sum)
      drawn as thinner bars on top; --from/--to keep a window of milliseconds

Every command takes --title and --note (a line under the plot, e.g. the machine). Benchmark files
may hold repetitions (--benchmark_repetitions): the median of each benchmark's runs is plotted, with
a warning when it is more than 10% slower than the best run (most runs were disturbed).
"""
import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402


# -- reading ---------------------------------------------------------------------------------------

def _number(value):
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_history(path):
    """The epochs of a History as a dict of column -> list of floats."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        epochs = json.loads(text)["epochs"]
        columns = list(epochs[0].keys()) if epochs else ["epoch", "loss"]
        return {c: [_number(e.get(c)) for e in epochs] for c in columns}
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "epoch" not in rows[0] or "loss" not in rows[0]:
        sys.exit(f"plot.py: {path} is not a History CSV (no epoch and loss columns)")
    return {c: [_number(r[c]) for r in rows] for c in rows[0]}


def read_benchmarks(path):
    """run_name -> dict of field -> median over the file's iteration runs of that benchmark."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    runs = defaultdict(lambda: defaultdict(list))
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b.get("run_name", b["name"])
        for key, value in b.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                runs[name][key].append(float(value))
    if not runs:
        sys.exit(f"plot.py: {path} holds no benchmark runs (Google Benchmark's --benchmark_format=json)")
    # a median well above the best run: most repetitions were slowed down (another program took
    # the cores), so the median is not this machine's number
    for name, fields in runs.items():
        times = fields.get("real_time", [])
        if len(times) > 1 and statistics.median(times) > 1.10 * min(times):
            print(f"plot.py: warning: {path}: {name}: the median of its {len(times)} repetitions is "
                  f"{statistics.median(times) / min(times):.2f}x the best; was the machine busy?", file=sys.stderr)
    return {name: {k: statistics.median(v) for k, v in fields.items()} for name, fields in runs.items()}, data.get("context", {})


def _finite(values):
    return any(not math.isnan(v) for v in values)


def _finish(fig, args):
    if args.note:
        fig.text(0.5, 0.005, args.note, ha="center", va="bottom", fontsize=7.5, color="0.35", wrap=True)
    fig.tight_layout(rect=(0, 0.05 if args.note else 0, 1, 1))
    fig.savefig(args.output, dpi=args.dpi)
    print(f"plot.py: wrote {args.output}")


# -- the plots -------------------------------------------------------------------------------------

def plot_history(args):
    histories = [read_history(p) for p in args.inputs]
    labels = args.labels or [re.sub(r"\.(csv|json)$", "", p.split("/")[-1]) for p in args.inputs]
    if len(labels) != len(histories):
        sys.exit("plot.py: give one label per history")
    metric = any(_finite(h.get("validation_metric", [])) for h in histories)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    for h, label in zip(histories, labels):
        line, = ax.plot(h["epoch"], h["loss"], marker="o", markersize=3, label=f"{label}: training loss")
        if _finite(h.get("validation_loss", [])):
            ax.plot(h["epoch"], h["validation_loss"], linestyle="--", color=line.get_color(),
                    label=f"{label}: validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("loss")
    if metric:
        ax = axes[0][1]
        for h, label in zip(histories, labels):
            if _finite(h.get("validation_metric", [])):
                ax.plot(h["epoch"], h["validation_metric"], marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation metric (accuracy or R^2)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("validation accuracy")
    if args.title:
        fig.suptitle(args.title)
    _finish(fig, args)


def _model_label(name):
    m = re.match(r"mlp_([\d_]+?)_batch(\d+)(_deterministic)?$", name)
    if not m:
        return name
    return f"MLP {m.group(1).replace('_', '-')}\nbatch {m.group(2)}" + ("\ndeterministic" if m.group(3) else "")


def plot_scaling(args):
    runs, _ = read_benchmarks(args.inputs[0])
    by_model = defaultdict(dict)
    for name, fields in runs.items():
        m = re.match(r"BM_(\w+?)/(\d+)(/|$)", name)
        if m and "samples/s" in fields:
            by_model[m.group(1)][int(m.group(2))] = fields["samples/s"]
    models = [m for m in by_model if 1 in by_model[m] and 2 in by_model[m]]
    if not models:
        sys.exit("plot.py: no benchmark with 1 and 2 workers and a samples/s counter (bench_data_parallel)")
    # one panel per model: the rates differ by 40x between models
    fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models) + 1, 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        one, two = by_model[model][1], by_model[model][2]
        ax.bar([0, 1], [one, two], color=["#4C72B0", "#DD8452"], width=0.6)
        ax.text(1, two, f"x{two / one:.2f}", ha="center", va="bottom", fontsize=10)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["1 worker", "2 workers"])
        ax.set_ylim(0, max(one, two) * 1.18)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:g}k"))
        ax.set_title(_model_label(model), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("training samples/s")
    fig.suptitle(args.title or "data parallelism on worker threads, 1 and 2 workers (bench_data_parallel)")
    _finish(fig, args)


def _size_bytes(text):
    m = re.fullmatch(r"(\d+)(KiB|MiB|GiB)", text)
    return int(m.group(1)) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)] if m else None


def plot_allreduce(args):
    series = defaultdict(list)  # label -> [(bytes, GB/s)]
    ranks = None
    for path in args.inputs:
        runs, _ = read_benchmarks(path)
        for name, fields in runs.items():
            rate = fields.get("bytes_per_second")
            if rate is None:
                continue
            parts = name.split("/")
            if parts[0] in ("BM_tessera_all_reduce", "BM_MPI_Allreduce"):
                size = _size_bytes(parts[1])
                ranks = int(fields.get("ranks", 0)) or ranks
                label = "tessera mpi::Communicator::all_reduce" if parts[0] == "BM_tessera_all_reduce" else "raw MPI_Allreduce"
            elif parts[0] == "BM_thread_allreduce_bytes":
                size, label = int(parts[1]) * 4, f"tessera thread all-reduce, {parts[2]} workers"
            elif parts[0] == "BM_memcpy":
                size, label = int(parts[1]) * 4, "memcpy of the same bytes"
            else:
                continue
            series[label].append((size, rate / 1e9))
    if not series:
        sys.exit("plot.py: no all-reduce benchmark found (bench_mpi_allreduce, bench_allreduce)")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = {"raw MPI_Allreduce": dict(marker="s", linestyle="--"), "memcpy of the same bytes": dict(marker="^", linestyle=":")}
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, **styles.get(label, dict(marker="o")))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("buffer size (bytes)")
    ax.set_ylabel("GB/s (buffer bytes per second)")
    ticks = [1 << k for k in range(12, 29, 2)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t >> 20} MiB" if t >= 1 << 20 else f"{t >> 10} KiB" for t in ticks], fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    over = ", ".join(x for x in (f"{ranks} MPI ranks" if ranks else "",
                                 "threads" if any("thread" in k for k in series) else "") if x)
    ax.set_title(args.title or f"all-reduce of a float buffer against its size ({over})")
    _finish(fig, args)


def plot_bubble(args):
    runs, _ = read_benchmarks(args.inputs[0])
    points = defaultdict(list)  # (S, schedule) -> [(M, bubble)]
    for name, fields in runs.items():
        m = re.match(r"BM_pipeline/S:(\d+)/M:(\d+)/1f1b:(\d)", name)
        if m and "bubble" in fields:
            S, M = int(m.group(1)), int(m.group(2))
            points[(S, "1F1B" if m.group(3) == "1" else "GPipe")].append((M, fields["bubble"]))
    stages = sorted({s for s, _ in points if s > 1})
    if not stages:
        sys.exit("plot.py: no BM_pipeline run with S > 1 and a bubble counter (bench_pipeline)")
    fig, axes = plt.subplots(1, len(stages), figsize=(max(7, 5 * len(stages)), 4.2), squeeze=False, sharey=True)
    for ax, S in zip(axes[0], stages):
        ms = sorted({m for (s, _), pts in points.items() if s == S for m, _ in pts})
        fine = [2 ** (k / 8) for k in range(0, 8 * int(math.log2(max(ms))) + 1)]
        ax.plot(fine, [(S - 1) / (m + S - 1) for m in fine], color="black", linewidth=1,
                label="theory (S-1)/(M+S-1)")
        for sched, marker in (("1F1B", "o"), ("GPipe", "s")):
            pts = sorted(points.get((S, sched), []))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle="--", label=f"measured, {sched}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ms)
        ax.set_xticklabels([str(m) for m in ms])
        ax.set_xlabel("micro-batches M")
        ax.set_title(f"S = {S} stages")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("bubble: idle share of worker time")
    if args.title:
        fig.suptitle(args.title)
    _finish(fig, args)


def read_trace(path):
    """(process names, thread names, complete events) of a Chrome-trace JSON file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    procs, threads, spans = {}, {}, []
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
        elif e.get("ph") == "X":
            spans.append(e)
    return procs, threads, spans


# span name -> color: the same name, the same color in every picture
_SPAN_COLORS = {"compute": "#4C72B0", "forward": "#4C72B0", "backward": "#55A868", "gradient sum": "#DD8452",
                "all-reduce": "#DD8452", "update": "#8172B3", "step loss": "#C44E52", "wait": "#BBBBBB",
                "send": "#CCB974", "receive": "#64B5CD"}


def plot_timeline(args):
    procs, threads, spans = {}, {}, []
    for path in args.inputs:
        p, t, s = read_trace(path)
        procs.update(p)
        threads.update(t)
        spans.extend(s)
    if not spans:
        sys.exit("plot.py: no complete (\"X\") events in the trace files (TrainerOptions::timeline)")
    lo = args.window_from * 1e3 if args.window_from is not None else -math.inf
    hi = args.window_to * 1e3 if args.window_to is not None else math.inf
    tracks = sorted({(e["pid"], e["tid"]) for e in spans})
    row = {k: i for i, k in enumerate(tracks)}
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(tracks) + 1.6))
    names = []
    for key in tracks:
        mine = sorted((e for e in spans if (e["pid"], e["tid"]) == key), key=lambda e: (e["ts"], -e["dur"]))
        open_ends = []  # ends of the enclosing spans: the depth of the next one
        for e in mine:
            ts, dur = float(e["ts"]), float(e["dur"])
            while open_ends and open_ends[-1] <= ts:
                open_ends.pop()
            depth = len(open_ends)
            open_ends.append(ts + dur)
            if ts + dur < lo or ts > hi:
                continue
            name = e["name"]
            if name not in names:
                names.append(name)
            color = _SPAN_COLORS.get(name) or plt.cm.tab20(len(names) % 20)
            _SPAN_COLORS.setdefault(name, color)
            height = 0.8 * (0.6 ** depth)
            ax.broken_barh([(ts / 1e3, dur / 1e3)], (row[key] - height / 2, height), facecolors=color,
                           edgecolor="white" if depth == 0 else "none", linewidth=0.3)
    ax.set_yticks(range(len(tracks)))
    ax.set_yticklabels([f"{procs.get(p, f'rank {p}')} / {threads.get((p, t), f'worker {t}')}" for p, t in tracks])
    ax.invert_yaxis()
    ax.set_xlabel("time since the fit's start (ms)")
    if args.window_from is not None or args.window_to is not None:
        ax.set_xlim(left=args.window_from, right=args.window_to)
    ax.grid(True, axis="x", alpha=0.3)
    from matplotlib.patches import Patch  # noqa: E402
    order = list(_SPAN_COLORS)
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    ax.legend(handles=[Patch(color=_SPAN_COLORS[n], label=n) for n in names], fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(args.title or "timeline: what every rank and worker does (TrainerOptions::timeline)")
    _finish(fig, args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["history", "scaling", "allreduce", "bubble", "timeline"])
    parser.add_argument("inputs", nargs="+", help="history CSV/JSON files, Google Benchmark JSON files, or trace files")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--labels", nargs="+", help="history: one label per file")
    parser.add_argument("--title", default="")
    parser.add_argument("--note", default="", help="a line under the plot (the machine, the command)")
    parser.add_argument("--dpi", type=int, default=110)
    parser.add_argument("--from", dest="window_from", type=float, help="timeline: the window's start (ms)")
    parser.add_argument("--to", dest="window_to", type=float, help="timeline: the window's end (ms)")
    args = parser.parse_args(argv)
    {"history": plot_history, "scaling": plot_scaling, "allreduce": plot_allreduce, "bubble": plot_bubble,
     "timeline": plot_timeline}[args.kind](args)


if __name__ == "__main__":
    main()
