#!/usr/bin/env bash
# Deploys a stack. pulumi: `pulumi up` with the policy pack. local: the local deployer, which
# updates a deployed stack as `pulumi up` does but has no refresh: a stack changed outside the
# program (drift) is refused, not overwritten blindly.
# Usage: scripts/ci/deploy.sh STACK
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stack="${1:-}"
ci_stack "$stack"
engine="$(ci_engine)"
cd "$ci_repo"
if [[ "$engine" == pulumi ]]; then
  pulumi up --yes --stack "$stack" --policy-pack policies --diff --message "deploy ${GITHUB_SHA:-$(git rev-parse --short HEAD)}"
  { echo "### Deployed \`$stack\` (pulumi up)"; echo; echo '```'; pulumi stack output --stack "$stack" --json; echo '```'; } | ci_summary
  exit 0
fi
name="${stack##*/}"
if kdr drift --stack "$name" >"$(ci_out_dir)/drift-$name.txt" 2>&1; then
  out="$(kdr deploy --stack "$name" --platform)" || ci_die "updating stack '$name' failed" "read the deployer's log above; the state file keeps what exists, so fix the cause and run this again"
  { echo "### \`$name\` updated in place (local deployer)"; echo; echo '```'; echo "$out"; echo '```'; } | ci_summary
  exit 0
fi
if grep -q "has no local deployment" "$(ci_out_dir)/drift-$name.txt"; then
  kdr deploy --stack "$name" --platform | ci_summary
  exit 0
fi
cat "$(ci_out_dir)/drift-$name.txt" >&2
ci_die "stack '$name' is deployed but differs from what was deployed, or its state is not usable" "the local deployer does not reconcile changes made outside the program: undo them (the drift above names each), or kryonix-dr destroy --stack $name, then run this again"
