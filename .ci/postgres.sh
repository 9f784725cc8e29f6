#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1 for the store tests (installing the Debian
# package when it is missing), with TLS from a CA made here, and prints "URL CA_FILE"
# (CA_FILE is "-" when openssl is missing and the server runs without TLS).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=${BLOCKPROBE_PG_PORT:-55432}
STATE=/tmp/blockprobe-pg-$PORT.env
# Already running (a previous run of this script): reuse it.
if [ -s "$STATE" ] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  cat "$STATE"
  exit 0
fi
DIR=$(mktemp -d /tmp/blockprobe-pg.XXXXXX)
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
CA=-
SSL=""
if command -v openssl >/dev/null 2>&1; then
  (
    cd "$DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=blockprobe test CA" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile ext.cnf -out server.crt >/dev/null 2>&1
    chmod 600 server.key
  )
  CA=$DIR/ca.pem
  SSL="-c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key"
fi
if [ "$(id -u)" = 0 ]; then chown -R postgres "$DIR"; fi
as_pg "$BIN/initdb -D $DIR/data -A trust -U postgres" >&2
as_pg "$BIN/pg_ctl -D $DIR/data -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DIR $SSL' -l $DIR/log -w start" >&2
echo "postgres://postgres@127.0.0.1:$PORT/postgres $CA" | tee "$STATE"
