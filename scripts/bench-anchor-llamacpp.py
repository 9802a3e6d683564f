#!/usr/bin/env python3
"""llama.cpp's figures for the same tests as `luodi bench engine`, through the llama-cpp-python
bindings (`pip install llama-cpp-python==0.3.36`, which compiles llama.cpp for the host CPU).

pp<N>: one batch of N prompt tokens in a fresh context; tg<N>: N tokens decoded one at a time,
as llama-bench measures them. Usage: bench-anchor-llamacpp.py MODEL.gguf THREADS [REPS]
"""
import json
import statistics
import sys
import time

from llama_cpp import Llama

path, threads = sys.argv[1], int(sys.argv[2])
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512,
            n_ubatch=512, verbose=False)
text = ("Dear customer, thank you for contacting our support team. Your order 4521 was shipped on Monday "
        "and should arrive within three business days. ")
piece = llm.tokenize(text.encode(), add_bos=False)


def pp(n):
    tokens = (piece * (n // len(piece) + 1))[:n]
    llm.reset()
    llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
    start = time.perf_counter()
    llm.eval(tokens)
    return n / (time.perf_counter() - start)


def tg(n):
    llm.reset()
    llm.eval([piece[0]])
    start = time.perf_counter()
    for i in range(n):
        llm.eval([piece[(i + 1) % len(piece)]])
    return n / (time.perf_counter() - start)


pp(16)  # warm-up
rows = {}
for name, fn, n in [("pp64", pp, 64), ("pp512", pp, 512), ("tg128", tg, 128)]:
    runs = [fn(n) for _ in range(reps)]
    rows[name] = {"mean": statistics.mean(runs), "runs": runs}
print(json.dumps({"engine": "llama.cpp (llama-cpp-python 0.3.36)", "threads": threads, "results": rows}, indent=1))
