# npm dependencies for scripts/test.sh and scripts/main.sh.

# Installs node_modules when missing or older than package-lock.json (no install scripts:
# @pulumi/command's only tries to download a plugin, which is not needed and not reachable).
ensure_node_modules() {
  local repo="$1"
  step "npm dependencies"
  command -v node >/dev/null && command -v npm >/dev/null ||
    die "node and npm are not on PATH" "" "install Node.js 20 (with npm), then run this again"
  local stamp="$repo/node_modules/.package-lock.json"
  if [[ -f "$stamp" && ! "$repo/package-lock.json" -nt "$stamp" ]]; then
    ok "node_modules up to date"
    return
  fi
  local log="$KDR_LOG_DIR/npm-ci.log"
  mkdir -p "$KDR_LOG_DIR"
  (cd "$repo" && flock /tmp/kryonix-dr-npm.lock npm ci --ignore-scripts --no-audit --no-fund) >>"$log" 2>&1 ||
    die "npm ci failed" "$log" "check that the npm registry is reachable, then run this again"
  ok "npm ci done"
}
