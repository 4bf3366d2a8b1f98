#!/usr/bin/env bash
# Stops and removes everything scripts/platform-up.sh (and the tests and local deployer) started,
# and nothing else: our Docker services, containers, secrets, configs, networks, volumes and
# images; the swarm only if platform-up initialised it; dockerd only if platform-up started it;
# both S3 regions; the catalog PostgreSQL; the state dir. Logs stay in /var/log/kryonix-dr.
# Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/rgw.sh"
source "$here/lib/catalog.sh"
source "$here/lib/teardown.sh"

need_root
take_lock
mkdir -p "$KDR_LOG_DIR"

remove_docker_objects
leave_swarm_if_ours
stop_dockerd_if_ours
stop_regions
stop_catalog

step "State dir $KDR_STATE_DIR"
if [[ -d "$KDR_STATE_DIR" ]]; then
  rm -rf "$KDR_STATE_DIR"
  ok "removed"
else
  ok "not present"
fi
echo "platform down"
