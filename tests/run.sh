#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds with warnings as errors
# and AddressSanitizer + UndefinedBehaviorSanitizer, then runs every unit and integration test
# under CTest. The integration tests start their own private PostgreSQL cluster (as an
# unprivileged user when run as root) on port NRM_TEST_PGPORT (default 31433) and stop it after.
#
#   tests/run.sh [extra ctest arguments, e.g. -R intake]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${NRM_TEST_BUILD_DIR:-$root/build-test}
port=${NRM_TEST_PGPORT:-31433}

bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DNRM_WERROR=ON -DNRM_SANITIZE=ON \
  -DNRM_TEST_PGPORT="$port" >/dev/null
cmake --build "$build" -j"$(nproc)"

# Sanitizer findings fail the run; leaks are reported by the processes that exit normally.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure -j2 --timeout 600 "$@"
