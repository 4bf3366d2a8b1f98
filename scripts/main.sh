#!/usr/bin/env bash
# The main job on a machine from nothing: npm dependencies, the local platform, then the DR drill
# of the local stack (arguments are passed to `kryonix-dr drill`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
source "$here/lib/common.sh"
source "$here/lib/npm.sh"
cd "$repo"

ensure_node_modules "$repo"
bash scripts/platform-up.sh
exec node bin/kryonix-dr.mjs drill "$@"
