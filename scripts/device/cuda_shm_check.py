"""Triton's CUDA shared memory against a running reef server, from another
process, with PyTorch allocating the device memory (as a Triton user's
client does): for each model named on the command line, random inputs go
once as JSON data (plain HTTP) and once left on the GPU in registered CUDA
regions, with the outputs written into a NaN-poisoned CUDA region; both
answers must agree (bit for bit, or to 1e-6 relative L2). Over HTTP with
the standard library, over gRPC with stock tritonclient when it can be
imported, and through tritonclient's own cuda_shared_memory module (which
needs cuda-python) when that can be imported. Also status and unregister. Prints PASS / FAIL lines; exits 1 on
any failure.

Usage: REEF_HTTP=127.0.0.1:8000 REEF_GRPC=127.0.0.1:8001 python3 cuda_shm_check.py MODEL...
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np
import torch

HTTP = os.environ.get("REEF_HTTP", "127.0.0.1:8000")
GRPC = os.environ.get("REEF_GRPC", "127.0.0.1:8001")
NP = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}
failures = []


def call(method, path, body=None):
    req = urllib.request.Request(f"http://{HTTP}{path}", method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=60) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def random_inputs(meta, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for t in meta["inputs"]:
        shape = [1 if d < 0 else d for d in t["shape"]]
        dt = NP[t["datatype"]]
        if dt == np.float32:
            out[t["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif "mask" in t["name"]:
            out[t["name"]] = np.ones(shape, dtype=dt)
        else:
            out[t["name"]] = rng.integers(0, 1000, shape).astype(dt)
    return out


def ipc(t):
    """The IPC handle of a CUDA tensor's allocation (the 64 bytes of its
    cudaIpcMemHandle_t) and the tensor's offset in it. PyTorch puts two
    bytes before the handle (a format version and the memory's kind)."""
    info = t.untyped_storage()._share_cuda_()
    handle, alloc_bytes, offset = bytes(info[1]), info[2], info[3]
    if len(handle) == 66:
        handle = handle[2:]
    assert len(handle) == 64, f"unexpected IPC handle of {len(handle)} bytes"
    return handle, offset, offset + t.numel() * t.element_size(), alloc_bytes


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    d = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / d) if d > 0 else float(np.linalg.norm(a))


def agree(got, want, what):
    same = got.shape == want.shape and np.array_equal(got, want)
    err = rel_l2(got, want) if got.shape == want.shape else float("inf")
    check(same or err <= 1e-6, f"{what}: {'bit-identical' if same else f'rel L2 {err:.2e}'}")


def outputs_agree(dev_out, meta, want, out_sizes, label):
    """The outputs the server wrote one after another into `dev_out`
    against the plain answers `want`."""
    raw = dev_out.cpu().numpy().tobytes()
    at = 0
    for o, size in zip(meta["outputs"], out_sizes):
        w = want[o["name"]]
        got = np.frombuffer(raw[at:at + size], dtype=w.dtype).reshape(w.shape)
        agree(got, w, f"{label} {o['name']} against plain HTTP")
        at += size


def tritonclient_regions(model, meta, data, want):
    """Triton's own client flow: tritonclient.utils.cuda_shared_memory makes
    one region per tensor (cudaMalloc through cuda-python), its raw handle
    is registered over gRPC, and the outputs are read back with
    get_contents_as_numpy."""
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.cuda_shared_memory as cudashm
    except Exception as e:  # noqa: BLE001
        print(f"SKIP {model}: tritonclient.utils.cuda_shared_memory not importable: {e!r}")
        return
    c = grpcclient.InferenceServerClient(GRPC)
    made, inputs, outputs = [], [], []
    try:
        for t in meta["inputs"]:
            x = data[t["name"]]
            name = f"{model}_tc_in_{t['name']}"
            h = cudashm.create_shared_memory_region(name, x.nbytes, 0)
            made.append((name, h))
            cudashm.set_shared_memory_region(h, [x])
            c.register_cuda_shared_memory(name, cudashm.get_raw_handle(h), 0, x.nbytes)
            i = grpcclient.InferInput(t["name"], list(x.shape), t["datatype"])
            i.set_shared_memory(name, x.nbytes)
            inputs.append(i)
        out_handles = []
        for o in meta["outputs"]:
            w = want[o["name"]]
            name = f"{model}_tc_out_{o['name']}"
            h = cudashm.create_shared_memory_region(name, w.nbytes, 0)
            made.append((name, h))
            cudashm.set_shared_memory_region(h, [np.full(w.nbytes, 0xFF, dtype=np.uint8)])
            c.register_cuda_shared_memory(name, cudashm.get_raw_handle(h), 0, w.nbytes)
            r = grpcclient.InferRequestedOutput(o["name"])
            r.set_shared_memory(name, w.nbytes)
            outputs.append(r)
            out_handles.append((o["name"], h))
        c.infer(model, inputs, outputs=outputs)
        for oname, h in out_handles:
            w = want[oname]
            got = cudashm.get_contents_as_numpy(h, w.dtype, list(w.shape))
            agree(np.asarray(got), w, f"{model}: tritonclient cuda_shared_memory output {oname} against plain HTTP")
    finally:
        for name, h in made:
            c.unregister_cuda_shared_memory(name)
            cudashm.destroy_shared_memory_region(h)


def plain_http(model, meta, data):
    body = {"inputs": [
        {"name": k, "shape": list(v.shape), "datatype": t["datatype"], "data": v.ravel().tolist()}
        for t in meta["inputs"] for k, v in [(t["name"], data[t["name"]])]
    ]}
    st, r = call("POST", f"/v2/models/{model}/infer", body)
    assert st == 200, (st, r)
    return {o["name"]: np.asarray(o["data"], NP[o["datatype"]]).reshape(o["shape"]) for o in r["outputs"]}


def run_model(model, seed):
    st, meta = call("GET", f"/v2/models/{model}")
    assert st == 200, (st, meta)
    data = random_inputs(meta, seed)
    want = plain_http(model, meta, data)
    # Inputs on the GPU, each its own tensor (and allocation); one output
    # region holding every output, poisoned with NaN bytes.
    dev_in = {k: torch.from_numpy(v).cuda() for k, v in data.items()}
    out_sizes = [want[o["name"]].nbytes for o in meta["outputs"]]
    dev_out = torch.full((sum(out_sizes),), 0xFF, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    regions = {}
    for k, t in dev_in.items():
        h, off, size, _ = ipc(t)
        regions[k] = (f"{model}_in_{k}", h, off, size)
    oh, ooff, osize, _ = ipc(dev_out)
    out_region = f"{model}_out"
    for name, h, _, size in list(regions.values()) + [(out_region, oh, ooff, osize)]:
        st, r = call("POST", f"/v2/cudasharedmemory/region/{name}/register",
                     {"raw_handle": {"b64": base64.b64encode(h).decode()}, "device_id": 0, "byte_size": size})
        check(st == 200, f"{model}: register {name} over HTTP ({st} {r})")
    st, status = call("GET", "/v2/cudasharedmemory/status")
    names = {s["name"] for s in status or []}
    check({out_region, *[r[0] for r in regions.values()]} <= names, f"{model}: status lists the regions")

    body = {"inputs": [], "outputs": []}
    for t in meta["inputs"]:
        name, _, off, _ = regions[t["name"]]
        body["inputs"].append({"name": t["name"], "shape": list(data[t["name"]].shape), "datatype": t["datatype"],
                               "parameters": {"shared_memory_region": name,
                                              "shared_memory_byte_size": data[t["name"]].nbytes,
                                              "shared_memory_offset": off}})
    at = ooff
    for o, size in zip(meta["outputs"], out_sizes):
        body["outputs"].append({"name": o["name"], "parameters": {
            "shared_memory_region": out_region, "shared_memory_byte_size": size, "shared_memory_offset": at}})
        at += size
    st, r = call("POST", f"/v2/models/{model}/infer", body)
    check(st == 200, f"{model}: HTTP infer through CUDA shared memory ({st})")
    if st == 200:
        outputs_agree(dev_out, meta, want, out_sizes, f"{model}: HTTP CUDA-shm output")

    try:
        import tritonclient.grpc as grpcclient
    except Exception as e:  # noqa: BLE001
        print(f"SKIP {model}: tritonclient.grpc not importable: {e!r}")
    else:
        c = grpcclient.InferenceServerClient(GRPC)
        dev_out.fill_(0xFF)
        torch.cuda.synchronize()
        g_out = f"{model}_gout"
        c.register_cuda_shared_memory(g_out, base64.b64encode(oh), 0, osize)
        st = c.get_cuda_shared_memory_status(g_out)
        check(st.regions[g_out].byte_size == osize, f"{model}: tritonclient gRPC status")
        inputs, outputs = [], []
        for t in meta["inputs"]:
            name, _, off, _ = regions[t["name"]]
            x = grpcclient.InferInput(t["name"], list(data[t["name"]].shape), t["datatype"])
            x.set_shared_memory(name, data[t["name"]].nbytes, off)
            inputs.append(x)
        at = ooff
        for o, size in zip(meta["outputs"], out_sizes):
            ro = grpcclient.InferRequestedOutput(o["name"])
            ro.set_shared_memory(g_out, size, at)
            outputs.append(ro)
            at += size
        c.infer(model, inputs, outputs=outputs)
        outputs_agree(dev_out, meta, want, out_sizes, f"{model}: tritonclient gRPC CUDA-shm output")
        c.unregister_cuda_shared_memory(g_out)
        check(g_out not in c.get_cuda_shared_memory_status().regions, f"{model}: gRPC unregister")
    tritonclient_regions(model, meta, data, want)
    for name, *_ in list(regions.values()):
        call("POST", f"/v2/cudasharedmemory/region/{name}/unregister", {})
    call("POST", f"/v2/cudasharedmemory/region/{out_region}/unregister", {})
    st, status = call("GET", "/v2/cudasharedmemory/status")
    check(st == 200 and status == [], f"{model}: every region unregistered ({status})")
    # The tensors are freed only now, after the server unmapped them.
    del dev_in, dev_out


for i, m in enumerate(sys.argv[1:]):
    run_model(m, seed=100 + i)
print(f"{'FAILED' if failures else 'ALL PASSED'}: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
