#!/usr/bin/env bash
# luodi's GGUF LoRA in llama.cpp: trains an adapter on the fictional bank (tests/data), then
# asks llama.cpp's llama-completion (path in $LLAMA_COMPLETION) the held-out paraphrases greedily with and
# without `--lora adapter.gguf`, and luodi itself with `--lora`. Not part of CI (it needs a
# llama.cpp build); run after changing the adapter formats and record the result.
set -euo pipefail
cd "$(dirname "$0")/.."
export LUODI_HOME="${LUODI_HOME:-$PWD/target/luodi-home}"
: "${LLAMA_COMPLETION:?set LLAMA_COMPLETION to a llama-completion binary}"
OUT=target/interop-llamacpp
cargo build --release --bin luodi >/dev/null
BASE="$LUODI_HOME/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
./target/release/luodi train --train_file crates/train/tests/data/lumen_bank_train.jsonl --output_dir "$OUT" \
  --max_steps 60 --learning_rate 2e-3 --per_device_train_batch_size 4 --max_seq_length 96 \
  --target_modules all-linear --threads 2 --logging_steps 1000
python3 - "$OUT" crates/train/tests/data/lumen_bank_validation.jsonl <<'PY' > "$OUT/questions.txt"
import json, sys
for line in open(sys.argv[2]):
    print(json.loads(line)["messages"][0]["content"])
PY
while IFS= read -r q; do
  echo "Q: $q"
  for lora in "" "--lora $OUT/adapter.gguf"; do
    # shellcheck disable=SC2086
    # SmolLM2's chat template with its default system turn, as luodi renders it.
    p=$(printf '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n' "$q")
    a=$("$LLAMA_COMPLETION" -m "$BASE" $lora -p "$p" -no-cnv -n 30 --temp 0 -t 2 --no-display-prompt 2>/dev/null </dev/null | tr '\n' ' ')
    label=$([ -n "$lora" ] && echo "with adapter.gguf" || echo "base")
    echo "  llama.cpp $label: $a"
  done
  echo "  luodi --lora: $(./target/release/luodi generate "$q" --temperature 0 -n 30 --threads 2 --lora "$OUT" | tr '\n' ' ')"
done < "$OUT/questions.txt"
