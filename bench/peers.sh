#!/usr/bin/env bash
# blockprobe side by side with the standard load tools, on real third-party servers, in the same
# run (issue 14). Default settings except --concurrency; figures go to docs/performance.md.
#
#  1. DNS-only: NAMES names through Knot (authoritative, loopback) as vantage AND control
#     resolver (4 queries per name: vantage A+AAAA, control A+AAAA) at concurrency 256 and
#     at the default 100, with the default injection window and with it off; the floor
#     (examples/dns_floor.rs: the wire work alone); then dnsperf's queries/s on the same Knot.
#     ROUNDS rounds, the ratio to dnsperf taken per round.
#  2. Full HTTPS (DNS + TCP + TLS + GET): URLS URLs on nginx (throw-away CA, names from Knot),
#     no control proxy; then wrk with a new connection per request (Connection: close) on the
#     same nginx. That nginx does full TLS handshakes only: wrk would otherwise resume its
#     session on almost every "new" connection (no key exchange, no signature), which a probe
#     of many sites never can. wrk against nginx's defaults (resumption on) is printed too, and
#     nginx's log counts the resumed handshakes of each client.
#
#   bench/peers.sh [NAMES] [URLS]      defaults: 50000 6000
#
# Needs knot, dnsperf, wrk, nginx-light, openssl and time (Debian: apt-get install knot dnsperf
# wrk nginx-light openssl time). Runs as any user; ports 5300, 8443 and 8444 on 127.0.0.1.
# ROUNDS=N (default 3): DNS rounds, each blockprobe beside dnsperf.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${1:-50000}
URLS=${2:-6000}
DNS_PORT=${DNS_PORT:-5300}
WEB_PORT=${WEB_PORT:-8443}
RESUME_PORT=${RESUME_PORT:-8444}
OUT=bench/out/peers
rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cargo build --release --locked --bin blockprobe --example dns_floor >/dev/null 2>&1
BIN=$PWD/target/release/blockprobe
FLOOR=$PWD/target/release/examples/dns_floor
ROUNDS=${ROUNDS:-3}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# --- Knot: bench.test, every name has an A record (127.0.0.1) and no AAAA (NODATA).
cat > "$OUT/bench.test.zone" <<EOF
\$ORIGIN bench.test.
\$TTL 3600
@   SOA ns.bench.test. hostmaster.bench.test. 1 3600 900 604800 60
@   NS  ns.bench.test.
ns  A   127.0.0.1
*   A   127.0.0.1
EOF
cat > "$OUT/knot.conf" <<EOF
server:
    rundir: "$OUT"
    listen: 127.0.0.1@$DNS_PORT
database:
    storage: "$OUT"
log:
  - target: stderr
    any: error
zone:
  - domain: bench.test
    file: "$OUT/bench.test.zone"
EOF
knotd -c "$OUT/knot.conf" 2>"$OUT/knot.log" &
pids+=($!)

# --- nginx with a throw-away CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench.test" \
  -keyout "$OUT/leaf.key" -out "$OUT/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:*.bench.test,DNS:bench.test\nbasicConstraints=CA:FALSE\n' > "$OUT/ext"
openssl x509 -req -in "$OUT/leaf.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" -CAcreateserial \
  -days 2 -extfile "$OUT/ext" -out "$OUT/leaf.pem" 2>/dev/null
cat > "$OUT/nginx.conf" <<EOF
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $OUT/tmp; proxy_temp_path $OUT/tmp; fastcgi_temp_path $OUT/tmp;
  uwsgi_temp_path $OUT/tmp; scgi_temp_path $OUT/tmp;
  log_format reuse '\$ssl_session_reused';
  # Full handshakes only, as a probe meets them (every target is another site, so it has no
  # session to resume): without this, wrk resumes its TLS session on ~99 % of its "new"
  # connections — no key exchange, no signature — while blockprobe never can.
  server {
    listen 127.0.0.1:$WEB_PORT ssl;
    ssl_certificate $OUT/leaf.pem;
    ssl_certificate_key $OUT/leaf.key;
    ssl_session_cache off;
    ssl_session_tickets off;
    access_log $OUT/full.log reuse;
    location / { default_type text/html; return 200 "<html><head><title>bench</title></head><body>ok</body></html>\n"; }
  }
  # nginx's defaults (session tickets on), for wrk's resumed-session figure.
  server {
    listen 127.0.0.1:$RESUME_PORT ssl;
    ssl_certificate $OUT/leaf.pem;
    ssl_certificate_key $OUT/leaf.key;
    access_log $OUT/resumed.log reuse;
    location / { default_type text/html; return 200 "<html><head><title>bench</title></head><body>ok</body></html>\n"; }
  }
}
EOF
mkdir -p "$OUT/tmp"
nginx -c "$OUT/nginx.conf" -p "$OUT" -g 'daemon off;' 2>>"$OUT/nginx.err" &
pids+=($!)

# Readiness: Knot answers, nginx accepts (bounded polls, not fixed sleeps).
for _ in $(seq 100); do
  dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d <(echo "ns.bench.test A") -l 1 -c 1 -q 1 2>/dev/null \
    | grep -q 'Queries completed: *[1-9]' && break
  sleep 0.1
done
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$WEB_PORT) 2>/dev/null && break; sleep 0.1; done

RES=(--resolver "isp=udp://127.0.0.1:$DNS_PORT" --control-resolver "control=udp://127.0.0.1:$DNS_PORT"
     --canary ns.bench.test --quiet)

run() { # label, file, extra args... -> prints rate and peak RSS, sets RATE
  local label=$1 file=$2; shift 2
  /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "$BIN" scan -i "$file" "${RES[@]}" "$@" -o "$OUT/out.jsonl"
  read -r secs kib < "$OUT/time.txt"
  local n; n=$(wc -l < "$OUT/out.jsonl")
  local ok; ok=$(grep -c '"verdict":"reachable"' "$OUT/out.jsonl" || true)
  RATE=$(python3 -c "print($n/$secs)")
  printf '%-58s %6d in %6.2f s  %8.0f/s  peak RSS %5.1f MiB  reachable %d/%d\n' \
    "$label" "$n" "$secs" "$RATE" "$(python3 -c "print($kib/1024)")" "$ok" "$n"
}

echo "== DNS-only, $NAMES names, Knot on loopback; $ROUNDS rounds, each beside dnsperf"
# dnsperf's own rate on this shared VM moves by half from minute to minute, so every round runs
# blockprobe and dnsperf back to back and the ratio is taken per round (the median is the
# figure). The floor (examples/dns_floor.rs) is the wire work alone — per name a fresh
# connected socket to each resolver, A and AAAA, both answers, close — with no classification,
# report, injection window or retransmission: what a fresh flow per lookup allows at all.
seq 1 "$NAMES" | sed 's/^/n/; s/$/.bench.test/' > "$OUT/names.txt"
sed 's/$/ A/' "$OUT/names.txt" > "$OUT/dnsperf.txt"
: > "$OUT/ratios.txt"
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  run "blockprobe --probes dns --concurrency 256 (defaults)" "$OUT/names.txt" --probes dns --concurrency 256
  BP_256=$(python3 -c "print(4*$RATE)")
  run "blockprobe --probes dns (defaults: concurrency 100)" "$OUT/names.txt" --probes dns
  BP_100=$(python3 -c "print(4*$RATE)")
  run "blockprobe --probes dns --concurrency 256 --injection-window 0" "$OUT/names.txt" --probes dns --concurrency 256 --injection-window 0
  BP_NOWIN=$(python3 -c "print(4*$RATE)")
  FLOOR_RATE=$("$FLOOR" "$OUT/names.txt" "127.0.0.1:$DNS_PORT" 32 | awk '{print $(NF-1)}')
  DNSPERF=$(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$OUT/dnsperf.txt" -l 5 -c 4 -T 2 -q 500 2>&1 \
    | awk '/Queries per second/ {print $4}')
  python3 - "$BP_256" "$BP_100" "$BP_NOWIN" "$FLOOR_RATE" "$DNSPERF" <<'PY' | tee -a "$OUT/ratios.txt"
import sys
a, b, n, f, p = map(float, sys.argv[1:])
print(f"queries/s: blockprobe c=256 {a:,.0f} ({a/p:.2f} of dnsperf), c=100 {b:,.0f} ({b/p:.2f}), "
      f"window off {n:,.0f} ({n/p:.2f}); floor {f:,.0f} ({f/p:.2f}); dnsperf {p:,.0f}")
PY
done
python3 - "$OUT/ratios.txt" <<'PY'
import re, statistics, sys
rows = [list(map(float, re.findall(r"\(([0-9.]+)", l))) for l in open(sys.argv[1])]
med = [statistics.median(c) for c in zip(*rows)]
print("median of dnsperf: blockprobe c=256 {:.2f}, c=100 {:.2f}, window off {:.2f}; floor {:.2f}".format(*med))
PY

echo "== full HTTPS (DNS + TCP + TLS + GET), $URLS URLs, nginx, concurrency 64"
seq 1 "$URLS" | sed "s|^|https://u|; s|\$|.bench.test:$WEB_PORT/|" > "$OUT/urls.txt"
run "blockprobe (defaults, no control proxy)" "$OUT/urls.txt" --concurrency 64 --ca-file "$OUT/ca.pem"
BP_HTTPS=$RATE
run "blockprobe --injection-window 0" "$OUT/urls.txt" --concurrency 64 --ca-file "$OUT/ca.pem" --injection-window 0
wrk_rate() { # port -> GETs/s of wrk, a new connection per GET
  wrk -t2 -c64 -d10s -H 'Connection: close' "https://127.0.0.1:$1/" 2>&1 | awk '/Requests\/sec/ {print $2}'
}
# How many of each client's TLS handshakes were resumptions ("r" in nginx's log): none of
# blockprobe's may be, or the comparison below is not like for like.
reused() { printf '%s of %s handshakes resumed' "$(grep -c '^r' "$1" || true)" "$(wc -l < "$1")"; }
echo "blockprobe: $(reused "$OUT/full.log")"
: > "$OUT/full.log"
WRK=$(wrk_rate "$WEB_PORT")
echo "wrk, full handshakes: $(reused "$OUT/full.log")"
WRK_RESUMED=$(wrk_rate "$RESUME_PORT")
echo "wrk, nginx defaults: $(reused "$OUT/resumed.log")"
python3 - "$BP_HTTPS" "$WRK" "$WRK_RESUMED" <<'PY'
import sys
b, w, r = map(float, sys.argv[1:])
print(f"HTTPS measurements/s: blockprobe defaults {b:,.0f} = {b/w:.2f}x wrk with full handshakes "
      f"(new connection per GET: {w:,.0f}/s); wrk resuming its TLS session: {r:,.0f}/s ({b/r:.2f}x)")
PY
