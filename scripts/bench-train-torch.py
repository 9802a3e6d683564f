#!/usr/bin/env python3
"""The anchor side of scripts/bench-train.sh: the same training step in PyTorch (+ PEFT for LoRA)
on the same GGUF (dequantized to f32 by transformers), the same text packed the same way
(EOS between documents, sequences of --seq tokens), batch --batch, AdamW, --threads threads.

    python3 scripts/bench-train-torch.py MODEL_DIR GGUF_FILE TEXT_JSONL lora|full STEPS

Prints one line: `torch-<method> steady tokens/s N over steps 2..STEPS` (the first step is left
out, as on luodi's side, because it also touches every page once). Peak memory is measured
from outside (/usr/bin/time), as for luodi.
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def packed(tok, path, seq, need):
    ids = []
    for line in open(path, encoding="utf-8"):
        ids += tok(json.loads(line)["text"], add_special_tokens=False).input_ids + [tok.eos_token_id]
        if len(ids) >= need * seq:
            break
    n = len(ids) // seq
    return torch.tensor(ids[: n * seq]).view(n, seq)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("gguf_file")
    ap.add_argument("text")
    ap.add_argument("method", choices=["lora", "full"])
    ap.add_argument("steps", type=int)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.model_dir, gguf_file=a.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, gguf_file=a.gguf_file, dtype=torch.float32)
    if a.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], bias="none", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    data = packed(tok, a.text, a.seq, a.batch * a.steps)
    assert data.shape[0] >= a.batch * a.steps, f"{a.text} holds {data.shape[0]} sequences of {a.seq}, need {a.batch * a.steps}"
    times = []
    for s in range(a.steps):
        batch = data[s * a.batch : (s + 1) * a.batch]
        t = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
        print(f"step {s + 1} loss {loss.item():.4f} {times[-1]:.2f}s", flush=True)
    tokens = a.batch * a.seq
    steady = tokens * (a.steps - 1) / sum(times[1:])
    print(f"torch-{a.method} steady tokens/s {steady:.0f} over steps 2..{a.steps} ({trainable} trainable, torch {torch.__version__})")


if __name__ == "__main__":
    main()
