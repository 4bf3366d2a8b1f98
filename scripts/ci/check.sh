#!/usr/bin/env bash
# The pull request gate without infrastructure: the type check and the tests that need no
# platform (unit, components, policies). Arguments narrow the vitest run (files or filters).
# Usage: scripts/ci/check.sh [vitest filters...]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ci_repo"
[[ -d node_modules ]] || ci_die "node_modules is missing" "run 'npm ci' first (the workflows do it before this step)"
echo "==> type check"
npx tsc --noEmit -p .
echo "==> tests without infrastructure"
if (($# > 0)); then npx vitest run "$@"; else npx vitest run test/unit components policies; fi
echo "check passed" | ci_summary
