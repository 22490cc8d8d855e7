#!/usr/bin/env bash
# The checked-in style holds: every C source and header of the repository is as clang-format
# makes it (.clang-format at the root), and every shell script passes shellcheck at warning level
# (sourced files say which shell they are for and which variables their callers set). The files
# are the repository's own (git ls-files; without a .git directory, the same names found on
# disk outside the build trees). Prints each file that fails and what to run to see why.
set -euo pipefail
root=${NRM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"

files() { # PATTERN...: the repository's files matching any of the patterns (git's pathspecs)
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- "$@"
  else
    local args=() p
    for p in "$@"; do args+=(-o -path "./$p"); done
    find . -path './build*' -prune -o -path './.git' -prune -o -type f \( -false "${args[@]}" \) \
      -print | sed 's|^\./||'
  fi
}

passed=0
failed=0
check() { # NAME COMMAND...
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "not ok: $name ($*)"
  fi
}

mapfile -t sources < <(files '*.c' '*.h')
mapfile -t scripts < <(files '*.sh' '.ci/run')
[ ${#sources[@]} -gt 100 ] || { echo "not ok: only ${#sources[@]} C files found"; exit 1; }
[ ${#scripts[@]} -gt 20 ] || { echo "not ok: only ${#scripts[@]} shell scripts found"; exit 1; }

for f in "${sources[@]}"; do check "$f is formatted" clang-format --dry-run --Werror "$f"; done
for f in "${scripts[@]}"; do check "$f passes shellcheck" shellcheck -x -S warning "$f"; done

echo "style: $passed passed, $failed failed (${#sources[@]} C files, ${#scripts[@]} scripts)"
[ "$failed" -eq 0 ]
