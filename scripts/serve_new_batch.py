#!/usr/bin/env python3
"""Latency of small RT requests while another client's request needs a
model compiled for a new batch size: starts `reef serve` (BINARY, extra
flags after the model names), sends resnet_tiny RT requests back to back
over HTTP for WINDOW seconds and, one second in, one request of BIG at
batch 2 from another thread. Prints the small requests' median and
maximum latency before, during and after the big request.

    python3 scripts/serve_new_batch.py target/release/reef vgg19 [--busy-poll 1]
"""
import json, random, statistics, subprocess, sys, threading, time, urllib.request

binary, big, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
WINDOW = 12.0
url = "http://127.0.0.1:8020"
p = subprocess.Popen([binary, "serve", "--models", f"resnet_tiny,{big}", "--http", "127.0.0.1:8020",
                      "--grpc", "127.0.0.1:8021", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def post(model, body):
    r = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(r, timeout=300).read()

def image(model, batch):
    meta = json.load(urllib.request.urlopen(f"{url}/v2/models/{model}"))
    shape = meta["inputs"][0]["shape"][1:]
    n = 1
    for d in shape:
        n *= d
    return {"inputs": [{"name": meta["inputs"][0]["name"], "shape": [batch] + shape, "datatype": "FP32",
                        "data": [random.random() for _ in range(batch * n)]}]}

try:
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/v2/models/{big}/ready", timeout=1)
            break
        except Exception:
            time.sleep(0.5)
    small = image("resnet_tiny", 1)
    small["parameters"] = {"priority": "rt"}
    big_body = image(big, 2)
    span = {}
    def send_big():
        span["start"] = time.time()
        post(big, big_body)
        span["end"] = time.time()
    lat = []
    t0 = time.time()
    started = False
    while time.time() - t0 < WINDOW:
        if not started and time.time() - t0 > 1.0:
            threading.Thread(target=send_big, daemon=True).start()
            started = True
        s = time.time()
        post("resnet_tiny", small)
        lat.append((s, (time.time() - s) * 1e3))
    while "end" not in span:
        time.sleep(0.1)
    def summary(name, xs):
        xs = [l for _, l in xs]
        if not xs:
            return f"{name}: none"
        return f"{name}: {len(xs)} requests, median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms"
    print(f"{binary} {' '.join(extra)}: the {big} batch-2 request took {span['end'] - span['start']:.1f} s")
    print("  " + summary("before", [x for x in lat if x[0] < span["start"]]))
    print("  " + summary("during", [x for x in lat if span["start"] <= x[0] < span["end"]]))
    print("  " + summary("after", [x for x in lat if x[0] >= span["end"]]))
finally:
    p.terminate()
    p.wait()
