#!/bin/sh
# kdr-standin <kind> [data dir]: a stand-in that keeps its data as the real service does and
# changes it all the time, so a backup always races live writes:
#   grafana    /var/lib/grafana/grafana.db, a SQLite database (rollback journal, Grafana's
#              default) taking a transaction every 500 ms
#   nextcloud  /var/www/html: config/config.php with its 'maintenance' switch and a data/ file
#              tree that gains a file every second, except in maintenance mode (as Nextcloud)
#   traefik    /certs/acme.json (mode 0600), rewritten whole every 2 s as Traefik does
#   keycloak   /opt/keycloak/data: an H2-style database file appended to every second
#   minio      /data: .minio.sys/format.json and buckets of objects (part.1 + xl.meta) written
#              every second
set -eu
kind="${1:-files}"
log() { echo "standin $kind: $*"; }
# PID 1 in its container: without a trap, SIGTERM would be ignored until the stop grace period.
trap 'log "stopping"; exit 0' TERM INT
n=0
case "$kind" in
grafana)
  dir="${2:-/var/lib/grafana}"; mkdir -p "$dir"; db="$dir/grafana.db"
  sqlite3 "$db" "PRAGMA busy_timeout=5000; CREATE TABLE IF NOT EXISTS dashboard_version (id INTEGER PRIMARY KEY, dashboard_id INTEGER NOT NULL, version INTEGER NOT NULL, created TEXT NOT NULL, data TEXT NOT NULL);"
  log "writing to $db"
  while :; do
    n=$((n + 1))
    sqlite3 "$db" "PRAGMA busy_timeout=5000; BEGIN; INSERT INTO dashboard_version (dashboard_id, version, created, data) VALUES ($((n % 7)), $n, strftime('%Y-%m-%dT%H:%M:%fZ','now'), hex(randomblob(512))); UPDATE dashboard_version SET data = hex(randomblob(512)) WHERE id = (abs(random()) % $n) + 1; COMMIT;" || log "write $n failed"
    sleep 0.5
  done ;;
nextcloud)
  dir="${2:-/var/www/html}"; mkdir -p "$dir/config" "$dir/data/admin/files"
  [ -f "$dir/config/config.php" ] || printf "<?php\n\$CONFIG = array (\n  'instanceid' => 'kdrstandin',\n  'maintenance' => false,\n);\n" > "$dir/config/config.php"
  log "writing to $dir/data (paused while config.php says maintenance => true)"
  while :; do
    if grep -q "'maintenance' => true" "$dir/config/config.php"; then sleep 1; continue; fi
    n=$((n + 1))
    head -c 4096 /dev/urandom > "$dir/data/admin/files/.upload-$n" && mv "$dir/data/admin/files/.upload-$n" "$dir/data/admin/files/file-$(date +%s)-$n.bin"
    sleep 1
  done ;;
traefik)
  dir="${2:-/certs}"; mkdir -p "$dir"
  log "rewriting $dir/acme.json"
  while :; do
    n=$((n + 1))
    umask 077
    printf '{"letsencrypt":{"Account":{"Email":"ops@kryonix.internal"},"Certificates":[{"domain":{"main":"kryonix.internal"},"certificate":"%s","key":"%s","Store":"default"}]},"renewal":%d}\n' \
      "$(head -c 1200 /dev/urandom | base64 -w0)" "$(head -c 600 /dev/urandom | base64 -w0)" "$n" > "$dir/.acme.json.tmp"
    mv "$dir/.acme.json.tmp" "$dir/acme.json"
    sleep 2
  done ;;
keycloak)
  dir="${2:-/opt/keycloak/data}"; mkdir -p "$dir/h2" "$dir/tmp"
  log "appending to $dir/h2/keycloakdb.mv.db"
  while :; do
    head -c 2048 /dev/urandom >> "$dir/h2/keycloakdb.mv.db"
    sleep 1
  done ;;
minio)
  dir="${2:-/data}"; mkdir -p "$dir/.minio.sys" "$dir/kryonix-uploads"
  [ -f "$dir/.minio.sys/format.json" ] || printf '{"version":"1","format":"xl-single","id":"kdr-standin","xl":{"version":"3","this":"disk1","sets":[["disk1"]],"distributionAlgo":"SIPMOD+PARITY"}}\n' > "$dir/.minio.sys/format.json"
  log "writing objects under $dir/kryonix-uploads"
  while :; do
    n=$((n + 1)); o="$dir/kryonix-uploads/object-$(date +%s)-$n"
    mkdir -p "$o.tmp" && head -c 8192 /dev/urandom > "$o.tmp/part.1" && printf 'XL2 %s\n' "$n" > "$o.tmp/xl.meta" && mv "$o.tmp" "$o"
    sleep 1
  done ;;
files)
  dir="${2:-/data}"; mkdir -p "$dir"; log "idle; $dir holds what is written to it"
  while :; do sleep 3600; done ;;
*)
  echo "kdr-standin: unknown kind '$kind': use grafana, nextcloud, traefik, keycloak, minio or files" >&2; exit 2 ;;
esac
