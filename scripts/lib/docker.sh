# Docker engine and single-node swarm.

ensure_dockerd() {
  step "Docker engine"
  if docker info >/dev/null 2>&1; then
    if [[ -f "$KDR_OWNED_DIR/dockerd" ]]; then ok "running (ours, pid $(cat "$KDR_OWNED_DIR/dockerd.pid" 2>/dev/null || echo '?'))"
    else ok "already running (not ours; teardown will leave it running)"; fi
    return
  fi
  local log="$KDR_LOG_DIR/dockerd.log"
  # setsid: the engine must outlive this script and the terminal that ran it.
  setsid nohup dockerd >>"$log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$KDR_OWNED_DIR/dockerd.pid"
  : >"$KDR_OWNED_DIR/dockerd"
  wait_until 60 docker info || die "dockerd did not become ready within 60 s" "$log" \
    "read the log; a stale /var/run/docker.pid or a missing iptables are the usual causes"
  ok "started dockerd (pid $pid, log $log)"
}

ensure_swarm() {
  step "Single-node swarm"
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  if [[ "$state" == active ]]; then
    ok "already active"
    return
  fi
  local log="$KDR_LOG_DIR/swarm.log"
  docker swarm init --advertise-addr 127.0.0.1 >>"$log" 2>&1 || die "docker swarm init failed" "$log" \
    "if the node is in a broken swarm state, run 'docker swarm leave --force' and run this script again"
  : >"$KDR_OWNED_DIR/swarm"
  ok "initialised (advertise address 127.0.0.1)"
}

# Sets KDR_GATEWAY_IP: the docker_gwbridge gateway, the address at which Swarm containers reach host servers.
read_gateway() {
  step "docker_gwbridge gateway address"
  local i
  for i in $(seq 1 40); do
    KDR_GATEWAY_IP="$(docker network inspect docker_gwbridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}' 2>/dev/null || true)"
    [[ -n "$KDR_GATEWAY_IP" ]] && break
    sleep 0.5
  done
  [[ -n "$KDR_GATEWAY_IP" ]] || die "docker_gwbridge has no gateway address" "" \
    "the swarm should create docker_gwbridge; check 'docker network ls' and 'docker info'"
  # The address must be on a host interface, or servers cannot bind it.
  wait_until 20 bash -c "ip -o addr show | grep -q ' $KDR_GATEWAY_IP/'" || die \
    "gateway $KDR_GATEWAY_IP is not assigned to any host interface" "" "check 'ip addr show docker_gwbridge'"
  KDR_GWBRIDGE_SUBNET="$(docker network inspect docker_gwbridge --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}')"
  KDR_BRIDGE_SUBNET="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}' 2>/dev/null || true)"
  ok "$KDR_GATEWAY_IP (docker_gwbridge $KDR_GWBRIDGE_SUBNET${KDR_BRIDGE_SUBNET:+, bridge $KDR_BRIDGE_SUBNET})"
}
