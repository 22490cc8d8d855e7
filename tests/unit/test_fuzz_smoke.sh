#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz) are built with clang in a build directory of their own and
# each runs for FUZZ_SMOKE_S seconds (default 15) over its committed seed corpus: any crash,
# sanitizer report, leak or round-trip failure fails the test. tools/fuzz/run.sh runs them longer.
set -uo pipefail
: "${NRM_SOURCE_DIR:?}" "${NRM_BUILD_DIR:?}"
seconds=${FUZZ_SMOKE_S:-15}
started=$SECONDS
passed=0
failed=0
if ! command -v clang >/dev/null; then
  echo "clang is missing (deploy/install-deps.sh installs it)"
  echo "0 passed, 1 failed"
  exit 1
fi
for t in request json config; do
  if nice bash "$NRM_SOURCE_DIR/tools/fuzz/run.sh" -t "$seconds" -b "$NRM_BUILD_DIR/fuzz" "$t"; then
    passed=$((passed + 1))
    echo "ok - fuzz_$t ran ${seconds}s without a crash"
  else
    failed=$((failed + 1))
    echo "not ok - fuzz_$t"
  fi
done
echo "# build and runs took $((SECONDS - started))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
