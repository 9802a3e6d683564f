#!/usr/bin/env bash
# Guard figures for BENCHMARKS.md, in one run:
#  1. `luodi guard scan` throughput on a 100 MB mixed Chinese/English file;
#  2. luodi vs Presidio's analyzer (pattern recognizers) on the same English file, as a ratio;
#  3. the latency the guard adds to one request (`luodi bench guard`).
# Usage: scripts/bench-guard.sh [ENGLISH_MB]   (default 2: Presidio runs at ~0.1 MB/s)
# Needs python3; installs presidio-analyzer into target/presidio-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
EN_MB=${1:-2}
OUT=target/bench-guard
cargo build --release --bin luodi
python3 scripts/make-guard-corpus.py "$OUT" --mixed-mb 100 --english-mb "$EN_MB"
if [ ! -x target/presidio-venv/bin/python ]; then
  python3 -m venv target/presidio-venv
  target/presidio-venv/bin/pip install --quiet --disable-pip-version-check presidio-analyzer
fi
LUODI=./target/release/luodi
echo "== luodi guard scan, 100 MB mixed"
$LUODI guard scan "$OUT/mixed.txt" --json | tee "$OUT/mixed.json" | grep -E '"(bytes|seconds|mb_per_s)"'
echo "== same English file: luodi, then Presidio"
$LUODI guard scan "$OUT/english.txt" --json | tee "$OUT/english-luodi.json" | grep -E '"(bytes|seconds|mb_per_s)"'
target/presidio-venv/bin/python scripts/bench-presidio.py "$OUT/english.txt" --nlp noop | tee "$OUT/english-presidio.json"
python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
l = json.load(open(f"{d}/english-luodi.json"))
p = json.loads(open(f"{d}/english-presidio.json").read().strip().splitlines()[-1])
print(f"english: luodi {l['mb_per_s']:.2f} MB/s, presidio {p['mb_per_s']:.3f} MB/s, ratio {l['mb_per_s'] / p['mb_per_s']:.0f}x")
print("luodi counts:", l["entities"])
print("presidio counts:", p["counts"])
PY
echo "== added latency per request"
LUODI_LOG=info $LUODI bench guard 2>/dev/null
