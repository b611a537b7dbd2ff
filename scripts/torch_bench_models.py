#!/usr/bin/env python3
"""PyTorch baseline for `reef bench models`: median latency of the zoo's
architectures in PyTorch (eager and CUDA-graph replay) at the given batch
sizes, f32 with TF32 convolutions and matmuls (PyTorch's cuDNN default for
convolutions). Prints a table and writes JSON."""
import argparse, json, statistics, time
import torch, torchvision

def build(name):
    m = {
        "resnet18": lambda: torchvision.models.resnet18(),
        "resnet50": lambda: torchvision.models.resnet50(),
        "resnet152": lambda: torchvision.models.resnet152(),
        "vgg19": lambda: torchvision.models.vgg19(),
        "densenet201": lambda: torchvision.models.densenet201(),
        "inception_v3": lambda: torchvision.models.inception_v3(aux_logits=False, init_weights=False),
        "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
        "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(),
    }.get(name)
    if m is not None:
        size = 299 if name == "inception_v3" else 224
        return m(), lambda b: (torch.randn(b, 3, size, size, device="cuda"),)
    if name == "bert_base":
        return bert("sdpa")
    raise SystemExit(f"unknown model {name}")

def bert(attn):
    from transformers import BertConfig, BertModel
    model = BertModel(BertConfig(attn_implementation=attn), add_pooling_layer=True)
    # Every input on the GPU (ids, mask, token types), so that nothing in the
    # forward pass reads a CPU tensor during CUDA-graph capture.
    return model, lambda b: (torch.randint(0, 30522, (b, 128), device="cuda"),
                             torch.ones(b, 128, dtype=torch.long, device="cuda"),
                             torch.zeros(b, 128, dtype=torch.long, device="cuda"))

def capture(model, inputs):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            model(*inputs)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        model(*inputs)
    return g

def timeit(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)

def kernel_profile(fn, top):
    """Device time of each CUDA kernel of one eager forward pass (torch
    profiler, after warm-up): prints the sum and the `top` slowest."""
    from torch.profiler import profile, ProfilerActivity
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ks = [(e.name, e.device_time) for e in prof.events()
          if e.device_type == torch.autograd.DeviceType.CUDA and e.device_time > 0]
    total = sum(t for _, t in ks)
    print(f"  {len(ks)} kernels sum to {total / 1e3:.3f} ms; slowest:")
    for name, t in sorted(ks, key=lambda k: -k[1])[:top]:
        print(f"  {t:>9.1f} us {100 * t / total:>5.1f}%  {name[:110]}")
    return [{"kernel": n, "us": t} for n, t in ks]

def layer_profile(model, fn, reps=5):
    """Device time of each leaf module (every CUDA kernel launched inside
    its forward, summed), the median of `reps` profiled eager passes after
    warm-up. Module names are torchvision's / transformers' (e.g.
    `features.25`), the names reef's zoo gives its layers."""
    from torch.profiler import profile, ProfilerActivity, record_function
    open_ranges, hooks = {}, []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            def pre(m, args, name=name):
                r = record_function("layer:" + name)
                r.__enter__()
                open_ranges[name] = r
            def post(m, args, out, name=name):
                open_ranges.pop(name).__exit__(None, None, None)
            hooks.append(mod.register_forward_pre_hook(pre))
            hooks.append(mod.register_forward_hook(post))
    try:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        runs = []
        for _ in range(reps):
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            per = {}
            for e in prof.key_averages():
                if e.key.startswith("layer:"):
                    t = getattr(e, "device_time_total", None)
                    if t is None:
                        t = e.cuda_time_total
                    # Total over the pass: a module may run more than once
                    # (torchvision ResNet blocks call one ReLU three times).
                    per[e.key[len("layer:"):]] = t
            runs.append(per)
    finally:
        for h in hooks:
            h.remove()
    names = sorted({n for r in runs for n in r})
    return {n: statistics.median([r.get(n, 0.0) for r in runs]) for n in names}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,resnet50,resnet152,vgg19,densenet201,inception_v3,mobilenet_v2,mobilenet_v3_large,bert_base")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--kernels", type=int, default=0,
                    help="also profile one eager pass and print the N slowest kernels")
    ap.add_argument("--layers", action="store_true",
                    help="also time each leaf module's kernels (eager, profiler) for scripts/layer_compare.py")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"{'model':<16} {'batch':>5} {'eager ms':>10} {'graph ms':>10}")
    for name in a.models.split(","):
        model, mk = build(name)
        model = model.cuda().eval()
        for b in [int(x) for x in a.batches.split(",")]:
            inputs = mk(b)
            with torch.inference_mode():
                eager = timeit(lambda: model(*inputs), a.iters)
                graph = None
                try:
                    graph = timeit(capture(model, inputs).replay, a.iters)
                except Exception as e:  # report and go on: one model must not end the table
                    print(f"{name} batch {b}: CUDA-graph capture failed: {type(e).__name__}: {e}".splitlines()[0])
                    if name == "bert_base":
                        # transformers' eager attention builds its mask differently.
                        try:
                            em, _ = bert("eager")
                            em = em.cuda().eval()
                            graph = timeit(capture(em, inputs).replay, a.iters)
                            print(f"{name} batch {b}: captured with attn_implementation=eager")
                        except Exception as e2:
                            print(f"{name} batch {b}: eager attention capture failed too: {type(e2).__name__}: {e2}".splitlines()[0])
            gtxt = f"{graph:>10.3f}" if graph is not None else f"{'-':>10}"
            print(f"{name:<16} {b:>5} {eager:>10.3f} {gtxt}")
            row = {"model": name, "batch": b, "eager_ms": eager, "graph_ms": graph}
            if a.kernels > 0:
                with torch.inference_mode():
                    row["kernel_profile"] = kernel_profile(lambda: model(*inputs), a.kernels)
            if a.layers:
                try:  # report and go on: the timings above stand without it
                    with torch.inference_mode():
                        row["layer_us"] = layer_profile(model, lambda: model(*inputs))
                    print(f"  {len(row['layer_us'])} layers sum to {sum(row['layer_us'].values()) / 1e3:.3f} ms")
                except Exception as e:
                    print(f"{name} batch {b}: layer profile failed: {type(e).__name__}: {e}".splitlines()[0])
            rows.append(row)
        del model
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)

if __name__ == "__main__":
    main()
