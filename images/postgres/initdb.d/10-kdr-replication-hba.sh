#!/bin/sh
# Lets a backup sidecar stream WAL over the network (pg_basebackup, pg_receivewal need the
# "replication" keyword; "all" in pg_hba does not cover it). Runs once, after initdb.
set -eu
grep -q '^host[[:space:]]\+replication[[:space:]]\+all[[:space:]]\+all[[:space:]]' "$PGDATA/pg_hba.conf" ||
  echo 'host replication all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
