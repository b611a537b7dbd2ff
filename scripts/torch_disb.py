#!/usr/bin/env python3
"""PyTorch baselines for reef's DISB benchmark (runs on the GPU machine, no network).

Reads a reef workload JSON (workloads/*.json), builds the same models with
torchvision / transformers (weights=None, eval; --weights DIR loads
DIR/<model>.safetensors), and runs the workload in these modes:

  torch-seq-<v>     one thread: the RT queue is served first, one request at a time
  torch-stream-<v>  one thread per client; RT clients on high-priority CUDA streams,
                    each BE client on its own low-priority stream
  rt-alone-<v>      the workload without its BE tasks, served like torch-seq

for each variant <v> in {eager, graph} (graph: one CUDA graph per task and batch,
captured with static input buffers and replayed). Every request copies its input
from pinned host memory, runs, and copies its output back, as a serving system
would. Arrivals are fixed in advance; latency is measured from the scheduled
arrival. Prints the Markdown table and writes the JSON of
crates/reef-bench/src/schema.rs (hdr_* fields null, sched null).
"""
import argparse
import json
import math
import os
import sys
import threading
import time

SCHEMA = "reef-disb-result/1"
IMAGE_HW = {"inception_v3": 299}
CLOCK = time.perf_counter


# ---------------------------------------------------------------- workloads
def load_workload(path):
    with open(path) as f:
        w = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    if not w.get("tasks"):
        sys.exit(f"invalid workload '{path}': the workload has no tasks")
    if not (w.get("duration_s", 0) > 0):
        sys.exit(f"invalid workload '{path}': duration_s must be > 0")
    for i, t in enumerate(w["tasks"]):
        load = t.get("load", {})
        kind = load.get("type")
        if t.get("priority") not in ("rt", "be"):
            sys.exit(f"task {i}: unknown priority {t.get('priority')!r} (expected 'rt' or 'be')")
        if kind in ("periodic", "poisson"):
            rate = load.get("frequency" if kind == "periodic" else "rate", 0)
            if not (rate > 0):
                sys.exit(f"task {i}: {kind} rate must be > 0 Hz, got {rate}")
        elif kind == "trace":
            if load.get("arrivals_ms") is None:
                if not load.get("path"):
                    sys.exit(f"task {i}: trace load needs 'arrivals_ms' or 'path'")
                p = load["path"] if os.path.isabs(load["path"]) else os.path.join(base, load["path"])
                load["arrivals_ms"] = read_trace(p)
        elif kind != "continuous":
            sys.exit(f"task {i}: unknown load type {kind!r} (periodic, poisson, continuous, trace)")
        t.setdefault("batch_size", 1)
        if t.get("seed") is None:
            t["seed"] = (0x5EED0000 ^ (i * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF
    return w


def read_trace(path):
    text = open(path).read()
    if text.lstrip()[:1] in "[{":
        v = json.loads(text)
        return v["arrivals_ms"] if isinstance(v, dict) else v
    return [float(x) for x in (l.strip() for l in text.splitlines()) if x and not x.startswith("#")]


def label(t):
    return t.get("name") or f"{t['priority']}-{t['model']}"


def schedule(t, duration_s):
    """Arrival offsets (s) for open-loop loads, None for continuous."""
    load = t["load"]
    kind = load["type"]
    if kind == "continuous":
        return None
    if kind == "periodic":
        f = load["frequency"]
        return [k / f for k in range(int(math.ceil(duration_s * f))) if k / f < duration_s]
    if kind == "poisson":
        import random
        rng, out, x = random.Random(t["seed"]), [], 0.0
        while True:
            x += rng.expovariate(load["rate"])
            if x >= duration_s:
                return out
            out.append(x)
    return sorted(ms / 1000.0 for ms in load["arrivals_ms"] if 0 <= ms < duration_s * 1000.0)


# ---------------------------------------------------------------- models
def build_model(name, args):
    import torch
    import torchvision.models as tvm
    if name.startswith("bert"):
        from transformers import BertConfig, BertModel
        if name == "bert_tiny":  # as reef-zoo's bert_tiny
            cfg = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=256, max_position_embeddings=64)
        else:
            cfg = BertConfig()  # bert-base sizes, with the pooler as in reef-zoo
        model, kind = BertModel(cfg), "bert"
    elif name == "inception_v3":
        model, kind = tvm.inception_v3(weights=None, aux_logits=False, init_weights=True), "image"
    elif name == "resnet_tiny":  # smoke tests only: torchvision widths, not reef-zoo's 8-64
        model, kind = tvm.resnet.ResNet(tvm.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10), "image"
    elif hasattr(tvm, name):
        model, kind = getattr(tvm, name)(weights=None), "image"
    else:
        sys.exit(f"unknown model '{name}' (torchvision name, inception_v3, bert_base, bert_tiny, resnet_tiny)")
    if args.weights:
        from safetensors.torch import load_file
        path = os.path.join(args.weights, f"{name}.safetensors")
        res = model.load_state_dict(load_file(path), strict=False)
        print(f"# {name}: loaded {path} (missing {len(res.missing_keys)}, unexpected {len(res.unexpected_keys)})")
    return model.eval().to(args.device), kind


def host_inputs(kind, name, batch, args, seed):
    """A pool of pinned host input sets for one task."""
    import torch
    g = torch.Generator().manual_seed(seed % (2**63))
    pool = []
    seq = 16 if name == "bert_tiny" else args.seq_len
    for _ in range(args.pool):
        if kind == "bert":
            ids = torch.randint(0, 1000, (batch, seq), generator=g, dtype=torch.int64)
            pool.append([ids.pin_memory(), torch.ones(batch, seq, dtype=torch.int64).pin_memory()])
        else:
            hw = 32 if name.endswith("_tiny") else IMAGE_HW.get(name, 224)
            pool.append([torch.randn(batch, 3, hw, hw, generator=g).pin_memory()])
    return pool


def first_tensor(out):
    import torch
    if isinstance(out, torch.Tensor):
        return out
    return out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state


class Exec:
    """Runs one task's requests: H2D copy, forward (eager or graph replay), D2H copy."""

    def __init__(self, model, kind, pool, stream, graph, args):
        import torch
        self.model, self.kind, self.pool, self.stream, self.graph = model, kind, pool, stream, None
        self.static_in = [x.to(args.device) for x in pool[0]]
        self.use_mask = kind == "bert"
        with torch.inference_mode():
            side = torch.cuda.Stream(device=args.device)
            side.wait_stream(torch.cuda.current_stream(args.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    out = self.forward()
            torch.cuda.current_stream(args.device).wait_stream(side)
            torch.cuda.synchronize(args.device)
            if graph:
                try:
                    self.graph, self.static_out = self.capture(torch, args)
                except RuntimeError as e:
                    if kind != "bert":
                        raise
                    # A data-dependent check on the all-ones mask breaks capture: run
                    # without it (the same result for an all-ones mask).
                    print(f"# capture with attention_mask failed ({str(e)[:80]}); capturing without it")
                    self.use_mask = False
                    self.graph, self.static_out = self.capture(torch, args)
                out = self.static_out
            self.host_out = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)

    def forward(self):
        x = self.static_in
        if self.kind == "bert":
            return first_tensor(self.model(input_ids=x[0], attention_mask=x[1] if self.use_mask else None))
        return first_tensor(self.model(x[0]))

    def capture(self, torch, args):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = self.forward()
        torch.cuda.synchronize(args.device)
        return g, out

    def __call__(self, k):
        import torch
        with torch.cuda.stream(self.stream):
            for dst, src in zip(self.static_in, self.pool[k % len(self.pool)]):
                dst.copy_(src, non_blocking=True)
            out = self.static_out if self.graph is not None else None
            if self.graph is not None:
                self.graph.replay()
            else:
                out = self.forward()
            self.host_out.copy_(out, non_blocking=True)
        self.stream.synchronize()


# ---------------------------------------------------------------- running
def wait_until(target):
    while True:
        left = target - CLOCK()
        if left <= 0:
            return
        if left > 0.0005:
            time.sleep(left - 0.0005)


class Recorder:
    def __init__(self, t0, warmup_s):
        self.t0, self.warmup_s, self.records, self.lock = t0, warmup_s, [], threading.Lock()

    def add(self, task, prio, scheduled, done, lag=None, error=None):
        arr = scheduled - self.t0
        rec = {"task": task, "priority": prio, "arrival_ms": arr * 1e3, "latency_ms": (done - scheduled) * 1e3,
               "ok": error is None, "error": error, "warmup": arr < self.warmup_s, "queued_ms": None,
               "preemptions": 0, "kernels_rerun": 0, "dispatch_lag_us": None if lag is None else lag * 1e6}
        with self.lock:
            self.records.append(rec)


def serve(ex, k, rec, i, prio, scheduled, lag):
    try:
        ex(k)
        rec.add(i, prio, scheduled, CLOCK(), lag)
    except RuntimeError as e:
        print(f"# task {i} request failed: {e}", file=sys.stderr)
        rec.add(i, prio, scheduled, CLOCK(), lag, error="internal")


def run_seq(tasks, execs, scheds, t0, end, rec):
    """One thread; among due requests the earliest RT one first, else the earliest BE one."""
    nxt = [0] * len(tasks)  # open loop: next arrival index; closed loop: requests issued
    ready = [t0 if s is None else None for s in scheds]  # closed loop: when the next request arrives
    while True:
        now, best, future = CLOCK(), None, []
        for i, t in enumerate(tasks):
            if scheds[i] is None:
                at = ready[i] if ready[i] < end else None
            else:
                at = t0 + scheds[i][nxt[i]] if nxt[i] < len(scheds[i]) else None
            if at is None:
                continue
            if at > now:
                future.append(at)
                continue
            key = (0 if t["priority"] == "rt" else 1, at)
            if best is None or key < best[0]:
                best = (key, i, at)
        if best is None:
            if not future:
                return
            wait_until(min(future))
            continue
        _, i, at = best
        lag = None if scheds[i] is None else max(0.0, now - at)
        serve(execs[i], nxt[i], rec, i, tasks[i]["priority"], at, lag)
        nxt[i] += 1
        if scheds[i] is None:
            ready[i] = CLOCK()


def client(i, t, ex, sched, t0, end, rec):
    import torch
    with torch.inference_mode():
        if sched is None:
            wait_until(t0)
            k = 0
            while (sent := CLOCK()) < end:
                serve(ex, k, rec, i, t["priority"], sent, None)
                k += 1
        else:
            for k, off in enumerate(sched):
                at = t0 + off
                wait_until(at)
                serve(ex, k, rec, i, t["priority"], at, max(0.0, CLOCK() - at))


def run_mode(label_, w, models, args, policy, graph):
    import torch
    dev = torch.device(args.device)
    duration = w["duration_s"]
    warmup = w.get("warmup_s", min(5.0, duration / 10.0)) if args.warmup is None else args.warmup
    tasks = w["tasks"]
    seq_stream = torch.cuda.Stream(device=dev)
    execs = []
    for t in tasks:
        model, kind = models[t["model"]]
        if policy == "seq":
            stream = seq_stream
        else:
            stream = torch.cuda.Stream(device=dev, priority=-1 if t["priority"] == "rt" else 0)
        pool = host_inputs(kind, t["model"], t["batch_size"], args, t["seed"])
        execs.append(Exec(model, kind, pool, stream, graph, args))
    scheds = [schedule(t, duration) for t in tasks]
    torch.cuda.synchronize(dev)
    t0 = CLOCK() + 0.2
    end = t0 + duration
    rec = Recorder(t0, warmup)
    print(f"# {w['name']} {label_}: {len(tasks)} tasks, {duration} s", file=sys.stderr)
    if policy == "seq":
        with torch.inference_mode():
            run_seq(tasks, execs, scheds, t0, end, rec)
    else:
        threads = [threading.Thread(target=client, args=(i, t, execs[i], scheds[i], t0, end, rec), daemon=True)
                   for i, t in enumerate(tasks)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    del execs
    torch.cuda.empty_cache()
    return summarize(label_, w, tasks, warmup, rec.records, torch.cuda.get_device_name(dev))


# ---------------------------------------------------------------- figures (as figures.rs)
def pct(sorted_v, q):
    if not sorted_v:
        return 0.0
    n = len(sorted_v)
    return sorted_v[min(max(math.ceil(q * n), 1), n) - 1]


def lat(values):
    v = sorted(values)
    if not v:
        return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0,
                "hdr_p50_ms": None, "hdr_p95_ms": None, "hdr_p99_ms": None, "hdr_max_ms": None}
    return {"count": len(v), "mean_ms": sum(v) / len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95),
            "p99_ms": pct(v, 0.99), "max_ms": v[-1],
            "hdr_p50_ms": None, "hdr_p95_ms": None, "hdr_p99_ms": None, "hdr_max_ms": None}


def summarize(mode, w, tasks, warmup, records, device):
    records.sort(key=lambda r: (r["arrival_ms"], r["task"]))
    dur_ms, warm_ms = w["duration_s"] * 1e3, warmup * 1e3
    measured = max(w["duration_s"] - warmup, 1e-300)
    meas = [r for r in records if r["ok"] and not r["warmup"]]
    win = [r for r in records if r["ok"] and warm_ms <= r["arrival_ms"] + r["latency_ms"] <= dur_ms]

    def errs(rs):
        out = {}
        for r in rs:
            if not r["ok"]:
                out[r["error"]] = out.get(r["error"], 0) + 1
        return dict(sorted(out.items()))

    lags = sorted(r["dispatch_lag_us"] for r in records if r["dispatch_lag_us"] is not None)
    per_task = []
    for i, t in enumerate(tasks):
        mine = [r for r in records if r["task"] == i]
        per_task.append({
            "task": i, "name": label(t), "model": t["model"], "priority": t["priority"],
            "load": t["load"]["type"], "batch_size": t["batch_size"], "submitted": len(mine),
            "completed_ok": sum(r["ok"] for r in mine), "errors": errs(mine),
            "throughput_rps": sum(r["task"] == i for r in win) / measured,
            "latency": lat([r["latency_ms"] for r in meas if r["task"] == i])})
    return {
        "mode": mode, "scheduler": None, "device": device, "duration_s": w["duration_s"], "warmup_s": warmup,
        "measured_s": measured, "submitted": len(records), "completed_ok": sum(r["ok"] for r in records),
        "errors": errs(records),
        "rt": lat([r["latency_ms"] for r in meas if r["priority"] == "rt"]),
        "be": lat([r["latency_ms"] for r in meas if r["priority"] == "be"]),
        "rt_throughput_rps": sum(r["priority"] == "rt" for r in win) / measured,
        "be_throughput_rps": sum(r["priority"] == "be" for r in win) / measured,
        "total_throughput_rps": len(win) / measured, "preemptions": 0, "kernels_rerun": 0, "sched": None,
        "dispatch_lag_us": {"count": len(lags), "p50_us": pct(lags, 0.5), "p99_us": pct(lags, 0.99),
                            "max_us": lags[-1] if lags else 0.0},
        "tasks": per_task, "records": records}


def compare(modes, baseline_of):
    out = []
    for m in modes:
        b = next((x for x in modes if x["mode"] == baseline_of(m["mode"]) and x["rt"]["count"] > 0), None)
        inc = (lambda x, y: 100.0 * (x / y - 1.0) if (b and y > 0 and m["rt"]["count"] > 0) else None)
        out.append({"mode": m["mode"], "baseline": baseline_of(m["mode"]), "rt_mean_ms": m["rt"]["mean_ms"],
                    "rt_p99_ms": m["rt"]["p99_ms"], "baseline_rt_mean_ms": b and b["rt"]["mean_ms"],
                    "baseline_rt_p99_ms": b and b["rt"]["p99_ms"],
                    "rt_mean_increase_pct": inc(m["rt"]["mean_ms"], b["rt"]["mean_ms"]) if b else None,
                    "rt_p99_increase_pct": inc(m["rt"]["p99_ms"], b["rt"]["p99_ms"]) if b else None,
                    "be_throughput_rps": m["be_throughput_rps"], "total_throughput_rps": m["total_throughput_rps"]})
    return out


def markdown(res):
    f = lambda v: "-" if v is None else f"{v:+.1f}%"
    lines = [f"### DISB {res['workload']['name']} ({res['device'] or 'unknown device'})", "",
             "| mode | RT mean ms | RT p50 | RT p95 | RT p99 | RT max | mean vs alone | p99 vs alone | BE req/s "
             "| total req/s | preemptions | preempt p50 us | preempt p99 us |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in res["modes"]:
        c = next((c for c in res["comparison"] if c["mode"] == m["mode"]), {})
        r = m["rt"]
        lines.append(f"| {m['mode']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} "
                     f"| {r['max_ms']:.3f} | {f(c.get('rt_mean_increase_pct'))} | {f(c.get('rt_p99_increase_pct'))} "
                     f"| {m['be_throughput_rps']:.1f} | {m['total_throughput_rps']:.1f} | {m['preemptions']} | - | - |")
    lines.append("")
    for m in res["modes"]:
        if m["errors"]:
            lines.append(f"- {m['mode']} errors: " + ", ".join(f"{k} {v}" for k, v in m["errors"].items()))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", help="workload JSON (workloads/A.json ...)")
    ap.add_argument("--policies", default="seq,stream", help="comma list of seq, stream")
    ap.add_argument("--variants", default="graph,eager", help="comma list of eager, graph")
    ap.add_argument("--no-rt-alone", action="store_true", help="skip the rt-alone baselines")
    ap.add_argument("--duration", type=float, help="override duration_s")
    ap.add_argument("--warmup", type=float, help="override warmup_s")
    ap.add_argument("--seq-len", type=int, default=128, help="BERT sequence length (bert_tiny: 16)")
    ap.add_argument("--pool", type=int, default=4, help="input sets per task")
    ap.add_argument("--weights", help="folder of <model>.safetensors (reef's weights)")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--out", help="JSON result path")
    ap.add_argument("--records", action="store_true", help="include per-request records in the JSON")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()

    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    w = load_workload(args.workload)
    if args.duration:
        w["duration_s"] = args.duration
    started = time.time()
    models = {}
    for t in w["tasks"]:
        if t["model"] not in models:
            models[t["model"]] = build_model(t["model"], args)
    alone = dict(w, tasks=[t for t in w["tasks"] if t["priority"] == "rt"])
    modes = []
    for v in [x for x in args.variants.split(",") if x]:
        if v not in ("eager", "graph"):
            sys.exit(f"unknown variant '{v}' (eager, graph)")
        if not args.no_rt_alone and alone["tasks"]:
            modes.append(run_mode(f"rt-alone-{v}", alone, models, args, "seq", v == "graph"))
        for p in [x for x in args.policies.split(",") if x]:
            if p not in ("seq", "stream"):
                sys.exit(f"unknown policy '{p}' (seq, stream)")
            modes.append(run_mode(f"torch-{p}-{v}", w, models, args, p, v == "graph"))
    baseline_of = lambda m: "rt-alone-" + m.rsplit("-", 1)[-1]
    res = {"schema": SCHEMA, "generator": f"torch_disb.py (torch {torch.__version__})",
           "device": modes[0]["device"] if modes else None, "started_unix_s": started, "workload": w,
           "modes": modes, "comparison": compare(modes, baseline_of)}
    md = markdown(res)
    print(md)
    if args.markdown:
        open(args.markdown, "w").write(md)
    if args.out:
        if not args.records:
            for m in res["modes"]:
                m.pop("records", None)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
