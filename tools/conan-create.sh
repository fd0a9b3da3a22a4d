#!/usr/bin/env bash
# Creates tessera's Conan 2 package from this tree and runs its test_package, offline: Conan
# itself comes from PyPI when it is missing (into a virtual environment, since Debian's Python
# refuses `pip install` outside one), tessera's dependencies from the system, nothing from a
# Conan remote.
#
#   bash tools/conan-create.sh [conan create options...]    e.g. -o 'tessera/*:with_mpi=True'
#
# Conan comes from, in this order: $CONAN, `conan` on PATH, the virtual environment
# ${TESSERA_CONAN_VENV:-~/.cache/tessera/conan-venv} (made and filled with `pip install conan` when
# absent). The profile is Conan's default (CONAN_HOME, ~/.conan2), made by `conan profile detect`
# when there is none. tessera needs C++20 and GCC 12's detected profile says compiler.cppstd=gnu17,
# which the recipe refuses (check_min_cppstd), so the command line raises it to 20.
set -euo pipefail
cd "$(dirname "$0")/.."

conan=${CONAN:-}
if [[ -z $conan ]] && command -v conan >/dev/null 2>&1; then
  conan=$(command -v conan)
fi
if [[ -z $conan ]]; then
  venv=${TESSERA_CONAN_VENV:-$HOME/.cache/tessera/conan-venv}
  if [[ ! -x $venv/bin/conan ]]; then
    echo "conan-create: installing Conan 2 from PyPI into $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "conan>=2,<3"
  fi
  conan=$venv/bin/conan
fi
echo "conan-create: $("$conan" --version)"

"$conan" profile detect --exist-ok
# Offline: no remote is consulted (tessera requires no Conan package).
"$conan" create . --build=missing --no-remote -s compiler.cppstd=20 "$@"
