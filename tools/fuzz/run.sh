#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang in a build directory of their own and
# runs each for a while over its committed seed corpus.
#
#   tools/fuzz/run.sh [-t SECONDS] [-b BUILD_DIR] [-k] [TARGET...]
#
#   -t SECONDS    how long each target runs (default 600)
#   -b BUILD_DIR  where to build (default build-fuzz beside the sources)
#   -k            keep what the fuzzer finds: new inputs are added to tests/fuzz/corpus/<target>
#                 (by libFuzzer's -merge=1, so only inputs that add coverage), for a commit
#   TARGET        request, json, config (default: all)
#
# A crash stops the run of that target and leaves the input as BUILD_DIR/artifacts/<target>/
# crash-*; the script then exits 1. Reproduce with BUILD_DIR/tests/fuzz/fuzz_<target> FILE. Once
# fixed, add the input to tests/fuzz/corpus/<target>/ so it stays covered.
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
seconds=600
build_dir=$source_dir/build-fuzz
keep=false
while getopts "t:b:k" opt; do
  case "$opt" in
    t) seconds=$OPTARG ;;
    b) build_dir=$OPTARG ;;
    k) keep=true ;;
    *) sed -n '2,18p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request json config)

command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang)" >&2; exit 2; }
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  CC=clang cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DNRM_FUZZ=ON \
    -DNRM_TESTS=OFF >/dev/null
fi
cmake --build "$build_dir" -j"${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}" >/dev/null

status=0
for t in "${targets[@]}"; do
  seeds=$source_dir/tests/fuzz/corpus/$t
  work=$build_dir/corpus/$t
  artifacts=$build_dir/artifacts/$t
  mkdir -p "$work" "$artifacts"
  echo "fuzz: $t for ${seconds}s"
  # the first directory receives what is found; the seeds are only read
  if ! NRM_SOURCE_DIR=$source_dir ASAN_OPTIONS=detect_leaks=1 \
    "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1 "$work" "$seeds" \
    >"$build_dir/fuzz-$t.log" 2>&1; then
    echo "fuzz: $t FAILED; see $build_dir/fuzz-$t.log and $artifacts/" >&2
    grep -m 5 -E "ERROR|SUMMARY|fuzz_[a-z]+:" "$build_dir/fuzz-$t.log" >&2 || true
    status=1
    continue
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$build_dir/fuzz-$t.log" |
    sed "s/^/fuzz: $t /"
  if $keep; then
    "$build_dir/tests/fuzz/fuzz_$t" -merge=1 "$seeds" "$work" >/dev/null 2>&1
  fi
done
exit $status
