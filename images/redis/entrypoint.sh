#!/bin/sh
# Starts redis-server with --dir /data and RDB on; extra arguments are passed to redis-server.
set -eu

if [ "$(id -u)" = 0 ]; then
  chown redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

conf="$(mktemp /tmp/redis-XXXXXX.conf)"
chmod 0600 "$conf"
{
  echo "dir /data"
  echo "bind * -::*"
  echo "protected-mode no"
  echo "save 3600 1 300 100 60 10000"
  echo "dbfilename dump.rdb"
  echo "appendonly no"
  # A backup is a replica's sync (redis-cli --rdb): fork at once instead of waiting 5 s for more
  # replicas, so each snapshot takes 5 s less and its recovery point's span is 5 s narrower.
  echo "repl-diskless-sync-delay 0"
} >"$conf"
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  [ -r "$REDIS_PASSWORD_FILE" ] || { echo "entrypoint: REDIS_PASSWORD_FILE=$REDIS_PASSWORD_FILE is not readable; mount the secret there" >&2; exit 1; }
  pw="$(cat "$REDIS_PASSWORD_FILE")"
  # masterauth too: a replica (the DR standby, --replicaof) authenticates to its primary with it.
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$pw" "$pw" >>"$conf"
fi
exec redis-server "$conf" "$@"
