# What platform-down removes: only what platform-up, the tests and the local deployer created.
# Docker objects are ours when labelled kryonix.dr.managed=true or named with the prefix kdr or
# kryonix-dr; images when in the kryonix-dr/ repository or labelled.

KDR_NAME_RE='^(kdr|kryonix-dr)'

# ours_by KIND LS_ARGS...: ids of objects of that kind that carry our label or our name prefix.
docker_ours() {
  local kind="$1"
  {
    docker "$kind" ls -q --filter "label=kryonix.dr.managed=true" 2>/dev/null || true
    docker "$kind" ls --format '{{.ID}} {{.Name}}' 2>/dev/null | awk -v re="$KDR_NAME_RE" '$2 ~ re { print $1 }' || true
    # A service running one of our images is ours whatever its name.
    if [[ "$kind" == service ]]; then
      docker service ls --format '{{.ID}} {{.Image}}' 2>/dev/null | awk '$2 ~ /^kryonix-dr\// { print $1 }' || true
    fi
  } | sort -u
}

our_containers() {
  {
    docker ps -aq --filter "label=kryonix.dr.managed=true"
    docker ps -a --format '{{.ID}} {{.Names}}' | awk -v re="$KDR_NAME_RE" '$2 ~ re { print $1 }'
    # Swarm task containers carry their service's name; containers run from our images are ours too.
    docker ps -a --format '{{.ID}} {{.Label "com.docker.swarm.service.name"}}' | awk -v re="$KDR_NAME_RE" '$2 ~ re { print $1 }'
    local img
    for img in $(our_images); do docker ps -aq --filter "ancestor=$img"; done
  } 2>/dev/null | sort -u
}

our_images() {
  {
    docker images --format '{{.Repository}}:{{.Tag}}' 'kryonix-dr/*' | grep -v '<none>'
    docker images -q --filter "label=kryonix.dr.managed=true"
  } 2>/dev/null | sort -u
}

# Anonymous volumes (from VOLUME in our images) hang off our containers, not off a name.
anonymous_volumes_of() {
  local c
  for c in "$@"; do
    docker inspect --format '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{"\n"}}{{end}}{{end}}' "$c" 2>/dev/null || true
  done | grep -E '^[0-9a-f]{64}$' | sort -u || true
}

remove_docker_objects() {
  step "Docker objects of ours (label kryonix.dr.managed=true, names kdr*/kryonix-dr*, images kryonix-dr/*)"
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    ok "no Docker engine running: nothing to remove"
    return
  fi
  local n_services=0 n_containers=0 n_secrets=0 n_configs=0 n_networks=0 n_volumes=0 n_images=0 ids=() anon=()
  local swarm
  swarm="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  if [[ "$swarm" == active ]]; then
    mapfile -t ids < <(docker_ours service)
    if ((${#ids[@]})); then
      local names
      names="$(docker service inspect --format '{{.Spec.Name}}' "${ids[@]}" 2>/dev/null | paste -sd'|' || true)"
      # Swarm removes task containers itself, so note their anonymous volumes first.
      mapfile -t anon < <(anonymous_volumes_of $(docker ps -a --format '{{.ID}} {{.Label "com.docker.swarm.service.name"}}' |
        awk -v re="^($names)\$" '$2 ~ re { print $1 }'))
      docker service rm "${ids[@]}" >/dev/null 2>&1 || true
      n_services=${#ids[@]}
      # Task containers go away asynchronously after their service is removed; whatever is
      # left after the wait is removed with the other containers below.
      local deadline=$((SECONDS + 30))
      while ((SECONDS < deadline)) && [[ -n "$names" ]] &&
        docker ps -a --format '{{.Label "com.docker.swarm.service.name"}}' | grep -qxE "$names"; do
        sleep 1
      done
    fi
  fi
  mapfile -t ids < <(our_containers)
  mapfile -t -O "${#anon[@]}" anon < <(anonymous_volumes_of "${ids[@]}")
  if ((${#ids[@]})); then docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true; n_containers=${#ids[@]}; fi
  if [[ "$swarm" == active ]]; then
    mapfile -t ids < <(docker_ours secret)
    if ((${#ids[@]})); then docker secret rm "${ids[@]}" >/dev/null 2>&1 || true; n_secrets=${#ids[@]}; fi
    mapfile -t ids < <(docker_ours config)
    if ((${#ids[@]})); then docker config rm "${ids[@]}" >/dev/null 2>&1 || true; n_configs=${#ids[@]}; fi
  fi
  mapfile -t ids < <(docker_ours network)
  if ((${#ids[@]})); then
    # Overlay networks can stay "in use" for a moment after their last task has gone.
    local attempt
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
      docker network rm "${ids[@]}" >/dev/null 2>&1 && break
      mapfile -t ids < <(docker_ours network)
      ((${#ids[@]})) || break
      sleep 2
    done
    n_networks=${#ids[@]}
  fi
  mapfile -t ids < <({ docker volume ls -q --filter "label=kryonix.dr.managed=true"; docker volume ls -q | grep -E "$KDR_NAME_RE"; printf '%s\n' "${anon[@]}"; } 2>/dev/null | grep . | sort -u)
  if ((${#ids[@]})); then
    local v
    for v in "${ids[@]}"; do docker volume rm -f "$v" >/dev/null 2>&1 && n_volumes=$((n_volumes + 1)); done
  fi
  mapfile -t ids < <(our_images)
  if ((${#ids[@]})); then docker rmi -f "${ids[@]}" >/dev/null 2>&1 || true; n_images=${#ids[@]}; fi
  ok "removed $n_services services, $n_containers containers, $n_secrets secrets, $n_configs configs, $n_networks networks, $n_volumes volumes, $n_images images"
}

leave_swarm_if_ours() {
  step "Swarm"
  if [[ ! -f "$KDR_OWNED_DIR/swarm" ]]; then
    ok "not initialised by platform-up: left as it is"
    return
  fi
  if docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -qx active; then
    docker swarm leave --force >>"$KDR_LOG_DIR/swarm.log" 2>&1 || die "docker swarm leave failed" "$KDR_LOG_DIR/swarm.log" "read the log"
    ok "left (platform-up had initialised it)"
  else
    ok "already inactive"
  fi
  rm -f "$KDR_OWNED_DIR/swarm"
}

stop_dockerd_if_ours() {
  step "Docker engine"
  if [[ ! -f "$KDR_OWNED_DIR/dockerd" ]]; then
    ok "not started by platform-up: left running"
    return
  fi
  stop_pidfile "$KDR_OWNED_DIR/dockerd.pid" dockerd 60
  rm -f "$KDR_OWNED_DIR/dockerd"
  ok "stopped (platform-up had started it)"
}

# Our Ceph daemons, found by their conf path under the state dir even if a pid file is gone.
ceph_pids_of_region() {
  local conf="$KDR_RGW_DIR/$1/ceph.conf" p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-c $conf " && echo "${p#/proc/}"
  done
  return 0
}

stop_regions() {
  local r
  for r in primary dr; do
    step "S3 region '$r' (radosgw, then OSD, then mon)"
    if [[ ! -d "$KDR_RGW_DIR/$r" ]]; then ok "not present"; continue; fi
    stop_region "$r"
    local left
    left="$(ceph_pids_of_region "$r" | tr '\n' ' ')"
    if [[ -n "${left// /}" ]]; then
      warn "Ceph processes of region $r without pid files: $left; stopping them"
      # shellcheck disable=SC2086
      kill -TERM $left 2>/dev/null || true
      sleep 3
      # shellcheck disable=SC2086
      kill -KILL $left 2>/dev/null || true
    fi
    ok "stopped"
  done
}

stop_catalog() {
  step "Catalog PostgreSQL"
  if [[ ! -f "$KDR_CATALOG_DATA/PG_VERSION" ]]; then ok "not present"; return; fi
  if catalog_running; then
    as_postgres "$KDR_PG_BIN/pg_ctl" -D "$KDR_CATALOG_DATA" -m fast -w -t 60 stop >>"$KDR_LOG_DIR/catalog-postgres.log" 2>&1 ||
      die "the catalog PostgreSQL did not stop" "$KDR_LOG_DIR/catalog-postgres.log" "read the log"
    ok "stopped"
  else
    ok "not running"
  fi
}
