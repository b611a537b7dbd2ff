#!/usr/bin/env python3
"""Resident memory of `reef serve` per batch size: starts BINARY serving
MODEL on 127.0.0.1:8010/8011, sends one FP32 request at batch 1, 2, 3 and 4
in turn over HTTP (random inputs) and prints the server's VmRSS when ready
and after each request, with each request's time.

    python3 scripts/serve_rss.py target/release/reef resnet50
"""
import json, subprocess, sys, time, urllib.request, random
binary, model = sys.argv[1], sys.argv[2]
p = subprocess.Popen([binary, "serve", "--models", model, "--http", "127.0.0.1:8010", "--grpc", "127.0.0.1:8011"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    return int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
try:
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:8010/v2/models/{model}/ready", timeout=1); break
        except Exception: time.sleep(0.5)
    meta = json.load(urllib.request.urlopen(f"http://127.0.0.1:8010/v2/models/{model}"))
    shape = meta["inputs"][0]["shape"][1:]
    n = 1
    for d in shape: n *= d
    out = [f"ready: {rss()} MB"]
    for b in [1, 2, 3, 4]:
        body = {"inputs": [{"name": meta["inputs"][0]["name"], "shape": [b] + shape, "datatype": "FP32",
                            "data": [random.random() for _ in range(b * n)]}]}
        t0 = time.time()
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:8010/v2/models/{model}/infer", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"}), timeout=300).read()
        out.append(f"after batch {b}: {rss()} MB ({time.time() - t0:.1f} s)")
    print(f"{binary} {model}: " + "; ".join(out))
finally:
    p.terminate(); p.wait()
