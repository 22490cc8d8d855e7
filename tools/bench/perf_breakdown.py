#!/usr/bin/python3
"""Where a phase's CPU went, from a system-wide `perf record -a -g` (tools/bench/e2e.sh with
NRM_E2E_PERF=FILE).

    perf_breakdown.py PERF_DATA

Prints two Markdown tables: the share of the samples by process (comm), then PostgreSQL's
samples split by what its backends were doing. A sample counts once, in the first category whose
function is on its stack, in the order of CATEGORIES (the specific ones first: an FK check runs
inside the executor's finish, which runs inside a portal). Shares are of the samples taken, so
idle time (swapper) is a row of the first table."""
import collections
import subprocess
import sys

# (category, a function on the stack that marks it), first match wins.
CATEGORIES = [
    ("foreign key checks (RI triggers through SPI)", "SPI_execute_snapshot"),
    ("PL/pgSQL triggers (the kept counters)", "plpgsql_exec_trigger"),
    ("index entries written", "ExecInsertIndexTuples"),
    ("commit: WAL flush", "XLogFlush"),
    ("commit: the rest", "CommitTransactionCommand"),
    ("plan cache and planning", "GetCachedPlan"),
    ("executor start (plan initialisation)", "standard_ExecutorStart"),
    ("executor run: heap inserts and updates", "heap_insert"),
    ("executor run: heap inserts and updates", "heap_update"),
    ("executor run: the rest (scans, joins, sorts)", "standard_ExecutorRun"),
    ("executor finish: the rest (after-trigger queue)", "standard_ExecutorFinish"),
    ("reading the client's messages (socket)", "pq_getbyte"),
    ("protocol and portal handling, the rest", "PostgresMain"),
]


def samples(path):
    """Yields (comm, [function names, innermost first]) for each sample of the recording."""
    script = subprocess.Popen(["perf", "script", "-i", path, "-F", "comm,ip,sym"],
                              stdout=subprocess.PIPE, text=True)
    comm, stack = None, []
    for line in script.stdout:  # read as perf writes it: a long recording is large
        if not line.strip():
            continue
        if not line.startswith(("\t", " ")):
            if comm is not None:
                yield comm, stack
            comm, stack = line.strip(), []
        else:
            parts = line.split(None, 1)
            stack.append(parts[1].strip() if len(parts) > 1 else "?")
    if comm is not None:
        yield comm, stack
    if script.wait() != 0:
        sys.exit(f"perf script failed ({script.returncode})")


def main():
    by_comm = collections.Counter()
    by_category = collections.Counter()
    for comm, stack in samples(sys.argv[1]):
        by_comm[comm] += 1
        if comm != "postgres":
            continue
        frames = set(stack)
        name = next((c for c, f in CATEGORIES if f in frames), "other (background processes)")
        by_category[name] += 1
    total, pg = sum(by_comm.values()), by_category.total()
    print(f"| process | share of {total} samples, % |\n| --- | --- |")
    for comm, n in by_comm.most_common(10):
        print(f"| {comm} | {100 * n / total:.1f} |")
    print(f"\n| PostgreSQL's backends | share of its {pg} samples, % |\n| --- | --- |")
    for name, n in by_category.most_common():
        print(f"| {name} | {100 * n / max(pg, 1):.1f} |")


if __name__ == "__main__":
    main()
