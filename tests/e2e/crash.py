#!/usr/bin/env python3
"""Crash safety of the interaction store: `kill -9` the real server during a load of 200
requests with feedback, restart it on the same SQLite file, and check the README's promise.
Usage: crash.py PATH/TO/luodi

Promise checked: every feedback that got its 201 is stored (feedback is committed before the
answer); every interaction answered more than 1 s before the kill is stored (the writer
commits within flush_ms = 200 ms); nothing is stored twice; the database passes SQLite's
integrity check and the restarted server serves it. Prints 'N passed, N failed'.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = sys.argv[1]
home = tempfile.mkdtemp()
db = os.path.join(home, "luodi.db")
results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port):
    proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--embedding-model", "",
                             "--store-url", f"sqlite://{db}", "--cache-mode", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start")


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers.get("x-request-id"), json.loads(r.read())


port = free_port()
server = start(port)
answered = {}   # request id -> monotonic time the answer arrived
rated = set()   # request ids whose feedback got 201
lock = threading.Lock()
stop = threading.Event()
counter = iter(range(200))


def worker():
    while not stop.is_set():
        with lock:
            i = next(counter, None)
        if i is None:
            return
        try:
            _, rid, _ = post(port, "/v1/completions", {"model": "smollm2-135m", "prompt": f"Question {i}:", "max_tokens": 4,
                                                       "temperature": 0})
            with lock:
                answered[rid] = time.monotonic()
            status, _, _ = post(port, "/v1/feedback", {"request_id": rid, "rating": 1 if i % 2 else -1,
                                                       "reviewer": "load"})
            if status == 201:
                with lock:
                    rated.add(rid)
        except OSError:
            return  # the server is gone


threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
while len(answered) < 120 and any(t.is_alive() for t in threads):
    time.sleep(0.05)
time.sleep(1.2)  # keep the load running past the point we will check against
killed_at = time.monotonic()
server.send_signal(signal.SIGKILL)
server.wait()
stop.set()
for t in threads:
    t.join(30)


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001
        results.append((name, e))
        print(f"FAIL {name}: {e!r}", flush=True)


def integrity():
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


server = start(port)  # restarts on the same file (WAL recovery)


def stored_ids():
    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT id FROM luodi_interactions")]
    fb = {r[0] for r in con.execute("SELECT request_id FROM luodi_feedback")}
    con.close()
    return ids, fb


def promise_kept():
    ids, fb = stored_ids()
    assert len(ids) == len(set(ids)), "an interaction stored twice"
    old = {rid for rid, at in answered.items() if at < killed_at - 1.0}
    missing = old - set(ids)
    assert len(old) >= 100, f"only {len(old)} answers before the cut-off: the load was too short"
    assert not missing, f"{len(missing)} interactions answered >1 s before the kill are missing"
    lost_feedback = rated - fb
    assert not lost_feedback, f"{len(lost_feedback)} acknowledged feedbacks are missing"
    print(f"     {len(answered)} answered, {len(rated)} rated, {len(ids)} stored after kill -9", flush=True)


def restarted_server_serves_it():
    rid = next(iter(rated))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/interactions/{rid}", timeout=10) as r:
        item = json.loads(r.read())
    assert item["id"] == rid and item["feedback"], item


for name, fn in [("SQLite integrity check after kill -9", integrity),
                 ("every acknowledged feedback and every answer older than 1 s is stored, once", promise_kept),
                 ("the restarted server serves the store", restarted_server_serves_it)]:
    check(name, fn)
server.terminate()
server.wait(30)
failed = sum(1 for _, e in results if e)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
