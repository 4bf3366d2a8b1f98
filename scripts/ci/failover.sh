#!/usr/bin/env bash
# Failover: the dr stack's warm standbys promoted (runbook §9b). pulumi: sets kryonix-dr:active
# true on the dr stack (and failover.force when asked) and runs `pulumi up`. local: deploys the
# local-dr stack with active true through the local deployer. The activation itself refuses while
# the primary answers, unless --force; the deployment then stops and nothing moves.
# Usage: scripts/ci/failover.sh [--stack NAME] [--force true|false]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stack=dr force=false
while (($# > 0)); do
  case "$1" in
    --stack) stack="${2:-}"; shift 2 ;;
    --force) force="${2:-}"; shift 2 ;;
    *) ci_die "unknown argument '$1'" "use --stack NAME and --force true|false" 2 ;;
  esac
done
ci_stack "$stack"
[[ "$force" == true || "$force" == false ]] || ci_die "--force '$force' is not true or false" "give --force true only when the primary answers here but not for its clients (runbook §9b)" 2
engine="$(ci_engine)"
cd "$ci_repo"
if [[ "$engine" == pulumi ]]; then
  pulumi config set --stack "$stack" kryonix-dr:active true
  if [[ "$force" == true ]]; then
    pulumi config set --stack "$stack" --path kryonix-dr:failover.force true
  fi
  pulumi up --yes --stack "$stack" --diff --message "failover: kryonix-dr:active true (force $force)"
  { echo "### Failed over: \`$stack\` is the active region"; echo; echo '```'; pulumi stack output --stack "$stack" --json; echo '```'; } | ci_summary
  exit 0
fi
name="${stack##*/}"
config="$(mktemp)"
trap 'rm -f "$config"' EXIT
if [[ "$force" == true ]]; then
  failover="$(node -e 'const y=require("js-yaml");const f=process.argv[1];const c=y.load(require("fs").readFileSync(f,"utf8")).config["kryonix-dr:failover"]||{};process.stdout.write(JSON.stringify({...c,force:true}))' "$(ci_stack_file "$name")")"
  printf '{"active": {"value": true}, "failover": {"value": %s}}\n' "$failover" >"$config"
else
  printf '{"active": {"value": true}}\n' >"$config"
fi
out="$(kdr deploy --stack "$name" --platform --config-file "$config")" ||
  ci_die "the failover of '$name' stopped; the activation's message above says why (a primary that still answers is refused without --force)" "see runbook §9b"
{ echo "### Failed over: \`$name\` is the active region (local deployer)"; echo; echo '```'; echo "$out"; echo '```'; } | ci_summary
