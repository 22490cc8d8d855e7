#!/usr/bin/env bash
# One out-of-memory policy: no C file of common/, services/ or tools/ calls malloc, calloc,
# realloc, reallocarray, strdup or strndup itself; only common/nrm_alloc.c does, and everything
# else uses nrm_xmalloc & co. (common/nrm_alloc.h). Comments and string literals are ignored.
# Also: no assert() as a check (it vanishes under NDEBUG, which release builds define).
set -euo pipefail
root=${NRM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
/usr/bin/python3 - <<'PY'
import pathlib, re, sys
code = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
raw = re.compile(r'(?<![\w.>])(malloc|calloc|realloc|reallocarray|strdup|strndup)\s*\(')
check = re.compile(r'(?<![\w.>])assert\s*\(|#\s*include\s*<assert\.h>')
def blank(m):
    t = m.group(0)
    return re.sub(r'[^\n]', ' ', t) if t.startswith('/') else '""'
bad = []
files = 0
for top in ("common", "services", "tools"):
    for path in sorted(pathlib.Path(top).rglob("*.[ch]")):
        if str(path) in ("common/nrm_alloc.c",):
            continue
        files += 1
        text = pathlib.Path(path).read_text()
        stripped = code.sub(blank, text)
        for n, line in enumerate(stripped.split("\n"), 1):
            for m in raw.finditer(line):
                bad.append(f"{path}:{n}: raw {m.group(1)}() (use nrm_x{m.group(1)} from nrm_alloc.h)")
            if check.search(line):
                bad.append(f"{path}:{n}: assert (a check that vanishes under NDEBUG)")
for b in bad:
    print("not ok:", b)
if files < 50:
    print("not ok: only", files, "files scanned"); sys.exit(1)
print(f"{files} files scanned, {len(bad)} raw allocations or asserts")
sys.exit(1 if bad else 0)
PY
