# Debian packages the platform and the tests need. Installs only what is missing.

KDR_PACKAGES=(
  docker.io iptables debootstrap
  redis-server redis-tools
  restic age zstd
  ceph-mon ceph-osd radosgw ceph-common
  postgresql-15 postgresql-client-15
  jq curl uuid-runtime iproute2 util-linux procps ca-certificates tar
)

missing_packages() {
  local p status
  for p in "${KDR_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == installed ]] || printf '%s\n' "$p"
  done
}

ensure_packages() {
  step "Debian packages (${#KDR_PACKAGES[@]} checked with dpkg-query)"
  local missing log="$KDR_LOG_DIR/apt.log"
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    ok "all present"
    return
  fi
  printf '    installing: %s\n' "${missing[*]}"
  {
    echo "--- $(date -u +%FT%TZ) installing ${missing[*]}"
    apt-get update
    # No recommends: ceph's recommends pull in a large set of python tools the platform never runs.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  } >>"$log" 2>&1 || die "apt-get could not install: ${missing[*]}" "$log" \
    "check that Debian's apt mirror is reachable ('apt-get update'), then run this script again"
  ok "installed ${missing[*]}"
}
