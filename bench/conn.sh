#!/usr/bin/env bash
# Connection-probe benchmarks against the bundled mock network (see docs/performance.md):
#  1. N blackholed targets, --timeout 1s, --concurrency 500: wall time must be about
#     ceil(N / 500) x the step timeouts, never N x timeout.
#  2. HTTPS handshakes/s (--probes tls) and full HTTPS measurements/s (DNS + TCP + TLS + GET)
#     at concurrency 64 against one healthy origin, no control path.
# Default settings otherwise (the injection window included).
#
#   bench/conn.sh [BLACKHOLED] [HTTPS]      defaults: 2000 5000
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
M=${2:-5000}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --locked >/dev/null 2>&1
BIN=target/release/blockprobe
rm -f "$OUT/ready-conn.json"
"$BIN" mocknet --scenario bench/blackhole.toml --ready-file "$OUT/ready-conn.json" >/dev/null 2>&1 &
NET=$!
trap 'kill $NET 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$OUT/ready-conn.json" ] && break; sleep 0.1; done
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$OUT/ready-conn.json" "$1"; }
ISP=$(field '["isp"]["udp"]'); CTL=$(field '["control"]'); PROXY=$(field '["proxy"]'); CA=$(field '["ca_file"]')
TARGETS=$(field '["targets_file"]')
DROP=$(grep drop.example "$TARGETS"); FAST=$(grep fast.example "$TARGETS")
seq 1 "$N" | sed "s|^|${DROP%/}/|" > "$OUT/blackholed.txt"
seq 1 "$M" | sed "s|^|${FAST%/}/|" > "$OUT/fast.txt"
# The mock's origins listen on ephemeral ports unless it may bind 443: its own --connect-to
# mappings go with every scan (without them the blackholed host reads `refused`).
mapfile -t CONNECT_TO < <(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["scan_args"]
for i, x in enumerate(a[:-1]):
    if x == "--connect-to": print(x); print(a[i+1])' "$OUT/ready-conn.json")
common=("${CONNECT_TO[@]}" --resolver "isp=$ISP" --control-resolver "control=$CTL" --ca-file "$CA"
        --canary canary.mocknet.test --quiet)

measure() { # label, file, extra args...
  local label=$1 file=$2; shift 2
  /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "$BIN" scan -i "$file" "${common[@]}" "$@" -o "$OUT/conn.jsonl"
  read -r secs kib < "$OUT/time.txt"
  local n; n=$(wc -l < "$OUT/conn.jsonl")
  local verdicts; verdicts=$(python3 -c 'import json,sys,collections; print(dict(collections.Counter((json.loads(l)["verdict"], json.loads(l)["reason"]) for l in open(sys.argv[1]))))' "$OUT/conn.jsonl")
  python3 -c 'import sys; n,s,k=int(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); print(f"{sys.argv[1]:<48} {n:>6} targets {s:7.2f} s {n/s:8.0f}/s peak RSS {k/1024:6.1f} MiB")' "$label" "$n" "$secs" "$kib"
  echo "    verdicts: $verdicts"
}

measure "blackholed, timeout 1s, concurrency 500, proxy" "$OUT/blackholed.txt" \
  --timeout 1s --concurrency 500 --control-proxy "$PROXY"
measure "blackholed, timeout 1s, concurrency 500, no proxy" "$OUT/blackholed.txt" \
  --timeout 1s --concurrency 500
measure "HTTPS handshakes (--probes tls), concurrency 64" "$OUT/fast.txt" \
  --timeout 4s --concurrency 64 --probes dns,tls
measure "HTTPS DNS+TCP+TLS+GET, concurrency 64" "$OUT/fast.txt" \
  --timeout 4s --concurrency 64
