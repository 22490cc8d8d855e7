#!/usr/bin/env bash
# Statistics through nrmctl only: three demonstration reports are submitted to intake, nrm-stats
# follows intake's stream, and nrmctl stats prints the table as JSON and as CSV (cells, margins
# "*", the total), refuses a dimension the measure does not have (with its field), denies an
# agency stats.readers does not name, and nrmctl stats export --csv prints the case-level data
# set with the CTDC column names. k is 1 here (nothing suppressed): test_stats checks the
# suppression.
#
# Run by CTest with NRM_TEST_PGHOST, NRM_TEST_PGPORT (the test cluster, fixture "pg"),
# NRM_BUILD_DIR and NRM_SOURCE_DIR. Creates the database t_stats_nrmctl.
set -euo pipefail
# shellcheck disable=SC2016 # jq programs in single quotes: their $ are jq variables

source "${NRM_SOURCE_DIR:?}/tests/harness/system.sh"

DB=t_stats_nrmctl
SERVICES=(intake stats)
WAIT_S=30

sys_begin stats-nrmctl

# ctl AGENCY ARGS...: nrmctl as AGENCY; stdout in $WORK/out, exit code in RC.
ctl() {
  local agency=$1
  shift
  RC=0
  "$NRMCTL" --config "$WORK/config.json" --cert "$(cert_of "$agency")" "$@" >"$WORK/out" \
    2>"$WORK/err" || RC=$?
}

sys_database "$DB"
"$NRMCTL" keygen "$WORK/keys.json"
SYS_CONFIG_FILTER='.stats.k = 1' sys_config "$DB" "$WORK/keys.json" "${SERVICES[@]}"
for i in "${!SERVICES[@]}"; do sys_start "$i" "${SERVICES[$i]}"; done
for i in "${!SERVICES[@]}"; do sys_wait_ready "$i" "${SERVICES[$i]}"; done

now=$(date +%s%3N)
for report in 01-minor-ma04 02-forced-labour-ma06 03-high-risk-ma06; do
  sed "s/\"identifiedAtMs\": \"0\"/\"identifiedAtMs\": \"$((now - 3600000))\"/" \
    "$NRM_SOURCE_DIR/deploy/demo/scenario/$report.json" >"$WORK/report.json"
  ctl police-ma-04 submit "$WORK/report.json"
  check "report $report is accepted" [ "$RC" -eq 0 ]
done

deadline=$((SECONDS + WAIT_S))
until ctl coordinator stats cases && holds '.statisticsTable.rows[0].count == "3"' "$WORK/out"; do
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 0.2
done
check "stats counts the three cases" holds '.statisticsTable.rows[0].count == "3"' "$WORK/out"

ctl coordinator stats cases --by region,gender
check "the table has its cells, margins and total" \
  holds '.statisticsTable.rows | map(.keys | join("/")) | index("MA-06/MALE") != null and
         index("MA-06/*") != null and index("*/FEMALE") != null and index("*/*") != null' \
  "$WORK/out"
check "MA-06 has two cases" \
  holds '.statisticsTable.rows[] | select(.keys == ["MA-06", "*"]) | .count == "2"' "$WORK/out"

ctl coordinator stats cases --by region --filter minor=true --csv
check "--csv prints a header and one line per row" \
  [ "$(head -1 "$WORK/out")" = "region,count,suppressed" -a "$(wc -l <"$WORK/out")" -eq 3 ]
check "--filter keeps the minor of MA-04 only" grep -qx "MA-04,1,false" "$WORK/out"
check "and the total" grep -qx '\*,1,false' "$WORK/out"

ctl coordinator stats referrals --by gender
check "a dimension the measure does not have is refused with its field" \
  [ "$RC" -eq 1 -a "$(jq -r .errorField "$WORK/out")" = "get_statistics.dimensions[0]" ]
ctl consulate-ng stats cases
check "an agency stats.readers does not name is denied" \
  [ "$RC" -eq 1 -a "$(jq -r .status "$WORK/out")" = STATUS_PERMISSION_DENIED ]
ctl coordinator stats
check "stats without a measure is a usage error" [ "$RC" -eq 2 ]

ctl coordinator stats export --csv
check "the export has the CTDC columns" \
  grep -q "^yearOfRegistration,gender,ageBroad,majorityStatus,citizenship," "$WORK/out"
check "and one line per case" [ "$(wc -l <"$WORK/out")" -eq 4 ]
check "the minor is exported as a minor in the CTDC band 9--17" grep -q ",Female,9--17,Minor,CI," \
  "$WORK/out"
check "no name in the export" [ "$(grep -ci "demo person" "$WORK/out")" -eq 0 ]
sys_end
