# Debian packages the platform and the tests need. Installs only what is missing.

KDR_PACKAGES=(
  docker.io iptables debootstrap
  redis-server redis-tools
  restic age zstd
  ceph-mon ceph-osd radosgw ceph-common
  postgresql-15 postgresql-client-15
  jq curl uuid-runtime iproute2 util-linux procps ca-certificates tar time
  chromium
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

# promtool checks and unit-tests the alert rules the program generates. It comes from Debian's
# prometheus package, unpacked rather than installed: installing it would start a Prometheus
# server on this machine.
KDR_PROMTOOL="$KDR_STATE_DIR/tools/promtool"

ensure_promtool() {
  step "promtool (unpacked from Debian's prometheus package; no server is installed)"
  if [[ -x "$KDR_PROMTOOL" ]] && "$KDR_PROMTOOL" --version >/dev/null 2>&1; then
    ok "present: $("$KDR_PROMTOOL" --version 2>&1 | head -n 1)"
    return
  fi
  local tmp log="$KDR_LOG_DIR/apt.log"
  tmp="$(mktemp -d)"
  # apt downloads as its own user (_apt), which must be able to write here.
  chmod 0777 "$tmp"
  if ! (cd "$tmp" && apt-get download prometheus) >>"$log" 2>&1; then
    apt-get update >>"$log" 2>&1 || true
    (cd "$tmp" && apt-get download prometheus) >>"$log" 2>&1 || {
      rm -rf "$tmp"
      die "could not download Debian's prometheus package (for promtool)" "$log" \
        "check that Debian's apt mirror is reachable ('apt-get update'), then run this script again"
    }
  fi
  mkdir -p "$(dirname "$KDR_PROMTOOL")"
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -O ./usr/bin/promtool >"$KDR_PROMTOOL.tmp"
  rm -rf "$tmp"
  chmod 0755 "$KDR_PROMTOOL.tmp"
  "$KDR_PROMTOOL.tmp" --version >/dev/null 2>&1 || die "the unpacked promtool does not run" "" "remove $KDR_PROMTOOL.tmp and run this script again"
  mv "$KDR_PROMTOOL.tmp" "$KDR_PROMTOOL"
  ok "$("$KDR_PROMTOOL" --version 2>&1 | head -n 1)"
}
