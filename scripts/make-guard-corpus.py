#!/usr/bin/env python3
"""Writes the guard benchmark files from the labelled PII corpus, deterministically.

Usage: make-guard-corpus.py OUT_DIR [--mixed-mb 100] [--english-mb 10]

  mixed.txt    Chinese and English lines: every corpus line (true IDs, near misses with wrong
               checksums, tables, full-width digits) interleaved with plain prose, about 1 line
               in 4 carrying PII, like a customer-service log.
  english.txt  ASCII lines only (the corpus's English lines and English prose), for comparing
               with Presidio, which has no Chinese recognizers.
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "crates", "guard", "tests", "fixtures", "pii_corpus.jsonl")

PROSE_ZH = [
    "您好，请问有什么可以帮您？我们的营业时间是周一至周五上午九点到下午五点。",
    "如需修改密码，请登录手机银行，在“我的”页面选择“安全设置”。",
    "本次转账已受理，预计两个工作日内到账，请留意短信通知。",
    "非常抱歉给您带来不便，我们已将您的问题反馈给相关部门处理。",
    "理财产品有风险，投资需谨慎，过往业绩不代表未来表现。",
    "根据监管要求，大额现金存取需提前一天预约。",
]
PROSE_EN = [
    "Thank you for contacting customer service; how can I help you today?",
    "Our branches are open from 9 am to 5 pm, Monday to Friday, except public holidays.",
    "To reset your password, open the app, go to Settings and choose Security.",
    "Your transfer has been accepted and should arrive within two business days.",
    "We are sorry for the inconvenience and have escalated the issue to the relevant team.",
    "Please note that investment products carry risk and past returns are no guarantee.",
]


def write(path, lines_pii, prose, megabytes, rng):
    target = megabytes * 1_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            line = rng.choice(lines_pii) if rng.random() < 0.25 else " ".join(rng.choices(prose, k=2))
            data = line + "\n"
            f.write(data)
            written += len(data.encode("utf-8"))
    return written


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--mixed-mb", type=int, default=100)
    ap.add_argument("--english-mb", type=int, default=10)
    args = ap.parse_args()
    texts = [json.loads(line)["text"] for line in open(CORPUS, encoding="utf-8")]
    english = [t for t in texts if t.isascii()]
    os.makedirs(args.out_dir, exist_ok=True)
    rng = random.Random(11643)
    n = write(os.path.join(args.out_dir, "mixed.txt"), texts, PROSE_ZH + PROSE_EN, args.mixed_mb, rng)
    m = write(os.path.join(args.out_dir, "english.txt"), english, PROSE_EN, args.english_mb, rng)
    print(f"mixed.txt {n} bytes, english.txt {m} bytes")


if __name__ == "__main__":
    main()
