#!/usr/bin/env python3
"""The review console in a real browser: headless Chromium driven through ChromeDriver
(selenium), against the real `luodi serve` with the real model and a SQLite store.
Usage: console.py PATH/TO/luodi

Keys come from `luodi keys create`: a client key is refused in the console (403, shown);
with a reviewer key it loads /console, filters to unreviewed answers, opens one, writes a
correction and a rating with the keyboard, saves, and checks through the API that the
correction is stored; then the low-rating filter finds it. Prints 'N passed, N failed'.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select, WebDriverWait

BIN = sys.argv[1]
results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure
        results.append((name, e))
        print(f"FAIL {name}: {str(e)[:300]!r}", flush=True)


port = free_port()
home = tempfile.mkdtemp()
STORE = f"sqlite://{home}/luodi.db"


def create_key(role):
    out = subprocess.run([BIN, "keys", "create", "--name", f"e2e {role}", "--role", role, "--store-url", STORE],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


KEY = create_key("reviewer")          # keys made with `luodi keys create`, stored hashed
CLIENT_KEY = create_key("client")
server = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port),
                           "--embedding-model", "", "--store-url", STORE],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 120
while time.time() < deadline:
    try:
        if urllib.request.urlopen(base + "/ready", timeout=2).status == 200:
            break
    except OSError:
        time.sleep(0.3)
else:
    server.kill()
    sys.exit("server did not start")

client = openai.OpenAI(base_url=base + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60)
raw = client.chat.completions.with_raw_response.create(
    model="smollm2-135m", messages=[{"role": "user", "content": "你们周末营业吗？"}], max_tokens=12, temperature=0)
request_id = raw.headers["x-request-id"]
answer = raw.parse().choices[0].message.content

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
wait = WebDriverWait(driver, 20)
CORRECTION = "您好，我们周六营业，周日休息。"


def stored():
    req = urllib.request.Request(f"{base}/v1/interactions/{request_id}", headers={"Authorization": f"Bearer {KEY}"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def item():
    return wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'#list li[data-id="{request_id}"]'))


def client_key_is_refused():
    driver.get(base + "/console")
    key = driver.find_element(By.ID, "key")
    key.clear()
    key.send_keys(CLIENT_KEY)
    driver.find_element(By.ID, "reload").click()
    wait.until(lambda d: "`client`" in d.find_element(By.ID, "status").text)
    assert not driver.find_elements(By.CSS_SELECTOR, "#list li")


def load_and_filter():
    driver.get(base + "/console")
    assert "luodi" in driver.title
    key = driver.find_element(By.ID, "key")
    key.clear()
    key.send_keys(KEY)
    Select(driver.find_element(By.ID, "filter")).select_by_value("unreviewed")
    driver.find_element(By.ID, "reload").click()
    item().click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail .answer").text.strip() == answer.strip())


def correct_and_save():
    box = driver.find_element(By.CSS_SELECTOR, "#detail .correction")
    box.clear()
    box.send_keys(CORRECTION)
    Select(driver.find_element(By.CSS_SELECTOR, "#detail .rating")).select_by_value("-1")
    box.send_keys(Keys.CONTROL, Keys.ENTER)  # the keyboard shortcut saves
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("saved"))
    record = stored()
    current = [f for f in record["feedback"] if f["superseded_ms"] is None]
    assert current and current[-1]["correction"] == CORRECTION and current[-1]["rating"] == -1, record["feedback"]


def listed(filter_value):
    """The request ids listed once the console has reloaded with `filter_value`."""
    driver.execute_script("document.getElementById('status').textContent = ''")
    Select(driver.find_element(By.ID, "filter")).select_by_value(filter_value)
    wait.until(lambda d: d.find_element(By.ID, "status").text.endswith("interactions"))
    return [li.get_attribute("data-id") for li in driver.find_elements(By.CSS_SELECTOR, "#list li")]


def low_rating_filter_finds_it():
    assert request_id in listed("low")
    assert request_id not in listed("unreviewed")


def page_needs_no_cdn():
    html = urllib.request.urlopen(base + "/console", timeout=5).read().decode()
    assert "src=\"http" not in html and "href=\"http" not in html


try:
    for name, fn in [("a client key is refused (403) in the console", client_key_is_refused),
                     ("console loads and filters to unreviewed answers", load_and_filter),
                     ("a correction and rating typed in the browser are stored", correct_and_save),
                     ("the low-rating filter finds it, the unreviewed one no longer does", low_rating_filter_finds_it),
                     ("the page loads nothing from outside", page_needs_no_cdn)]:
        check(name, fn)
finally:
    driver.quit()
    server.kill()
failed = sum(1 for _, e in results if e)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
