#!/usr/bin/env python3
"""luodi's PEFT adapter in Python PEFT (the other half of scripts/interop-peft.sh).

    python3 scripts/interop-peft.py BASE_DIR GGUF_FILE ADAPTER_DIR LUODI_JSONL

LUODI_JSONL holds one `luodi generate --json --logprobs 1` report per line, each with its
"question". For each, PEFT (PeftModel.from_pretrained on the base that transformers loads from
the same GGUF, dequantized to f32) answers greedily, and then scores luodi's answer token by
token; the script prints both answers, whether they are the same tokens, and the largest
difference between the two sides' log-probabilities of luodi's tokens.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def main():
    base_dir, gguf, adapter, reports = sys.argv[1:5]
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(base_dir, gguf_file=gguf)
    base = AutoModelForCausalLM.from_pretrained(base_dir, gguf_file=gguf, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter)
    model.eval()
    cfg = json.load(open(f"{adapter}/adapter_config.json"))
    print(f"PEFT loaded {adapter}: r={cfg['r']}, alpha={cfg['lora_alpha']}, targets {sorted(cfg['target_modules'])}")
    same = 0
    worst = 0.0
    rows = [json.loads(l) for l in open(reports, encoding="utf-8")]
    for r in rows:
        # SmolLM2's chat template with its default system turn, as luodi renders it.
        prompt = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{r['question']}<|im_end|>\n<|im_start|>assistant\n"
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        assert ids.shape[1] == r["prompt_tokens"], f"prompt tokens: transformers {ids.shape[1]}, luodi {r['prompt_tokens']}"
        n = len(r["tokens"])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.eos_token_id)
            peft_tokens = out[0, ids.shape[1]:].tolist()
            full = torch.cat([ids, torch.tensor([r["tokens"]])], dim=1)
            logp = torch.log_softmax(model(full).logits[0, ids.shape[1] - 1 : -1].float(), dim=-1)
        theirs = [logp[i, t].item() for i, t in enumerate(r["tokens"])]
        ours = [t["logprob"] for t in r["logprobs"]]
        diff = max(abs(a - b) for a, b in zip(theirs, ours))
        worst = max(worst, diff)
        # luodi stops at the end-of-turn token without printing it; PEFT includes it.
        match = peft_tokens[: len(r["tokens"])] == r["tokens"]
        same += match
        print(f"Q: {r['question']}")
        print(f"  luodi --lora: {r['text']!r}")
        print(f"  PEFT:         {tok.decode(peft_tokens, skip_special_tokens=True)!r}")
        print(f"  same tokens: {match}; largest |logprob difference| on luodi's {n} tokens: {diff:.4f}")
    print(f"{same}/{len(rows)} answers token for token the same; largest logprob difference {worst:.4f}")


if __name__ == "__main__":
    main()
