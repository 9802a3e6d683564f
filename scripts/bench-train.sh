#!/usr/bin/env bash
# Training throughput and peak memory, in the anchor's shape (../shared/anchors.md: SmolLM2
# 135M, sequences of 128 tokens, batch 8, AdamW, 2 threads): LoRA r=8 alpha=16 on q_proj,v_proj,
# then full fine-tuning; luodi and PyTorch (+ PEFT) one after the other in the same run, on
# SmolLM2 and on Gemma 3. Usage: scripts/bench-train.sh [lora_steps] [full_steps] [models]
# PyTorch comes from $TORCH_PYTHON, or a venv made in target/torch-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
export LUODI_HOME="${LUODI_HOME:-$PWD/target/luodi-home}"
LORA_STEPS="${1:-8}"
FULL_STEPS="${2:-3}"
MODELS="${3:-smollm2-135m gemma3-270m}"
PY="${TORCH_PYTHON:-target/torch-venv/bin/python}"
if [ ! -x "$PY" ]; then
  python3 -m venv target/torch-venv
  target/torch-venv/bin/pip install --quiet --disable-pip-version-check torch transformers peft gguf sentencepiece
  PY=target/torch-venv/bin/python
fi
OUT=target/bench-train
mkdir -p "$OUT"
cargo build --release --bin luodi >/dev/null
# Customer-service style text, the same on every run.
python3 - "$OUT/cs.jsonl" <<'PY'
import json, random, sys
random.seed(1)
subj = ["The customer", "Our agent", "The account holder", "A new client", "The branch manager"]
verb = ["asked about", "complained about", "requested a refund for", "wanted to change", "could not find"]
obj = ["the monthly fee", "the card limit", "a delayed transfer", "the mobile app login", "the overdraft interest"]
with open(sys.argv[1], "w") as f:
    for _ in range(400):
        t = " ".join(f"{random.choice(subj)} {random.choice(verb)} {random.choice(obj)} on ticket {random.randint(1000, 9999)}." for _ in range(8))
        f.write(json.dumps({"text": t}) + "\n")
PY
run() {
  local name=$1; shift
  /usr/bin/time -f "$name peak_rss_kib %M wall_s %e" ./target/release/luodi train --model_name_or_path "$MODEL" \
    --train_file "$OUT/cs.jsonl" --output_dir "$OUT/$name" --max_seq_length 128 --per_device_train_batch_size 8 \
    --threads 2 --logging_steps 1000 "$@" 2>&1 | grep -E "peak_rss|^trained"
  # Steady-state speed: the steps after the first (which also touches every page once).
  python3 - "$OUT/$name/train_log.jsonl" "$name" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = rows[-1]["tokens_per_second"]; n = len(rows)
first = rows[0]["tokens"] / rows[0]["tokens_per_second"]
total = sum(r["tokens"] for r in rows) / t
print(f"{sys.argv[2]} steady tokens/s {sum(r['tokens'] for r in rows[1:]) / (total - first):.0f} over steps 2..{n}")
PY
}
torch_run() {
  local name=$1 method=$2 steps=$3
  /usr/bin/time -f "$name peak_rss_kib %M wall_s %e" "$PY" scripts/bench-train-torch.py \
    "$LUODI_HOME/models/$MODEL" "$GGUF" "$OUT/cs.jsonl" "$method" "$steps" 2>&1 | grep -E "peak_rss|steady"
}
grep -m1 "model name" /proc/cpuinfo; grep -m1 "cpu family" /proc/cpuinfo; grep -m1 "^model\s" /proc/cpuinfo
for MODEL in $MODELS; do
  ./target/release/luodi models fetch "$MODEL" >/dev/null
  GGUF=$(basename "$(ls "$LUODI_HOME/models/$MODEL"/*.gguf | head -n 1)")
  echo "== $MODEL ($GGUF)"
  run "$MODEL-lora" --method lora --lora_r 8 --lora_alpha 16 --lora_dropout 0 --target_modules q_proj,v_proj --max_steps "$LORA_STEPS"
  torch_run "$MODEL-torch-lora" lora "$LORA_STEPS"
  run "$MODEL-full" --method full --max_steps "$FULL_STEPS"
  torch_run "$MODEL-torch-full" full "$FULL_STEPS"
done
