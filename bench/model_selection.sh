#!/usr/bin/env bash
# Model selection against scikit-learn: exports the digits split and folds once, then runs, in
# rounds interleaved, bench_model_selection (threads), bench/sklearn_model_selection.py
# (GridSearchCV n_jobs 2 and 1), bench_mpi_tasks on 1 rank (sequential) and on 4 ranks
# (ranks_per_task 1); the slow 2 groups of 2 ranks (ranks_per_task 2) in the first GROUP_ROUNDS
# rounds only (GROUP_ROUNDS=0 skips them). Prints medians and [min..max] over the rounds found in
# OUT; FIRST=n starts at round n, to add rounds to an earlier run.
#   bash bench/model_selection.sh [build-dir]     (default build/release; ROUNDS=3, FIRST=1,
#                         GROUP_ROUNDS=1, OUT=/tmp/tessera-model-selection, NICE="nice -n -20")
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
rounds=${ROUNDS:-3}
group_rounds=${GROUP_ROUNDS:-1}
out=${OUT:-/tmp/tessera-model-selection}
nice_cmd=${NICE-nice -n -20}
mpirun_cmd=(mpirun --allow-run-as-root --oversubscribe)
mkdir -p "$out"
"$build/bench/bench_model_selection" --grids none --export "$out" >/dev/null
for r in $(seq "${FIRST:-1}" "$rounds"); do
  echo "== round $r: $(uptime)"
  $nice_cmd "$build/bench/bench_model_selection" --json "$out/tessera.$r.json"
  $nice_cmd /usr/bin/python3 bench/sklearn_model_selection.py "$out" --json "$out/sklearn.$r.json"
  $nice_cmd "${mpirun_cmd[@]}" -np 1 "$build/bench/bench_mpi_tasks" --modes ranks --json "$out/mpi1.$r.json"
  $nice_cmd "${mpirun_cmd[@]}" -np 4 "$build/bench/bench_mpi_tasks" --modes ranks --json "$out/mpi4.$r.json"
  if [ "$r" -le "$group_rounds" ]; then
    $nice_cmd "${mpirun_cmd[@]}" -np 4 "$build/bench/bench_mpi_tasks" --modes groups --json "$out/mpi4g.$r.json"
  fi
done
/usr/bin/python3 bench/model_selection_summary.py "$out"
