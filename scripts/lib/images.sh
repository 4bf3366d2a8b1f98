# Local images. No registry is reachable, so the base is a debootstrapped Debian imported into
# Docker, and every image builds FROM it through its Dockerfile's BASE_IMAGE argument.
# A build is skipped when the image's label kryonix.dr.context-hash matches its build context.

KDR_BUILD_DIR="$KDR_STATE_DIR/build"
KDR_HASH_LABEL="kryonix.dr.context-hash"
KDR_MANAGED_LABEL="kryonix.dr.managed"

# The Debian mirror this machine's apt uses (never hard-coded: read from its sources).
apt_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    # deb822 stanzas: take the URIs of the stanza whose Suites include the plain release.
    uri="$(awk -v RS= '/(^|\n)Suites:[^\n]*(^| )bookworm( |\n|$)/ && /(^|\n)Types:[^\n]*deb( |\n|$)/' "$f" |
      sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' | head -n1)"
    [[ -n "$uri" ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    uri="$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")"
    [[ -n "$uri" ]] && { echo "$uri"; return; }
  done
  return 1
}

image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# context_hash DIR [EXTRA]: one hash over every file's path, mode and content, plus EXTRA (e.g. the base's id).
context_hash() {
  local dir="$1" extra="${2:-}"
  {
    echo "$extra"
    (cd "$dir" && find . -type f -printf '%p %m\n' | LC_ALL=C sort)
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -c1-32
}

ensure_base_image() {
  step "Base image $KDR_IMAGE_BASE (debootstrap --variant=minbase bookworm)"
  local mirror
  mirror="$(apt_mirror)" || die "no Debian bookworm mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" "" \
    "add the machine's Debian bookworm mirror to its apt sources"
  local want have
  want="$(printf 'bookworm minbase no-apt-cache %s' "$mirror" | sha256sum | cut -c1-32)"
  have="$(image_label "$KDR_IMAGE_BASE" "$KDR_HASH_LABEL")"
  if [[ "$have" == "$want" ]]; then
    ok "present"
    return
  fi
  local log="$KDR_LOG_DIR/image-base.log" rootfs="$KDR_BUILD_DIR/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >>"$log" 2>&1 ||
    die "debootstrap of bookworm from $mirror failed" "$log" "check that the mirror is reachable ('apt-get update'); then run this script again"
  # apt in the image uses the same mirror; lists and caches are not part of the image.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' --change "LABEL $KDR_HASH_LABEL=$want" \
      --change "LABEL $KDR_MANAGED_LABEL=true" --change 'ENV LANG=C.UTF-8' - "$KDR_IMAGE_BASE" >>"$log" 2>&1 ||
    die "docker import of the base image failed" "$log" "read the log"
  rm -rf "$rootfs"
  ok "imported from $mirror"
}

# build_image NAME TAG CONTEXT_DIR: legacy builder, FROM the local base.
build_image() {
  local name="$1" tag="$2" ctx="$3"
  step "Image $tag (images/$name)"
  local base_id want have log="$KDR_LOG_DIR/image-$name.log"
  base_id="$(docker image inspect --format '{{.Id}}' "$KDR_IMAGE_BASE")"
  want="$(context_hash "$ctx" "$base_id")"
  have="$(image_label "$tag" "$KDR_HASH_LABEL")"
  if [[ "$have" == "$want" ]]; then
    ok "up to date (context $want)"
    return
  fi
  DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$KDR_IMAGE_BASE" \
    --label "$KDR_HASH_LABEL=$want" --label "$KDR_MANAGED_LABEL=true" -t "$tag" "$ctx" >>"$log" 2>&1 ||
    die "docker build of $tag failed" "$log" "read the log; fix images/$name/Dockerfile and run this script again"
  # Builds leave the previous image dangling; remove only dangling images of ours.
  docker image prune -f --filter "label=$KDR_MANAGED_LABEL=true" >/dev/null 2>&1 || true
  ok "built (context $want)"
}

# The agent's build context: its Dockerfile, the bundles (agent.cjs, healthz.cjs), the migrations
# and the host's node.
stage_agent_context() {
  local ctx="$KDR_BUILD_DIR/agent" log="$KDR_LOG_DIR/image-agent.log"
  if [[ ! -f "$KDR_REPO/agent/cli.ts" ]]; then
    warn "agent/cli.ts does not exist yet, so the agent image is not built; run this script again once it does"
    return 1
  fi
  if [[ ! -d "$KDR_REPO/node_modules/esbuild" ]]; then
    die "esbuild is not installed, so the agent cannot be bundled" "" "run 'npm ci --ignore-scripts' in $KDR_REPO (scripts/test.sh and scripts/main.sh do), then this script again"
  fi
  local node_bin
  node_bin="$(command -v node)" || die "node is not on PATH" "" "install Node.js 20"
  rm -rf "$ctx"
  mkdir -p "$ctx/node" "$ctx/migrations"
  node "$KDR_REPO/scripts/build-agent.mjs" "$ctx/agent.cjs" >>"$log" 2>&1 ||
    die "bundling the agent failed" "$log" "run 'node scripts/build-agent.mjs' to see the error"
  cp "$KDR_REPO/images/agent/Dockerfile" "$ctx/Dockerfile"
  cp "$(readlink -f "$node_bin")" "$ctx/node/node"
  if compgen -G "$KDR_REPO/catalog/migrations/*.sql" >/dev/null; then
    cp "$KDR_REPO"/catalog/migrations/*.sql "$ctx/migrations/"
  else
    warn "catalog/migrations/*.sql not found; the agent image carries no migrations"
    : >"$ctx/migrations/.keep"
  fi
}

ensure_images() {
  mkdir -p "$KDR_BUILD_DIR"
  ensure_base_image
  build_image postgres "$KDR_IMAGE_POSTGRES" "$KDR_REPO/images/postgres"
  build_image redis "$KDR_IMAGE_REDIS" "$KDR_REPO/images/redis"
  build_image files "$KDR_IMAGE_FILES" "$KDR_REPO/images/files"
  build_image prometheus "$KDR_IMAGE_PROMETHEUS" "$KDR_REPO/images/prometheus"
  build_image standins "$KDR_IMAGE_STANDINS" "$KDR_REPO/images/standins"
  # Not in a subshell: a failure inside must stop the script, not read as "skipped".
  if stage_agent_context; then
    build_image agent "$KDR_IMAGE_AGENT" "$KDR_BUILD_DIR/agent"
  fi
}
