#!/usr/bin/env bash
# Release builds are hardened (CMakeLists.txt, NRM_HARDEN): a RelWithDebInfo build of one
# service (the configuration the image and deploy/run-local.sh use) is a position-independent
# executable with full RELRO (GNU_RELRO segment and BIND_NOW), calls the stack protector and the
# fortified libc functions (_FORTIFY_SOURCE). The build directory is kept
# (NRM_RELEASE_CHECK_DIR, default <build>/release-check), so later runs only rebuild what changed.
set -euo pipefail
root=${NRM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NRM_RELEASE_CHECK_DIR:-${NRM_BINARY_DIR:-$root/build}/release-check}
service=shelter
skip="intake;routing;notify;reintegration;gateway;nrmctl;bench;authz"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNRM_TESTS=OFF -DNRM_WERROR=ON \
  -DNRM_SANITIZE=OFF "-DNRM_SKIP=$skip" >"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
nice cmake --build "$build" --target "nrm-$service" -j2 >>"$build.log" 2>&1 || {
  tail -50 "$build.log"
  exit 1
}
bin="$build/services/$service/nrm-$service"
passed=0
failed=0
check() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "not ok: $*"; fi
}
has() { grep -Eq "$1" <<<"$2"; }
header=$(readelf -h "$bin")
dynamic=$(readelf -d "$bin")
segments=$(readelf -lW "$bin")
symbols=$(readelf -sW --dyn-syms "$bin")
check has 'Type:[[:space:]]+DYN' "$header"                        # PIE
check has 'GNU_RELRO' "$segments"                                 # RELRO
check has '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' "$dynamic"      # ... full: bound at load
check has '__stack_chk_fail' "$symbols"                           # -fstack-protector-strong
check has '__[a-z]+_chk(@|[[:space:]]|$)' "$symbols"              # _FORTIFY_SOURCE
flags=$(/usr/bin/python3 -c 'import json, sys
print(" ".join(e["command"] for e in json.load(open(sys.argv[1])) if e["file"].endswith("/shelter_allocate.c")))' \
  "$build/compile_commands.json")
check has '_FORTIFY_SOURCE=3' "$flags"
check has 'fstack-protector-strong' "$flags"
echo "hardening of $bin: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
