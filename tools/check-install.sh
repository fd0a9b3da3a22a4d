#!/usr/bin/env bash
# CI check of the README's install story, taken literally: a clean clone of this repository, on a
# machine where Catch2 and Google Benchmark cannot be found, installs tessera and builds and runs the
# README's consumer with exactly the README's commands.
#
#   bash tools/check-install.sh [--working-tree]
#     --working-tree   copy the working tree (tracked and untracked files git does not ignore)
#                      instead of cloning the committed HEAD, to check before committing
#
# How, and why this way:
# - The commands and files come from README.md itself, so the check cannot drift from what the
#   README says: each fenced block preceded by a line `<!-- check-install: run -->` is run (in
#   order, with bash -e, from one folder that holds the clone as tessera/), and each block preceded
#   by `<!-- check-install: file <path> -->` is written to <path> there first (my_app/CMakeLists.txt,
#   and my_app/main.cpp, the Usage program). The check fails when a marker is missing.
# - "Without Catch2" must hold for the README's plain commands, so neither a flag such as
#   -DCMAKE_DISABLE_FIND_PACKAGE_Catch2=ON (that would test another command) nor uninstalling the
#   packages (that changes the machine for every other user of it) will do. Instead the commands run
#   in a private mount namespace (unshare -m; needs root) in which empty tmpfs folders are mounted
#   over the folders that hold Catch2's and Google Benchmark's CMake packages and headers: for every
#   process inside, those folders are empty, and nothing outside changes. Before the README's
#   commands run, a probe project checks that find_package(Catch2) and find_package(benchmark) now
#   fail; after, the install's configure output must say that tests and benchmarks were skipped.
# - The README installs into /opt/tessera. Inside the namespace /opt is an overlay whose writes go
#   to the temporary folder, so the command installs where the README says without touching the
#   machine's /opt (an old /opt/tessera there is hidden from the check).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=clone
case ${1:-} in
  --working-tree) mode=copy ;;
  "") ;;
  *) echo "usage: $0 [--working-tree]" >&2; exit 2 ;;
esac
if [[ $(id -u) != 0 ]] || ! unshare -m --propagation private true 2>/dev/null; then
  echo "check-install: needs root and unshare -m (a private mount namespace) to hide Catch2 and Google Benchmark" >&2
  exit 2
fi

tmp=$(mktemp -d /tmp/tessera-check-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
work=$tmp/work
mkdir -p "$work" "$tmp/opt-upper" "$tmp/opt-work" "$tmp/empty"

# 1. a clean tree in $work/tessera
if [[ $mode == clone ]]; then
  git clone --quiet --no-hardlinks "$root" "$work/tessera"
  echo "check-install: cloned $(git -C "$work/tessera" rev-parse --short HEAD) ($(git -C "$root" rev-parse --abbrev-ref HEAD))"
  git -C "$root" diff --quiet HEAD || echo "check-install: note: uncommitted changes are not in the clone (--working-tree checks them)"
else
  mkdir "$work/tessera"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -- {} "$work/tessera/")
  echo "check-install: copied the working tree of $root"
fi

# 2. the README's blocks: files to write, commands to run
readme=$work/tessera/README.md
mkdir -p "$tmp/blocks"
awk -v dir="$tmp/blocks" '
  /^<!-- check-install: (run|file [^ ]+) -->$/ { marker = $0; sub(/^<!-- check-install: /, "", marker); sub(/ -->$/, "", marker); next }
  marker != "" && !inside && /^```/ { inside = 1; n++; out = sprintf("%s/%02d", dir, n); print marker > (out ".what"); close(out ".what"); printf "" > out; next }
  inside && /^```/ { inside = 0; marker = ""; close(out); next }
  inside { print >> out; next }
  marker != "" && !/^[[:space:]]*$/ { printf "check-install: README.md: a marker is not followed by a fenced block (line %d)\n", NR > "/dev/stderr"; exit 1 }
' "$readme"
runs=0 files=0
: > "$tmp/commands.sh"
for what in "$tmp"/blocks/*.what; do
  [[ -e $what ]] || break
  block=${what%.what}
  read -r kind path < "$what"
  if [[ $kind == run ]]; then
    cat "$block" >> "$tmp/commands.sh"; runs=$((runs + 1))
  else
    mkdir -p "$work/$(dirname "$path")"; cp "$block" "$work/$path"; files=$((files + 1))
    echo "check-install: wrote $path from README.md"
  fi
done
if ((runs < 2)) || [[ ! -f $work/my_app/CMakeLists.txt || ! -f $work/my_app/main.cpp ]]; then
  echo "check-install: README.md lacks its marked blocks (found $runs to run, $files files; need the install and" \
       "the consumer's commands, my_app/CMakeLists.txt and my_app/main.cpp)" >&2
  exit 1
fi
echo "check-install: the README's commands:"; sed 's/^/    /' "$tmp/commands.sh"

# 3. what to hide: the folders of Catch2's and Google Benchmark's packages and headers, as CMake finds them
mkdir -p "$tmp/probe"
cat > "$tmp/probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(probe CXX)  # Google Benchmark's package needs a language (Threads)
find_package(Catch2 QUIET)
find_package(benchmark QUIET)
find_path(PROBE_CATCH_INCLUDE catch2/catch.hpp)
find_path(PROBE_CATCH3_INCLUDE catch2/catch_all.hpp)
find_path(PROBE_BENCH_INCLUDE benchmark/benchmark.h)
message(STATUS "probe: Catch2_FOUND=${Catch2_FOUND} benchmark_FOUND=${benchmark_FOUND}")
foreach(_d Catch2_DIR benchmark_DIR)
  if(${_d})
    message(STATUS "probe-hide: ${${_d}}")
  endif()
endforeach()
if(PROBE_CATCH_INCLUDE OR PROBE_CATCH3_INCLUDE)
  foreach(_d ${PROBE_CATCH_INCLUDE} ${PROBE_CATCH3_INCLUDE})
    message(STATUS "probe-hide: ${_d}/catch2")
  endforeach()
endif()
if(PROBE_BENCH_INCLUDE)
  message(STATUS "probe-hide: ${PROBE_BENCH_INCLUDE}/benchmark")
endif()
EOF
cmake -S "$tmp/probe" -B "$tmp/probe/outside" > "$tmp/probe-outside.log" 2>&1
grep -o 'probe: .*' "$tmp/probe-outside.log" | sed 's/^/check-install: outside: /'
grep -o 'probe-hide: .*' "$tmp/probe-outside.log" | sed 's/^probe-hide: //' | sort -u > "$tmp/hide.txt" || true

# 4. inside a private mount namespace: hide them, overlay /opt, prove the hiding, run the README
cat > "$tmp/inside.sh" <<EOF
set -euo pipefail
while read -r dir; do
  [[ -d \$dir ]] && mount -t tmpfs -o ro,size=4k tessera-check-install "\$dir" && echo "check-install: hidden: \$dir"
done < "$tmp/hide.txt"
mount -t overlay tessera-check-install-opt -o lowerdir=/opt,upperdir=$tmp/opt-upper,workdir=$tmp/opt-work /opt
rm -rf /opt/tessera
cmake -S "$tmp/probe" -B "$tmp/probe/inside" > "$tmp/probe-inside.log" 2>&1
grep -o 'probe: .*' "$tmp/probe-inside.log" | sed 's/^/check-install: inside: /'
if ! grep -q 'probe: Catch2_FOUND=0 benchmark_FOUND=0' "$tmp/probe-inside.log"; then
  echo "check-install: FAILED: Catch2 or Google Benchmark is still found inside the namespace" >&2; exit 1
fi
cd "$work"
bash -euxo pipefail "$tmp/commands.sh"
EOF
echo "check-install: running the README's commands in $work (Catch2 and Google Benchmark hidden)"
set +e
unshare -m --propagation private bash "$tmp/inside.sh" 2>&1 | tee "$tmp/run.log"
rc=${PIPESTATUS[0]}
set -e
if ((rc != 0)); then
  echo "check-install: FAILED: the README's commands exited with status $rc (output above)" >&2
  exit 1
fi
fail=0
grep -q 'tessera: Catch2 2 not found (Debian: catch2); tests skipped' "$tmp/run.log" ||
  { echo "check-install: FAILED: the install's configure step did not say that the tests were skipped" >&2; fail=1; }
grep -q 'Google Benchmark not found (Debian: libbenchmark-dev); benchmarks skipped' "$tmp/run.log" ||
  { echo "check-install: FAILED: the install's configure step did not say that the benchmarks were skipped" >&2; fail=1; }
if grep -q 'CMAKE_BUILD_TYPE is empty' "$tmp/run.log"; then
  echo "check-install: FAILED: the consumer was configured without its Release default" >&2; fail=1
fi
grep -Eq 'test accuracy 0\.9[5-9]' "$tmp/run.log" ||
  { echo "check-install: FAILED: the consumer did not print a test accuracy of at least 0.95" >&2; fail=1; }
[[ -f $tmp/opt-upper/tessera/share/cmake/tessera/tesseraConfig.cmake ]] ||
  { echo "check-install: FAILED: nothing was installed into /opt/tessera" >&2; fail=1; }
if ((fail)); then exit 1; fi
echo "check-install: OK: a clean $mode without Catch2 or Google Benchmark installed tessera and built and ran the README's consumer"
