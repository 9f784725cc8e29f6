#!/usr/bin/env bash
# DNS-only scan benchmark against the bundled mock resolver, side by side with dnsperf.
#
#   bench/dns.sh [NAMES] [BIG]      defaults: 10000 names, 1000000 targets for the memory run
#
# Prints names/s, DNS queries/s (vantage A+AAAA plus control A+AAAA, classification and JSONL
# output included) and peak RSS; then dnsperf's queries/s against the same server. Needs
# /usr/bin/time and dnsperf (Debian: apt-get install time dnsperf). Results: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${1:-10000}
BIG=${2:-1000000}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --locked >/dev/null 2>&1
BIN=target/release/blockprobe

"$BIN" mocknet --scenario bench/wildcard.toml --ready-file "$OUT/ready.json" >/dev/null 2>&1 &
NET=$!
trap 'kill $NET 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$OUT/ready.json" ] && break; sleep 0.1; done
ISP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["isp"]["udp"])' "$OUT/ready.json")
CTL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$OUT/ready.json")
PORT=${ISP##*:}

seq 1 "$NAMES" | sed 's/^/n/; s/$/.bench.test/' > "$OUT/names.txt"

scan() { # $1 = target file, $2 = concurrency, $3 = injection window
  /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "$BIN" scan -i "$1" --probes dns \
    --resolver "isp=$ISP" --control-resolver "control=$CTL" --canary canary.mocknet.test \
    --concurrency "$2" --injection-window "$3" --timeout 2s --quiet -o "$OUT/out.jsonl"
  read -r secs kib < "$OUT/time.txt"
  lines=$(wc -l < "$OUT/out.jsonl")
  ok=$(grep -c '"verdict":"reachable"' "$OUT/out.jsonl" || true)
  python3 - "$lines" "$secs" "$kib" "$2" "$3" "$ok" <<'PY'
import sys
n, secs, kib, conc, win, ok = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
print(f"scan {n:>8} names  concurrency {conc:>5}  window {win:>5}: {secs:7.2f} s  "
      f"{n/secs:8.0f} names/s  {4*n/secs:8.0f} queries/s  peak RSS {kib/1024:6.1f} MiB  "
      f"reachable {ok}/{n}")
PY
}

scan "$OUT/names.txt" 100 0
scan "$OUT/names.txt" 500 250ms
scan "$OUT/names.txt" 1000 0

sed 's/$/ A/' "$OUT/names.txt" > "$OUT/dnsperf.txt"
dnsperf -s 127.0.0.1 -p "$PORT" -d "$OUT/dnsperf.txt" -l 10 -c 4 -T 2 -q 500 2>&1 \
  | awk '/Queries per second/ {print "dnsperf (same server, 10 s, 500 in flight):", $4, "queries/s"}'

if [ "$BIG" -gt 0 ]; then
  seq 1 "$BIG" | sed 's/^/m/; s/$/.bench.test/' > "$OUT/big.txt"
  scan "$OUT/big.txt" 100 0
fi
