# tools/bench/lib.sh: the start every benchmark shares, sourced after it sets root (the source
# tree), build (its release build directory), pgdir and port (its private cluster).
#
#   bench_build TARGET...   installs what is missing (unless NRM_BENCH_SKIP_DEPS is set), then
#                           configures a Release tree without tests in $build and builds TARGETs
#   bench_cluster_start     starts the private cluster and exports PGHOST, PGPORT, PGUSER
#   bench_cluster_stop      stops it (for the benchmark's cleanup; never fails)
# shellcheck shell=bash disable=SC2154 # root, build, pgdir and port are the sourcing script's

bench_build() {
  [ -n "${NRM_BENCH_SKIP_DEPS:-}" ] || bash "$root/deploy/install-deps.sh" >/dev/null
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNRM_TESTS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "$@" >/dev/null
}

bench_cluster_start() {
  bash "$root/tests/pg-cluster.sh" start "$pgdir" "$port" >/dev/null
  export PGHOST=$pgdir/sock PGPORT=$port PGUSER=postgres
}

bench_cluster_stop() {
  bash "$root/tests/pg-cluster.sh" stop "$pgdir" >/dev/null 2>&1 || true
}
