#!/usr/bin/env bash
# Fuzz the real server against its own OpenAPI document with schemathesis.
# Usage: tests/e2e/fuzz_openapi.sh [PATH/TO/luodi]   (default: target/release/luodi)
#
# Starts `luodi serve` (default model, default embedding model) on a free port with a 5 s
# request timeout, waits for /ready, and runs schemathesis on /openapi.json: schema examples,
# boundary values (coverage phase) and up to FUZZ_MAX_EXAMPLES random cases per operation,
# valid and invalid. Checks: no 5xx, every status is documented, every JSON body matches its
# documented schema. A hook keeps generations short (token counts above 16, or absent, become
# small), sends the served model ids most of the time (a random id only tests the 404) and
# caps embedding batches at 8 inputs, so the run stays within a few minutes on CPU.
# Prints 'N passed, N failed' (API operations) and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:-target/release/luodi}
VENV=$PWD/target/e2e-venv
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-25}
SEED=${FUZZ_SEED:-20261130}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.32,<5"

PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
"$BIN" serve --host 127.0.0.1 --port "$PORT" --request-timeout 5 >"$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 240); do
  if curl -fsS "$BASE/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server exited early:" >&2
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$BASE/ready" >/dev/null || { echo "the server did not become ready in 120 s" >&2; cat "$WORK/server.log" >&2; exit 1; }

cat >"$WORK/hooks.py" <<'EOF'
"""Keep fuzzed generations short and usually aimed at the served models."""
import json
import os
import random
import urllib.request

import schemathesis

with urllib.request.urlopen(os.environ["LUODI_FUZZ_BASE"] + "/v1/models", timeout=10) as r:
    MODELS = [m["id"] for m in json.load(r)["data"]]
GENERATOR = MODELS[0]
EMBEDDER = MODELS[1] if len(MODELS) > 1 else MODELS[0]
LIMITS = {
    "/v1/chat/completions": ["max_completion_tokens", "max_tokens"],
    "/v1/completions": ["max_tokens"],
    "/generate": ["max_length", "max_tokens"],
}


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if path == "/v1/embeddings":
        if isinstance(body.get("model"), str) and random.random() < 0.8:
            body["model"] = EMBEDDER
        if isinstance(body.get("input"), list) and len(body["input"]) > 8:
            body["input"] = body["input"][:8]
        return
    names = LIMITS.get(path)
    if names is None:
        return
    if isinstance(body.get("model"), str) and random.random() < 0.8:
        body["model"] = GENERATOR
    given = [n for n in names if body.get(n) is not None]
    for n in given:
        v = body[n]
        if isinstance(v, int) and not isinstance(v, bool) and v > 16:
            body[n] = 1 + v % 16
    if not given:
        body[names[-1]] = 8
EOF

echo "== schemathesis $("$VENV/bin/schemathesis" --version | awk '{print $NF}') against $BASE/openapi.json"
set +e
# From $WORK, so schemathesis's own cache (.schemathesis/) does not land in the checkout.
(cd "$WORK" && LUODI_FUZZ_BASE="$BASE" SCHEMATHESIS_HOOKS="$WORK/hooks.py" timeout 600 "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --request-timeout 30 \
  --generation-database none \
  --suppress-health-check too_slow,filter_too_much \
  --report junit --report-junit-path "$WORK/junit.xml" \
  --no-color)
rc=$?
set -e

if grep -q 'status=5[0-9][0-9]' "$WORK/server.log"; then
  echo "server log, 5xx responses:"
  grep 'status=5[0-9][0-9]' "$WORK/server.log" | tail -n 20
fi
if [ -f "$WORK/junit.xml" ]; then
  "$VENV/bin/python" - "$WORK/junit.xml" "$rc" <<'EOF'
import sys
import xml.etree.ElementTree as ET

cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed = failed = 0
for case in cases:
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is None:
        passed += 1
if failed == 0 and sys.argv[2] != "0":
    failed = 1  # schemathesis failed outside any operation (schema or network error)
print(f"{passed} passed, {failed} failed")
EOF
else
  echo "0 passed, 1 failed"
fi
exit "$rc"
