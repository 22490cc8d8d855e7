#!/usr/bin/python3
"""Waits for the webhooks of tools/bench/e2e.sh's reports and measures them (benchmark tool).

    e2e_wait.py CASE_LOG HOOK_LOG TIMEOUT_S

CASE_LOG has "CASE_ID SUBMITTED_MS" per acknowledged report (nrm-bench --log, peer.js submit);
HOOK_LOG has "RECEIVED_MS TYPE SUBJECT DELIVERY" per POST (e2e_receiver.py). Waits until every
case has a shelter.* webhook (or TIMEOUT_S passes), then prints one line of JSON: cases,
arrived, seconds (first submission to last first-arrival), per_s, p50_ms and p99_ms of
submit-to-webhook, and the cases whose shelter webhook came more than once ("repeated", with
"new_ids" the repeats under another delivery id). Exits 1 on a timeout."""
import json
import sys
import time

case_log, hook_log, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
submitted = {}
with open(case_log) as f:
    for line in f:
        case, ms = line.split()
        submitted[case] = float(ms)
first, ids, offset = {}, {}, 0
repeated = new_ids = 0
deadline = time.monotonic() + timeout
while True:
    with open(hook_log) as f:
        f.seek(offset)
        chunk = f.read()
    cut = chunk.rfind("\n") + 1
    offset += len(chunk[:cut].encode())
    for line in chunk[:cut].splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[1].startswith("shelter.") or parts[2] not in submitted:
            continue
        received, case, delivery = float(parts[0]), parts[2], parts[3]
        if case in first:
            repeated += 1
            new_ids += delivery not in ids[case]
            ids[case].add(delivery)
        else:
            first[case] = received
            ids[case] = {delivery}
    if len(first) == len(submitted) or time.monotonic() > deadline:
        break
    time.sleep(0.05)
latency = sorted(first[c] - submitted[c] for c in first)
pct = lambda p: round(latency[(len(latency) - 1) * p // 100], 2) if latency else None
start = min(submitted.values())
seconds = (max(first.values()) - start) / 1000 if first else None
print(json.dumps({"cases": len(submitted), "arrived": len(first), "seconds": seconds and round(seconds, 3),
                  "per_s": seconds and round(len(first) / seconds, 1), "p50_ms": pct(50),
                  "p99_ms": pct(99), "repeated": repeated, "new_ids": new_ids}))
sys.exit(0 if len(first) == len(submitted) else 1)
