#!/usr/bin/env python3
"""Makes the PyTorch/PEFT reference fixtures in crates/train/tests/fixtures/ (committed; rerun
only to regenerate them).

For each bundled model it loads the GGUF in transformers (dequantized to f32, the weights luodi
trains against), attaches a LoRA adapter made by Python PEFT with non-zero A and B on all seven
projections of three blocks, and saves:

  <model>/adapter/              the adapter as PEFT writes it (adapter_config.json,
                                adapter_model.safetensors): luodi must load it unchanged
  <model>/reference.json        the cases (text, token ids, which tokens are trained), the summed
                                cross-entropy with the adapter and without it, and the top next-
                                token logits at the end of each case with the adapter
  <model>/lora_grads.safetensors   d(summed loss)/d(every LoRA tensor), PEFT's names
  <model>/full_grads.safetensors   without the adapter, all weights trainable: the gradient of a
                                few tensors under GGUF names (norms, embedding rows, down_proj
                                rows; `embedding_rows` in reference.json says which), as luodi's full
                                fine-tuning names them

Needs torch, transformers, peft, gguf and safetensors (CPU is enough). Run from the repository
root after `luodi models fetch smollm2-135m gemma3-270m`:

    LUODI_HOME=target/luodi-home python3 scripts/peft-fixture.py
"""
import json
import os
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("LUODI_HOME", Path.home() / ".luodi"))
OUT = ROOT / "crates/train/tests/fixtures"
MODELS = {
    "smollm2-135m": ("SmolLM2-135M-Instruct.Q4_1.gguf", [0, 1, 29]),
    # Block 5 is a global-attention block in Gemma 3's five-local-one-global pattern.
    "gemma3-270m": ("gemma-3-270m-q4_k_m.gguf", [0, 5, 17]),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Two cases in one batch: a chat-style answer trained on its answer only, and Chinese domain
# text trained on every token (continual pre-training).
CASES = [
    ("Question: What is the monthly fee of the Lumen Gold card?\nAnswer:", " The Lumen Gold card costs 12 euros a month."),
    ("", "流明银行的金卡每月收费十二欧元，境外取款免手续费。"),
]
TOP = 32


def cases(tok):
    out = []
    for prompt, answer in CASES:
        p = tok(prompt, add_special_tokens=True).input_ids if prompt else []
        full = tok(prompt + answer, add_special_tokens=True).input_ids
        # The trained tokens are those after the prompt's own tokens (the first token of a
        # text has nothing before it to be predicted from).
        n = len(p)
        assert full[:n] == p, "the prompt's tokens are a prefix of the whole text's"
        out.append({"text": prompt + answer, "ids": full, "trained": [i >= max(n, 1) for i in range(len(full))]})
    return out


def summed_loss(model, cs):
    total = 0.0
    for c in cs:
        ids = torch.tensor([c["ids"]])
        labels = torch.tensor([[t if tr else -100 for t, tr in zip(c["ids"], c["trained"])]])
        logits = model(ids).logits[0, :-1].float()
        target = labels[0, 1:]
        total = total + torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
    return total


def gguf_name(hf: str, n_layers: int, gemma: bool) -> str | None:
    """transformers' parameter name -> luodi's (GGUF) name, for the tensors compared."""
    names = {
        "model.norm.weight": "output_norm.weight",
        "model.embed_tokens.weight": "token_embd.weight",
    }
    if hf in names:
        return names[hf]
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"]:
        i, rest = parts[2], ".".join(parts[3:])
        per = {
            "input_layernorm.weight": "attn_norm",
            "mlp.down_proj.weight": "ffn_down",
            "mlp.gate_proj.weight": "ffn_gate",
        }
        if gemma:
            # Gemma 3 normalizes around both sublayers, and q and k per head.
            per |= {
                "post_attention_layernorm.weight": "post_attention_norm",
                "pre_feedforward_layernorm.weight": "ffn_norm",
                "post_feedforward_layernorm.weight": "post_ffw_norm",
                "self_attn.q_norm.weight": "attn_q_norm",
                "self_attn.k_norm.weight": "attn_k_norm",
            }
        else:
            per["post_attention_layernorm.weight"] = "ffn_norm"
        if rest in per and i in ("0", str(n_layers - 1)):
            return f"blk.{i}.{per[rest]}.weight"
    return None


def run(name: str, file: str, layers: list[int]):
    path = HOME / "models" / name
    torch.manual_seed(1234)
    tok = AutoTokenizer.from_pretrained(path, gguf_file=file)
    base = AutoModelForCausalLM.from_pretrained(path, gguf_file=file, dtype=torch.float32)
    base.eval()
    cs = cases(tok)
    n_layers = base.config.num_hidden_layers
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)

    # Full fine-tuning gradients, on the base alone.
    base.zero_grad()
    for p in base.parameters():
        p.requires_grad_(True)
    loss_base = summed_loss(base, cs)
    loss_base.backward()
    full = {}
    rows = sorted({t for c in cs for t in c["ids"][:6]})
    # Gemma 3's norm weights are stored as w (the norm multiplies by 1 + w) in transformers
    # and as 1 + w in the GGUF: the gradient is the same either way.
    for hf, p in base.named_parameters():
        g = gguf_name(hf, n_layers, base.config.model_type.startswith("gemma"))
        if g is None or p.grad is None:
            continue
        grad = p.grad.detach()
        if g == "token_embd.weight":
            full[g + ".rows"] = grad[rows].contiguous()
        elif g.endswith(("ffn_down.weight", "ffn_gate.weight")):
            full[g + ".rows"] = grad[:4].contiguous()
        else:
            full[g] = grad.contiguous()
    save_file(full, out / "full_grads.safetensors")
    base.zero_grad()
    for p in base.parameters():
        p.requires_grad_(False)

    # A PEFT adapter with non-zero B (PEFT's default B is zero, which would hide half the math).
    config = LoraConfig(
        r=2, lora_alpha=4, lora_dropout=0.0, target_modules=TARGETS, layers_to_transform=layers,
        bias="none", task_type="CAUSAL_LM", init_lora_weights=False,
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(0.2)
    model.eval()
    loss_lora = summed_loss(model, cs)
    loss_lora.backward()
    grads = {n.replace(".default", ""): p.grad.detach().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, out / "lora_grads.safetensors")
    model.save_pretrained(out / "adapter")
    # PEFT's empty model-card template: nothing the tests read.
    (out / "adapter" / "README.md").unlink(missing_ok=True)
    tops = []
    with torch.no_grad():
        for c in cs:
            logits = model(torch.tensor([c["ids"]])).logits[0, -1].float()
            v, i = logits.topk(TOP)
            tops.append({"ids": i.tolist(), "logits": v.tolist()})
    ref = {
        "model": name,
        "made_by": f"scripts/peft-fixture.py with torch {torch.__version__}, transformers "
        f"{__import__('transformers').__version__}, peft {__import__('peft').__version__}",
        "cases": cs,
        "embedding_rows": rows,
        "loss_sum_base": loss_base.item(),
        "loss_sum_lora": loss_lora.item(),
        "top_logits_lora": tops,
    }
    (out / "reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n")
    print(f"{name}: loss base {loss_base.item():.4f}, with adapter {loss_lora.item():.4f}, {len(grads)} LoRA grads")


if __name__ == "__main__":
    torch.set_num_threads(2)
    for name in sys.argv[1:] or MODELS:
        run(name, *MODELS[name])
