#!/usr/bin/env bash
# The policy gate: the stack's program planned in-process with its own config file (no cloud
# credentials, no Pulumi backend) and judged by the policy pack in policies/. Fails on a
# mandatory violation or a config error, which names the key and the fix. The workflows then run
# the real `pulumi preview --policy-pack policies` through pulumi/actions, which comments the diff.
# Usage: scripts/ci/preview.sh STACK
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stack="${1:-}"
ci_stack "$stack"
[[ -f "$(ci_stack_file "$stack")" ]] || ci_die "no $(ci_stack_file "$stack")" "add the stack's config file, or name an existing stack"
out="$(ci_out_dir)"
plan="$out/plan-${stack##*/}.json"
verdict="$out/policy-${stack##*/}.txt"
status=0
kdr plan --stack "${stack##*/}" --json --policy >"$plan" 2>"$verdict" || status=$?
if ((status != 0)) && ! grep -q '^policies: ' "$verdict"; then
  cat "$verdict" >&2
  ci_die "the program of stack '$stack' did not plan (exit $status)" "read the message above: it names the config key or resource and the fix"
fi
resources=$(jq '[.[] | select(.custom)] | length' "$plan")
{
  echo "### Policy gate: stack \`$stack\`"
  echo
  echo "$resources resources planned in-process from \`Pulumi.${stack##*/}.yaml\`."
  echo
  echo '| type | count |'
  echo '|---|---|'
  jq -r '[.[] | select(.custom) | .type] | group_by(.) | map("| `\(.[0])` | \(length) |") | .[]' "$plan"
  echo
  echo '```'
  cat "$verdict"
  echo '```'
} | ci_summary
((status == 0)) || ci_die "stack '$stack' violates a mandatory policy" "fix the resource named above in the program or its config"
