#!/usr/bin/env bash
# Stops or starts one S3 region of the local platform: its S3 server (radosgw) goes down, so
# nothing of the region answers, as in a region loss. Used by `kryonix-dr drill --disaster region`
# and to practise docs/runbooks.md §4 by hand. The region's OSD and mon stay up behind it, holding
# its objects, so `start` only has radosgw to bring back, as platform-up does.
#
#   bash scripts/region.sh stop primary     # the primary region is gone
#   bash scripts/region.sh start primary    # and back
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/docker.sh"
source "$here/lib/rgw.sh"

usage() { die "usage: bash scripts/region.sh stop|start primary|dr" "" "name an action and a region, e.g. 'bash scripts/region.sh stop primary'"; }
[[ $# -eq 2 ]] || usage
action="$1" region="$2"
[[ "$region" == primary || "$region" == dr ]] || usage
need_root
take_lock
mkdir -p "$KDR_LOG_DIR"
[[ -f "$KDR_RGW_DIR/$region/initialised" ]] || die "the $region region was never set up here" "" "run 'bash scripts/platform-up.sh' first"
case "$action" in
  stop)
    step "Stop the S3 region '$region' (radosgw, killed at once as a lost region is)"
    pidfile="$(rgw_pidfile "$region" "client.rgw.$region")"
    if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      pid="$(cat "$pidfile")"
      kill -KILL "$pid"
      wait_until 10 bash -c "! kill -0 $pid 2>/dev/null" || die "radosgw ($region, pid $pid) survived SIGKILL" "" "check 'ps -p $pid'"
    fi
    rm -f "$pidfile"
    if rgw_http_ready "$region"; then die "region $region still answers on port $(region_rgw_port "$region")" "$(rgw_log "$region" "client.rgw.$region")" "read the log"; fi
    ok "stopped: nothing answers on port $(region_rgw_port "$region"); its objects are kept for 'bash scripts/region.sh start $region'"
    ;;
  start)
    read_gateway
    ensure_region "$region"
    ;;
  *) usage ;;
esac
