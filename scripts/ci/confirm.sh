#!/usr/bin/env bash
# A manual workflow that changes production runs only when the person typed the stack's name.
# Usage: scripts/ci/confirm.sh EXPECTED TYPED
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
expected="${1:-}" typed="${2:-}"
[[ -n "$expected" ]] || ci_die "no stack name to confirm against" "call it as confirm.sh EXPECTED TYPED" 2
if [[ "$typed" != "$expected" ]]; then
  ci_die "the confirmation '$typed' is not the stack name '$expected': nothing was changed" "run the workflow again and type $expected in the confirm field"
fi
echo "confirmed: $expected"
