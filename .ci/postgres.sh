#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1 for the store tests (installing the Debian
# package when it is missing) and prints its URL. Stop it with: pg_ctl -D "$DIR/data" stop.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=${BLOCKPROBE_PG_PORT:-55432}
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
# Already running (a previous run of this script): reuse it.
if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  echo "$URL"
  exit 0
fi
DIR=$(mktemp -d /tmp/blockprobe-pg.XXXXXX)
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi
as_pg "$BIN/initdb -D $DIR/data -A trust -U postgres" >&2
as_pg "$BIN/pg_ctl -D $DIR/data -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DIR' -l $DIR/log -w start" >&2
echo "$URL"
