#!/bin/sh
# Stand-in for the official postgres image's docker-entrypoint.sh, with its conventions:
# PGDATA, POSTGRES_USER (default postgres), POSTGRES_DB (default: the user),
# POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (a Swarm secret), /docker-entrypoint-initdb.d/*.sh|*.sql
# run once on an empty data dir, then postgres runs as user postgres with listen_addresses='*'.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "${1:-postgres}" != postgres ]; then
  exec "$@"
fi
shift || true

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -r "$POSTGRES_PASSWORD_FILE" ] || { echo "entrypoint: POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not readable; mount the secret there" >&2; exit 1; }
    password="$(cat "$POSTGRES_PASSWORD_FILE")"
  else
    password="${POSTGRES_PASSWORD:-}"
  fi
  if [ -z "$password" ]; then
    echo "entrypoint: the data dir is empty and no password is set; give POSTGRES_PASSWORD_FILE (a secret file) or POSTGRES_PASSWORD" >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "$password" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

  # A temporary server on the socket only, for POSTGRES_DB and the init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "entrypoint: running $f"; . "$f" ;;
      *.sql) echo "entrypoint: running $f"; psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "entrypoint: initialised $PGDATA (user $user, database $db)"
fi

exec postgres -c listen_addresses='*' "$@"
