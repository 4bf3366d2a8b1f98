# Publishes the platform's facts in the schema of local/platform.ts.

KDR_IMAGE_BASE="kryonix-dr/debian-base:bookworm"
KDR_IMAGE_AGENT="kryonix-dr/agent:local"
KDR_IMAGE_POSTGRES="kryonix-dr/postgres:15"
KDR_IMAGE_REDIS="kryonix-dr/redis:7"
KDR_IMAGE_FILES="kryonix-dr/files:local"
KDR_IMAGE_PROMETHEUS="kryonix-dr/prometheus:local"
KDR_IMAGE_STANDINS="kryonix-dr/standins:local"

region_json() {
  local r="$1" port
  port="$(region_rgw_port "$r")"
  jq -n --arg name "$r" --arg endpoint "http://$KDR_GATEWAY_IP:$port" --arg loop "http://127.0.0.1:$port" \
    --arg ak "$(access_key "rgw-$r-access-key")" --arg sk "$(secret "rgw-$r-secret-key" 30)" \
    --argjson lc "$KDR_LC_DEBUG_INTERVAL" \
    '{name: $name, endpoint: $endpoint, loopbackEndpoint: $loop, accessKey: $ak, secretKey: $sk, lcDebugIntervalSeconds: $lc}'
}

write_platform_json() {
  step "Platform facts ($KDR_PLATFORM_FILE)"
  local tmp="$KDR_PLATFORM_FILE.tmp"
  (umask 077
    jq -n --arg gw "$KDR_GATEWAY_IP" \
      --argjson primary "$(region_json primary)" --argjson dr "$(region_json dr)" \
      --arg chost "$KDR_GATEWAY_IP" --argjson cport "$KDR_CATALOG_PORT" --arg cuser "$KDR_CATALOG_USER" \
      --arg cpw "$(secret catalog-postgres-password 24)" \
      --arg base "$KDR_IMAGE_BASE" --arg agent "$KDR_IMAGE_AGENT" --arg pg "$KDR_IMAGE_POSTGRES" \
      --arg redis "$KDR_IMAGE_REDIS" --arg files "$KDR_IMAGE_FILES" --arg prometheus "$KDR_IMAGE_PROMETHEUS" --arg standins "$KDR_IMAGE_STANDINS" --arg promtool "$KDR_PROMTOOL" \
      '{gatewayIp: $gw, regions: {primary: $primary, dr: $dr},
        catalog: {host: $chost, port: $cport, user: $cuser, password: $cpw},
        images: {base: $base, agent: $agent, postgres: $pg, redis: $redis, files: $files, prometheus: $prometheus, standins: $standins},
        tools: {promtool: $promtool}}' >"$tmp")
  if cmp -s "$tmp" "$KDR_PLATFORM_FILE"; then
    rm -f "$tmp"
    ok "unchanged"
  else
    chmod 0600 "$tmp"
    mv "$tmp" "$KDR_PLATFORM_FILE"
    ok "written (mode 0600)"
  fi
}
