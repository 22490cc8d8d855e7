#!/usr/bin/env bash
# Google's protoc compiles the contract (for C++ and Python), and Python's protobuf runtime
# (Debian's python3-protobuf, hence /usr/bin/python3)
# builds, serialises and parses its envelopes: clients in other languages can use the files.
set -euo pipefail
root=${NRM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
check() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "not ok: $*"; fi
}
check protoc -I"$root/proto" --cpp_out="$out" --python_out="$out" \
  --descriptor_set_out="$out/nrm.pb" "$root"/proto/nrm/v1/*.proto
check test -s "$out/nrm/v1/api_pb2.py"
check test -s "$out/nrm/v1/events.pb.cc"
check /usr/bin/python3 - "$out" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from nrm.v1 import api_pb2, events_pb2, enums_pb2, intake_pb2
req = api_pb2.Request(request_id="0f0e0d0c-0b0a-4908-8706-050403020100", agency_id="hotline-national")
req.submit_report.region = "MA-04"
req.submit_report.profile.gender = enums_pb2.GENDER_FEMALE
req.submit_report.needs.append(enums_pb2.SERVICE_TYPE_CHILD_PROTECTION)
back = api_pb2.Request.FromString(req.SerializeToString())
assert back.WhichOneof("body") == "submit_report" and back.submit_report.region == "MA-04"
ev = events_pb2.Event(stream="intake", seq=7, topic="case.opened")
ev.case_opened.is_minor = True
assert events_pb2.Event.FromString(ev.SerializeToString()).case_opened.is_minor
PY
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
