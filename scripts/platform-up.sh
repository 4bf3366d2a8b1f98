#!/usr/bin/env bash
# Brings up the local platform from nothing, or checks that it is up: Debian packages, the Docker
# engine and a single-node swarm, two S3 regions (Ceph RGW), the catalog PostgreSQL, the local
# images, and /var/lib/kryonix-dr/platform.json (schema: local/platform.ts).
# Idempotent: on a ready machine every step only checks and reports.
#
# Environment: KDR_LC_DEBUG_INTERVAL (seconds per lifecycle "day", default 10),
# KDR_SKIP_IMAGES=1 (skip the image builds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KDR_REPO="$(cd "$here/.." && pwd)"
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
source "$here/lib/packages.sh"
source "$here/lib/docker.sh"
source "$here/lib/rgw.sh"
source "$here/lib/catalog.sh"
source "$here/lib/platform-json.sh"
source "$here/lib/images.sh"

started=$SECONDS
need_root
take_lock
ensure_dirs

ensure_packages
ensure_promtool
ensure_dockerd
ensure_swarm
read_gateway
ensure_region primary
ensure_region dr
ensure_catalog
write_platform_json
if [[ "${KDR_SKIP_IMAGES:-0}" != 1 ]]; then
  ensure_images
fi

printf 'platform up in %ss: facts in %s\n' "$((SECONDS - started))" "$KDR_PLATFORM_FILE"
