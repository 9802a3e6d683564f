#!/usr/bin/env bash
# Response cache figures for BENCHMARKS.md, in one run, through the whole HTTP path with
# `luodi bench http` (streaming, c=1 and c=8):
#  1. misses (32 distinct questions, generated) next to hits (the same questions again), for
#     the in-process store and for Redis at 127.0.0.1:6379 (own key prefix, removed after);
#  2. hit rate and throughput under a repeated-question workload: 400 requests drawn with a
#     Zipf law (s = 1.1) from 300 customer-service questions (English and Chinese), cache on.
# Usage: scripts/bench-cache.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
LUODI=target/release/luodi
OUT=target/bench-cache
mkdir -p "$OUT"
cargo build --release --bin luodi
PORT=8183
URL=http://127.0.0.1:$PORT
common=(--url "$URL" --max-tokens 64 --warmup 0 --system "You are a helpful customer service assistant.")
wait_up() { for _ in $(seq 1 240); do curl -sf "$URL/ready" >/dev/null && return 0; sleep 0.5; done; echo "server did not start" >&2; return 1; }
run_server() { $LUODI serve --threads "$THREADS" --port $PORT --embedding-model "" "$@" >"$OUT/serve.log" 2>&1 & SPID=$!; wait_up; }
trap 'kill ${SPID:-} 2>/dev/null || true' EXIT

PREFIX="luodi-bench:$$"
for store in memory redis; do
  extra=()
  [ "$store" = redis ] && extra=(--cache-redis-url redis://127.0.0.1:6379 --config "$OUT/redis.toml")
  printf '[cache]\nredis_prefix = "%s"\n' "$PREFIX" >"$OUT/redis.toml"
  run_server "${extra[@]}"
  echo "== $store: misses (first time), then hits"
  $LUODI bench http "${common[@]}" -c 1 -n 32 --output "$OUT/$store-miss.json"
  sleep 1
  $LUODI bench http "${common[@]}" -c 1,8 -n 320 --output "$OUT/$store-hit.json"
  curl -s "$URL/metrics" | grep '^luodi_cache_requests_total' | tee "$OUT/$store-counters.txt"
  [ "$store" = redis ] && $LUODI cache clear --url "$URL"
  kill $SPID; wait $SPID 2>/dev/null || true
done

echo "== repeated-question workload (Zipf), cache on"
python3 - "$OUT/zipf.txt" <<'PY'
import json, random, sys
pairs = [json.loads(l) for l in open("crates/cache/tests/fixtures/paraphrase_pairs.jsonl", encoding="utf-8")]
questions = list(dict.fromkeys(p["a"] for p in pairs))[:300]
rng = random.Random(7)
weights = [1 / (k + 1) ** 1.1 for k in range(len(questions))]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for q in rng.choices(questions, weights, k=400):
        f.write(q + "\n")
PY
run_server
$LUODI bench http "${common[@]}" --prompts "$OUT/zipf.txt" -c 8 -n 400 --duration 600 --output "$OUT/zipf.json"
curl -s "$URL/metrics" | grep '^luodi_cache_requests_total' | tee "$OUT/zipf-counters.txt"
kill $SPID; wait $SPID 2>/dev/null || true
