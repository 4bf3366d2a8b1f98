#!/usr/bin/env bash
# Recovery to a point: the recovery stack with the recovery point and source region as inputs.
# pulumi: sets kryonix-dr:recovery on the recovery stack and runs `pulumi up` (runbook §2-§4).
# local: `kryonix-dr recover` against the local platform.
# Usage: scripts/ci/recover.sh --point latest|ISO|BACKUP_ID [--source-region primary|dr] [--catalog existing|rebuild|restore] [--stack NAME] [--service NAME]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
point="" source_region=primary catalog=existing stack=recovery services=()
while (($# > 0)); do
  case "$1" in
    --point) point="${2:-}"; shift 2 ;;
    --source-region) source_region="${2:-}"; shift 2 ;;
    --catalog) catalog="${2:-}"; shift 2 ;;
    --stack) stack="${2:-}"; shift 2 ;;
    --service) services+=("${2:-}"); shift 2 ;;
    *) ci_die "unknown argument '$1'" "use --point, --source-region, --catalog, --stack, --service" 2 ;;
  esac
done
[[ -n "$point" ]] || ci_die "no --point" "give --point latest, an ISO time with zone (2026-11-28T10:14:00Z) or a backup id" 2
[[ "$source_region" == primary || "$source_region" == dr ]] || ci_die "--source-region '$source_region' is not a region" "use primary or dr" 2
[[ "$catalog" =~ ^(existing|rebuild|restore)$ ]] || ci_die "--catalog '$catalog' is not a mode" "use existing, rebuild or restore" 2
ci_stack "$stack"
engine="$(ci_engine)"
cd "$ci_repo"
if [[ "$engine" == pulumi ]]; then
  ((${#services[@]} == 0)) || ci_die "--service is for the local engine" "the recovery stack's services come from its config (kryonix-dr:services)" 2
  value=$(jq -cn --arg p "$point" --arg r "$source_region" --arg c "$catalog" '{point: $p, sourceRegion: $r, catalog: $c}')
  pulumi config set --stack "$stack" kryonix-dr:recovery "$value"
  pulumi up --yes --stack "$stack" --diff --message "recover to $point from $source_region"
  { echo "### Recovery stack \`$stack\` deployed: point \`$point\`, source \`$source_region\`"; echo; echo '```'; pulumi stack output --stack "$stack" --json; echo '```'; } | ci_summary
  exit 0
fi
args=(--point "$point" --source-region "$source_region" --catalog "$catalog" --json)
for s in "${services[@]}"; do args+=(--service "$s"); done
result="$(ci_out_dir)/recover.json"
kdr recover "${args[@]}" >"$result" || ci_die "the recovery failed; its progress above names the service and the cause" "see runbook §2-§4"
jq -r '"### Recovered to \(.point) from the \(.sourceRegion) region in \(.seconds) s", "", "| service | backup | reaches |", "|---|---|---|", (.restores[] | "| \(.service) | \(.backupId) | \(.reaches) |")' "$result" | ci_summary
