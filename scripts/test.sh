#!/usr/bin/env bash
# test.sh — the one test command: every unit and integration test, twice.
#
#   1. build/       Release (-O3, the build run-local.sh uses; assertions stay on), ctest -j2
#   2. build-asan/  the same with -DCAPGATE_SANITIZE=ON (ASan + UBSan, leaks on)
#
# Installs missing Debian packages first (scripts/install-deps.sh). Both runs
# always happen, so one report shows everything; the exit status is non-zero
# if anything failed to build or any test failed. .ci/run calls exactly this.
# Extra arguments are passed to ctest (e.g. `scripts/test.sh -L unit`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$(date +%s)
"$root/scripts/install-deps.sh"

jobs=$(nproc 2>/dev/null || echo 2)
export CTEST_OUTPUT_ON_FAILURE=1
# Child processes of the integration tests inherit these.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Known leaks inside NNG itself (not capgate's allocations); see the file.
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"

failed=()

# run_suite NAME BUILD_DIR CMAKE_ARGS...: configure, build, ctest; records failure.
run_suite() {
    local name=$1 dir=$2
    shift 2
    echo "==== test.sh: $name build in $dir ===="
    if ! cmake -S "$root" -B "$dir" -G Ninja "$@"; then
        failed+=("$name: configure")
        return
    fi
    if ! cmake --build "$dir" -j "$jobs"; then
        failed+=("$name: build")
        return
    fi
    echo "==== test.sh: $name ctest ===="
    if ! (cd "$dir" && ctest --output-on-failure --no-tests=error -j2 "${ctest_args[@]}"); then
        failed+=("$name: tests")
    fi
}

ctest_args=("$@")
run_suite release "$root/build" -DCMAKE_BUILD_TYPE=Release -DCAPGATE_SANITIZE=OFF
run_suite asan "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAPGATE_SANITIZE=ON

elapsed=$(($(date +%s) - start))
if [ ${#failed[@]} -ne 0 ]; then
    echo "==== test.sh: FAILED (${failed[*]}) after ${elapsed}s ===="
    exit 1
fi
echo "==== test.sh: all tests passed in both builds after ${elapsed}s ===="
