#!/usr/bin/env bash
# luodi's PEFT adapter in Python PEFT: trains an adapter on the fictional bank (tests/data) as
# scripts/interop-llamacpp.sh does, answers the held-out paraphrases greedily with
# `luodi generate --lora`, then loads the adapter directory with peft.PeftModel.from_pretrained
# and compares answers and log-probabilities (scripts/interop-peft.py). Not part of CI (it needs
# PyTorch: $TORCH_PYTHON, or the venv scripts/bench-train.sh makes); run after changing the
# adapter formats and record the result.
set -euo pipefail
cd "$(dirname "$0")/.."
export LUODI_HOME="${LUODI_HOME:-$PWD/target/luodi-home}"
PY="${TORCH_PYTHON:-target/torch-venv/bin/python}"
[ -x "$PY" ] || { echo "set TORCH_PYTHON to a python with torch, transformers, peft and gguf" >&2; exit 1; }
OUT=target/interop-peft
cargo build --release --bin luodi >/dev/null
./target/release/luodi train --train_file crates/train/tests/data/lumen_bank_train.jsonl --output_dir "$OUT" \
  --max_steps 60 --learning_rate 2e-3 --per_device_train_batch_size 4 --max_seq_length 96 \
  --target_modules all-linear --threads 2 --logging_steps 1000
python3 - crates/train/tests/data/lumen_bank_validation.jsonl <<'PY' > "$OUT/questions.txt"
import json, sys
for line in open(sys.argv[1]):
    print(json.loads(line)["messages"][0]["content"])
PY
: > "$OUT/luodi.jsonl"
while IFS= read -r q; do
  ./target/release/luodi generate "$q" --temperature 0 -n 30 --threads 2 --lora "$OUT" --json --logprobs 1 |
    python3 -c 'import json, sys; r = json.load(sys.stdin); r["question"] = sys.argv[1]; print(json.dumps(r, ensure_ascii=False))' "$q" >> "$OUT/luodi.jsonl"
done < "$OUT/questions.txt"
"$PY" scripts/interop-peft.py "$LUODI_HOME/models/smollm2-135m" SmolLM2-135M-Instruct.Q4_1.gguf "$OUT" "$OUT/luodi.jsonl"
