# Shared by scripts/ci/*.sh (sourced, never run). Every CI step that is not a marketplace action is
# one of these scripts, so GitHub Actions, GitLab CI or a shell run the same, tested commands.
#
# KDR_CI_ENGINE chooses what a deploy-type script drives:
#   pulumi  the real engine: the pulumi CLI with its state backend and secrets provider (the
#           workflows install it with pulumi/actions and log in through PULUMI_ACCESS_TOKEN or
#           PULUMI_BACKEND_URL);
#   local   the in-process program and the local deployer, against the local platform
#           (scripts/platform-up.sh): what the test suite runs.
# Unset: pulumi when the pulumi CLI is on PATH, else local.
set -euo pipefail

ci_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

kdr() { node "$ci_repo/bin/kryonix-dr.mjs" "$@"; }

# ci_die WHAT FIX [CODE]: one line saying what is wrong, one saying what to do.
ci_die() {
  printf 'FAILED: %s\n' "$1" >&2
  [[ -n "${2:-}" ]] && printf 'to do:  %s\n' "$2" >&2
  exit "${3:-1}"
}

ci_engine() {
  local engine="${KDR_CI_ENGINE:-}"
  if [[ -z "$engine" ]]; then
    if command -v pulumi >/dev/null 2>&1; then engine=pulumi; else engine=local; fi
  fi
  case "$engine" in
    pulumi)
      command -v pulumi >/dev/null 2>&1 || ci_die "KDR_CI_ENGINE=pulumi but the pulumi CLI is not on PATH" "install it (the workflows use pulumi/actions without a command), or set KDR_CI_ENGINE=local for the local platform" 2
      ;;
    local) ;;
    *) ci_die "KDR_CI_ENGINE='$engine' is not an engine" "set it to pulumi or local" 2 ;;
  esac
  printf '%s' "$engine"
}

# ci_stack NAME: a stack name as Pulumi takes it (stack, or org/project/stack).
ci_stack() {
  [[ "${1:-}" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*){0,2}$ ]] ||
    ci_die "'${1:-}' is not a stack name" "give one like prod, dr, recovery, local or org/kryonix-dr/prod" 2
}

# The stack's config file name: the last part of a fully qualified name.
ci_stack_file() { printf '%s/Pulumi.%s.yaml' "$ci_repo" "${1##*/}"; }

# ci_summary: markdown from stdin to the job summary (GitHub's GITHUB_STEP_SUMMARY when set; the
# same text to stdout always, so any CI log shows it).
ci_summary() {
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then tee -a "$GITHUB_STEP_SUMMARY"; else cat; fi
}

# Where a script leaves its machine-readable result (JSON), for later steps or artifacts.
ci_out_dir() {
  local dir="${KDR_CI_OUT_DIR:-$ci_repo/.cache/ci}"
  mkdir -p "$dir"
  printf '%s' "$dir"
}
