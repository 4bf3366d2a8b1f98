#!/usr/bin/env bash
# The restore drill on a runner that holds the local platform (scripts/platform-up.sh): deploy,
# write, back up, lose (services, or the whole primary region with --disaster region, which
# restores from the DR replicas), recover, verify every write. Arguments go to `kryonix-dr drill`.
# The JSON report is kept in $KDR_CI_OUT_DIR/drill.json; the summary goes to the job summary.
# Usage: scripts/ci/drill.sh [--disaster region] [--keep] [--point-in-time ISO] ...
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ci_repo"
report="$(ci_out_dir)/drill.json"
status=0
kdr drill "$@" --json >"$report" || status=$?
[[ -s "$report" ]] || ci_die "the drill printed no report (exit $status)" "read its progress above; 'bash scripts/platform-up.sh' brings the platform up"
jq -r '
  "### Restore drill: \(if .ok then "PASSED" else "FAILED" end) (disaster: \(.disaster), point: \(.target))",
  "",
  "RTO \(.rto.seconds) s against \(.rto.targetSeconds) s: \(if .rto.met then "met" else "MISSED" end).",
  "",
  "| service | engine | writes back | data loss (s) | RPO met | recovery (s) | RTO target (s) | backup |",
  "|---|---|---|---|---|---|---|---|",
  (.services[] | "| \(.service) | \(.engine) | \(.restored)/\(.expected) | \(.dataLossSeconds // "-") | \(.rpoMet) | \(.recoverySeconds // "-") | \(.rtoTargetSeconds // "-") | \(.restoredFromBackup // "-") |"),
  "",
  (if (.failures | length) > 0 then "Failures:", (.failures[] | "- \(.)") else "No failures." end)
' "$report" | ci_summary
((status == 0)) || ci_die "the drill failed (exit $status); its failures are listed above and in $report" "follow runbook §5; the progress log names the phase that failed"
