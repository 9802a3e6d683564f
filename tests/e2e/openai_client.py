#!/usr/bin/env python3
"""End-to-end: the real `luodi serve` on 127.0.0.1 with the real default model, driven by the
official `openai` package and curl. Usage: openai_client.py PATH/TO/luodi

Checks non-streaming and streaming (with usage) chat, completions, /generate through curl,
error shapes through the client, and a graceful SIGTERM (in-flight request finishes, exit 0).
Prints 'N passed, N failed' and exits non-zero on any failure.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import openai

BIN = sys.argv[1]
MODEL = "smollm2-135m"
results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        results.append((name, e))
        print(f"FAIL {name}: {e!r}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port, *extra):
    proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--model", MODEL, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError("server exited early:\n" + proc.stdout.read())
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


port = free_port()
server = start(port, "--api-key", "test-key")
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test-key", max_retries=0, timeout=60)


def chat_non_streaming():
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the capital of France?"}],
                                       max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def chat_streaming_with_usage():
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "请用一句话介绍你自己。"}],
                                            max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text and "\ufffd" not in text, text
    assert finish == "length", finish
    assert usage and usage.completion_tokens == 12, usage


def same_answer_streamed_or_not():
    # no-store: both answers come from the engine, not one from the response cache.
    msgs = [{"role": "user", "content": "Name three colors."}]
    fresh = {"Cache-Control": "no-store"}
    whole = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=20, temperature=0,
                                           extra_headers=fresh).choices[0].message.content
    parts = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=20, temperature=0, stream=True,
                                           extra_headers=fresh)
    assert whole == "".join(c.choices[0].delta.content or "" for c in parts if c.choices)


def logprobs():
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 2
    assert content[0].logprob <= 0


def completions():
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=6, temperature=0)
    assert r.choices[0].text.startswith(" 6"), r.choices[0].text


def errors_through_the_client():
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], top_p=0)
        raise AssertionError("top_p=0 accepted")
    except openai.BadRequestError as e:
        assert e.body["param"] == "top_p", e.body
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError:
        pass
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError:
        pass


def models():
    assert [m.id for m in client.models.list()] == [MODEL, "minilm-l6"]


def embeddings():
    # The official client asks for base64 by default and decodes it.
    r = client.embeddings.create(model="minilm-l6", input=["How do I reset my password?",
                                                           "I forgot my password, how can I change it?",
                                                           "今天天气很好。"])
    vecs = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2] and all(len(v) == 384 for v in vecs)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert abs(dot(vecs[0], vecs[0]) - 1) < 1e-4
    assert dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2]) + 0.2, (dot(vecs[0], vecs[1]), dot(vecs[0], vecs[2]))
    assert r.usage.prompt_tokens > 0
    single = client.embeddings.create(model="minilm-l6", input="How do I reset my password?", encoding_format="float")
    assert abs(dot(single.data[0].embedding, vecs[0]) - 1) < 1e-4


def generate_with_curl():
    out = subprocess.run(["curl", "-sS", "-f", f"http://127.0.0.1:{port}/generate", "-H", "Authorization: Bearer test-key",
                          "-H", "Content-Type: application/json",
                          "-d", json.dumps({"prompt": "What are your opening hours?", "max_length": 10})],
                         capture_output=True, text=True, check=True).stdout
    body = json.loads(out)
    assert isinstance(body["response"], str) and body["response"], body


def completion_tokens_counter():
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    with urllib.request.urlopen(req, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("luodi_completion_tokens_total"):
                return float(line.split()[-1])
    return 0.0


def disconnect_stops_generation():
    before = completion_tokens_counter()
    # Counting never reaches an end-of-text token: without cancellation all 400 would come.
    stream = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=400, temperature=0, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        time.sleep(0.5)
        ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5).read())
        if ready["running"] == 0:
            break
    generated = completion_tokens_counter() - before
    assert 0 < generated < 400, f"{generated} tokens generated after the client left"


def deadline_ends_runaway_generation():
    p2 = free_port()
    short = start(p2, "--request-timeout", "0.3")
    try:
        c2 = openai.OpenAI(base_url=f"http://127.0.0.1:{p2}/v1", api_key="none", max_retries=0, timeout=60)
        r = c2.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=2000, temperature=0)
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens < 2000, r.usage
    finally:
        short.kill()
        short.wait()


def guard_on_the_real_model():
    # Learn a word of the greedy answer from the unguarded lexicon, then forbid it.
    msgs = [{"role": "user", "content": "Describe a sunny day at the beach."}]
    answer = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0).choices[0].message.content
    words = [w.strip(".,!?;:\"'") for w in answer.split()]
    word = next(w for w in words[3:] if len(w) >= 4 and w.isalpha())
    home = tempfile.mkdtemp()
    with open(os.path.join(home, "forbidden.txt"), "w") as f:
        f.write(word + "\n")
    with open(os.path.join(home, "luodi.toml"), "w") as f:
        f.write('[guard.pii.entities]\nCN_ID = "block"\n'
                '[[guard.lexicons]]\ncategory = "demo"\naction = "block"\npath = "forbidden.txt"\n'
                '[styles]\nprofessional = { tone = "professional", vocabulary = "formal", language = "en" }\n')
    p3 = free_port()
    guarded = start(p3, "--config", os.path.join(home, "luodi.toml"))
    try:
        c3 = openai.OpenAI(base_url=f"http://127.0.0.1:{p3}/v1", api_key="none", max_retries=0, timeout=60)
        stream = c3.chat.completions.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0, stream=True)
        text, finish = "", None
        for chunk in stream:
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        assert finish == "content_filter", (finish, text, word)
        assert word.lower() not in text.lower(), (text, word)
        whole = c3.chat.completions.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0)
        assert whole.choices[0].finish_reason == "content_filter", whole
        try:
            c3.chat.completions.create(model=MODEL, max_tokens=4, messages=[
                {"role": "user", "content": "我的身份证号是11010519491231002X，请帮我查询。"}])
            raise AssertionError("a blocked ID number was accepted")
        except openai.BadRequestError as e:
            assert e.body["code"] == "pii_blocked" and e.body["param"] == "messages[0].content", e.body
            assert "11010519491231002X" not in json.dumps(e.body), e.body
        r = c3.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       extra_body={"style": "professional"})
        assert r.choices[0].message.content is not None
        try:
            c3.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       extra_headers={"x-luodi-style": "pirate"})
            raise AssertionError("an unknown style was accepted")
        except openai.BadRequestError as e:
            assert e.body["param"] == "x-luodi-style" and "professional" in e.body["message"], e.body
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{p3}/metrics", timeout=5).read().decode()
        assert 'luodi_guard_actions_total{entity="CN_ID",action="block"}' in metrics, metrics
    finally:
        guarded.kill()
        guarded.wait()


def response_cache():
    msgs = [{"role": "user", "content": "What are your opening hours?"}]
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0)
    assert first.headers.get("x-cache") == "miss", first.headers
    time.sleep(0.3)  # the answer is stored off the request path
    second = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0)
    assert second.headers.get("x-cache") == "hit", second.headers
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    streamed = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=24,
                                                                temperature=0, stream=True)
    assert streamed.headers.get("x-cache") == "hit", streamed.headers
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text == first.parse().choices[0].message.content
    sampled = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=4, temperature=0.9)
    assert sampled.headers.get("x-cache") == "bypass", sampled.headers
    # The CLI reads and clears the running server's cache.
    cli = [BIN, "cache", "stats", "--url", f"http://127.0.0.1:{port}", "--api-key", "test-key", "--json"]
    stats = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert stats["store"] == "memory" and stats["entries"] >= 1, stats
    cleared = subprocess.run([BIN, "cache", "clear", "--url", f"http://127.0.0.1:{port}", "--api-key", "test-key"],
                             capture_output=True, text=True, check=True).stdout
    assert cleared.startswith("removed "), cleared
    again = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0)
    assert again.headers.get("x-cache") == "miss", again.headers


def two_replicas_share_redis():
    prefix = f"luodi-e2e:{os.getpid()}:{time.time_ns()}"
    home = tempfile.mkdtemp()
    with open(os.path.join(home, "luodi.toml"), "w") as f:
        f.write(f'[cache]\nredis_url = "redis://127.0.0.1:6379"\nredis_prefix = "{prefix}"\n')
    ports = [free_port(), free_port()]
    servers = [start(p, "--config", os.path.join(home, "luodi.toml"), "--embedding-model", "") for p in ports]
    try:
        clients = [openai.OpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key="none", max_retries=0, timeout=60)
                   for p in ports]
        msgs = [{"role": "user", "content": "如何修改我的收货地址？"}]
        a = clients[0].chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0)
        assert a.headers.get("x-cache") == "miss", a.headers
        time.sleep(0.3)
        b = clients[1].chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=16, temperature=0)
        assert b.headers.get("x-cache") == "hit", b.headers
        assert b.parse().choices[0].message.content == a.parse().choices[0].message.content
        out = subprocess.run([BIN, "cache", "clear", "--url", f"http://127.0.0.1:{ports[1]}"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "removed 1 entries", out
    finally:
        for s in servers:
            s.kill()
            s.wait()


def graceful_shutdown():
    got = {}

    def slow():
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell a long story."}],
                                           max_tokens=60, temperature=0)
        got["finish"] = r.choices[0].finish_reason

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    server.send_signal(signal.SIGTERM)
    t.join(60)
    code = server.wait(60)
    assert got.get("finish") == "length", got
    assert code == 0, code


for name, fn in [("chat, non-streaming", chat_non_streaming), ("chat, streaming with usage (Chinese)", chat_streaming_with_usage),
                 ("same answer streamed or not", same_answer_streamed_or_not), ("logprobs", logprobs),
                 ("completions", completions), ("errors through the client", errors_through_the_client),
                 ("models", models), ("embeddings (base64 and float)", embeddings),
                 ("/generate with curl", generate_with_curl),
                 ("client disconnect stops generation", disconnect_stops_generation),
                 ("request deadline ends a runaway generation", deadline_ends_runaway_generation),
                 ("guard: PII block, output lexicon on a stream, styles (real model)", guard_on_the_real_model),
                 ("response cache: hit, streamed replay, bypass, luodi cache stats|clear", response_cache),
                 ("two replicas share the cache through the real Redis", two_replicas_share_redis),
                 ("SIGTERM finishes in-flight requests, exit 0", graceful_shutdown)]:
    check(name, fn)

if server.poll() is None:
    server.kill()
failed = sum(1 for _, e in results if e)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
