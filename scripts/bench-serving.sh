#!/usr/bin/env bash
# Side-by-side load benchmark: luodi serve and llama.cpp's llama-server on the same GGUF,
# the same thread count, measured by the same client (`luodi bench http`) in one run.
#
#   LLAMA_SERVER=/path/to/llama-server scripts/bench-serving.sh [THREADS] [CONCURRENCY] [REQUESTS]
#
# llama-server runs with 8 parallel slots and "cache_prompt": false (no prefix reuse), as in
# ../shared/anchors.md; luodi with --max-num-seqs 16 (no prefix reuse either). Results are
# written as JSON to target/bench-serving/. The response cache is off: every answer is generated.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
LEVELS=${2:-1,4,8}
REQUESTS=${3:-24}
LUODI=target/release/luodi
MODEL=$($LUODI models info smollm2-135m --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])' 2>/dev/null || echo "${LUODI_HOME:-$HOME/.luodi}/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT=target/bench-serving
mkdir -p "$OUT"
common=(-c "$LEVELS" -n "$REQUESTS" --max-tokens 64 --warmup 2 --system "You are a helpful customer service assistant.")

wait_up() { for _ in $(seq 1 120); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; echo "server at $1 did not start" >&2; return 1; }

echo "== luodi ($THREADS threads)"
$LUODI serve --threads "$THREADS" --port 8181 --max-num-seqs 16 --embedding-model "" --cache-mode off >"$OUT/luodi-serve.log" 2>&1 &
LPID=$!
trap 'kill $LPID 2>/dev/null || true; kill ${SPID:-} 2>/dev/null || true' EXIT
wait_up http://127.0.0.1:8181/ready
$LUODI bench http --url http://127.0.0.1:8181 "${common[@]}" --output "$OUT/luodi.json"
kill $LPID; wait $LPID 2>/dev/null || true

if [ -n "${LLAMA_SERVER:-}" ]; then
  echo "== llama-server ($THREADS threads, 8 slots)"
  "$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np 8 -c 8192 --port 8182 >"$OUT/llama-server.log" 2>&1 &
  SPID=$!
  wait_up http://127.0.0.1:8182/health
  $LUODI bench http --url http://127.0.0.1:8182 "${common[@]}" --extra-body '{"cache_prompt": false}' --output "$OUT/llama-server.json"
  kill $SPID; wait $SPID 2>/dev/null || true
fi
