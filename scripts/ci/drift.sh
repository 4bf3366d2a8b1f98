#!/usr/bin/env bash
# Drift check: fails loudly when a resource was changed outside the program.
# pulumi: `pulumi refresh --preview-only --expect-no-changes`. local: `kryonix-dr drift`.
# Usage: scripts/ci/drift.sh STACK
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stack="${1:-}"
ci_stack "$stack"
engine="$(ci_engine)"
cd "$ci_repo"
report="$(ci_out_dir)/drift-${stack##*/}.txt"
status=0
if [[ "$engine" == pulumi ]]; then
  pulumi refresh --preview-only --expect-no-changes --diff --stack "$stack" >"$report" 2>&1 || status=$?
else
  kdr drift --stack "${stack##*/}" >"$report" 2>&1 || status=$?
fi
{
  if ((status == 0)); then echo "### No drift on \`$stack\`"; else echo "### DRIFT on \`$stack\`"; fi
  echo
  echo '```'
  tail -n 60 "$report"
  echo '```'
} | ci_summary
((status == 0)) || ci_die "stack '$stack' has drifted from the program (or the check could not run); the report is above and in $report" "undo the change outside the program, or put it in the program and deploy"
