#!/usr/bin/env bash
# Interaction store figures for BENCHMARKS.md: records written per second through the server
# path, and the latency recording adds to a request, for SQLite and PostgreSQL.
# Answers come from the response cache (warmed first), so requests arrive far faster than
# generation allows and the store, not the model, is what is measured. Each level runs
# `luodi bench http` at c=8 with the store off, on SQLite, and on PostgreSQL
# (127.0.0.1:5432, database test, own table prefix, dropped after).
# Usage: scripts/bench-store.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
LUODI=target/release/luodi
OUT=target/bench-store
rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release --bin luodi
PORT=8184
URL=http://127.0.0.1:$PORT
PREFIX="bench_$$_"
common=(--url "$URL" --max-tokens 32 --warmup 0)
wait_up() { for _ in $(seq 1 240); do curl -sf "$URL/ready" >/dev/null && return 0; sleep 0.5; done; echo "server did not start" >&2; return 1; }
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 == m {print $2}' | head -1; }
trap 'kill ${SPID:-} 2>/dev/null || true' EXIT
for store in none sqlite postgres; do
  case $store in
    none) url=none ;;
    sqlite) url="sqlite://$PWD/$OUT/bench.db" ;;
    postgres) url="postgres://postgres@127.0.0.1:5432/test" ;;
  esac
  printf '[store]\ntable_prefix = "%s"\n' "$PREFIX" >"$OUT/luodi.toml"
  $LUODI serve --port $PORT --embedding-model "" --cache-mode always --store-url "$url" --config "$OUT/luodi.toml" >"$OUT/serve-$store.log" 2>&1 &
  SPID=$!
  wait_up
  $LUODI bench http "${common[@]}" -c 1 -n 32 >/dev/null          # generate once: the cache now holds every answer
  sleep 1
  before=$(metric luodi_store_written_total); before=${before:-0}
  start=$(date +%s.%N)
  $LUODI bench http "${common[@]}" -c 8 -n "$N" --output "$OUT/$store.json" | grep -E '^\| c='
  sleep 1                                                          # let the last batch commit
  end=$(date +%s.%N)
  after=$(metric luodi_store_written_total); after=${after:-0}
  dropped=$(curl -s "$URL/metrics" | awk '$1 ~ /^luodi_store_dropped_total/ {s += $2} END {print s + 0}')
  python3 - "$store" "$before" "$after" "$start" "$end" "$dropped" "$OUT/$store.json" <<'PY'
import json, sys
store, before, after, start, end, dropped, path = sys.argv[1:]
level = json.load(open(path))["levels"][0]
written = float(after) - float(before)
print(f"{store}: {written:.0f} records written ({dropped} dropped) at {level['requests_per_s']:.0f} req/s offered; "
      f"e2e p50 {level['e2e_ms']['p50']:.2f} ms, p99 {level['e2e_ms']['p99']:.2f} ms")
PY
  kill $SPID; wait $SPID 2>/dev/null || true
done
psql -h 127.0.0.1 -U postgres -d test -qc "DROP TABLE IF EXISTS ${PREFIX}feedback, ${PREFIX}interactions, ${PREFIX}schema_version" || true
