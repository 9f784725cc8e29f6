#!/usr/bin/env bash
# Runs every fuzz target in turn, one at a time, for SECONDS each (default 600), niced, and keeps
# each run's log in fuzz/logs/TARGET.log (libFuzzer's own output, with the final statistics).
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(target_list resolver_spec config_toml scenario_toml dns_response http_response socks_reply)
fi
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  # -jobs=1 -workers=1: one fuzzing process, its output in ./fuzz-0.log.
  nice -n 19 cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -jobs=1 -workers=1 -print_final_stats=1 >"fuzz/logs/$t.cargo.log" 2>&1
  rc=$?
  mv fuzz-0.log "fuzz/logs/$t.log" 2>/dev/null
  echo "$t: exit $rc, $(ls "fuzz/corpus/$t" | wc -l) corpus files, $(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l) artifacts"
done
