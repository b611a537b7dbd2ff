"""Stock tritonclient (HTTP and gRPC) against a running reef server.

Environment:
  REEF_HTTP_URL    host:port of the HTTP endpoint (default 127.0.0.1:8000)
  REEF_GRPC_URL    host:port of the gRPC endpoint (default 127.0.0.1:8001)
  REEF_TEST_MODEL  model to run (default "add"); inputs are random, batch 1.
                   For "add" (a + b, a - b) results are checked against numpy;
                   for any model, HTTP JSON, HTTP binary and gRPC must agree.
  REEF_TEST_MAX_BATCH  expected max_batch_size of the model's configuration
                   (default -1: not checked)
  REEF_TEST_PRIORITY   expected default priority ("rt" / "be"; default: not checked)
  REEF_GRPC_UDS    path of the server's gRPC Unix domain socket (default: the
                   socket test is skipped)

The server must allow client shared memory (--allow-client-shm): the system
shared memory test runs tritonclient's own flow over HTTP and gRPC.
"""

import base64
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

HTTP_URL = os.environ.get("REEF_HTTP_URL", "127.0.0.1:8000")
GRPC_URL = os.environ.get("REEF_GRPC_URL", "127.0.0.1:8001")
MODEL = os.environ.get("REEF_TEST_MODEL", "add")
MAX_BATCH = int(os.environ.get("REEF_TEST_MAX_BATCH", "-1"))
PRIORITY = os.environ.get("REEF_TEST_PRIORITY")
GRPC_UDS = os.environ.get("REEF_GRPC_UDS")

NP_TYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


@pytest.fixture(scope="module")
def http():
    return httpclient.InferenceServerClient(url=HTTP_URL, network_timeout=300.0)


@pytest.fixture(scope="module")
def grpc():
    return grpcclient.InferenceServerClient(url=GRPC_URL)


@pytest.fixture(scope="module")
def meta(http):
    return http.get_model_metadata(MODEL)


def random_inputs(meta, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for t in meta["inputs"]:
        shape = [1 if d < 0 else d for d in t["shape"]]
        dt = t["datatype"]
        if dt == "FP32":
            out[t["name"]] = rng.standard_normal(shape).astype(np.float32)
        elif dt == "BOOL":
            out[t["name"]] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            out[t["name"]] = rng.integers(-100, 100, shape).astype(NP_TYPES[dt])
    return out


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    den = np.linalg.norm(b)
    return np.linalg.norm(a - b) / den if den > 0 else np.linalg.norm(a)


def http_infer(http, meta, data, binary):
    inputs = []
    for t in meta["inputs"]:
        x = httpclient.InferInput(t["name"], list(data[t["name"]].shape), t["datatype"])
        x.set_data_from_numpy(data[t["name"]], binary_data=binary)
        inputs.append(x)
    outputs = [httpclient.InferRequestedOutput(t["name"], binary_data=binary) for t in meta["outputs"]]
    r = http.infer(MODEL, inputs, outputs=outputs)
    return {t["name"]: r.as_numpy(t["name"]) for t in meta["outputs"]}


def grpc_infer(grpc, meta, data):
    inputs = []
    for t in meta["inputs"]:
        x = grpcclient.InferInput(t["name"], list(data[t["name"]].shape), t["datatype"])
        x.set_data_from_numpy(data[t["name"]])
        inputs.append(x)
    r = grpc.infer(MODEL, inputs)
    return {t["name"]: r.as_numpy(t["name"]) for t in meta["outputs"]}


# gRPC's C core sends a Unix socket's path as the HTTP/2 :authority, which
# the server's HTTP/2 library refuses as malformed (hyperium/h2 pull request
# 487, open): clients name "localhost" instead. Given channel arguments,
# tritonclient passes them as they are, so the message size limits it would
# otherwise lift go in too.
UDS_CHANNEL_ARGS = [
    ("grpc.default_authority", "localhost"),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


def test_grpc_over_unix_socket(grpc, meta):
    """tritonclient's gRPC client with a unix: URL (and the authority
    above): the same answers as over TCP."""
    if not GRPC_UDS:
        pytest.skip("REEF_GRPC_UDS not set: the server has no gRPC Unix socket")
    unix = grpcclient.InferenceServerClient(url="unix:" + GRPC_UDS, channel_args=UDS_CHANNEL_ARGS)
    assert unix.is_server_live()
    assert unix.is_server_ready()
    assert unix.get_model_metadata(MODEL).name == MODEL
    data = random_inputs(meta, seed=11)
    over_unix = grpc_infer(unix, meta, data)
    over_tcp = grpc_infer(grpc, meta, data)
    for name, want in over_tcp.items():
        assert np.array_equal(over_unix[name], want), name
    unix.close()


def test_server_health_and_metadata(http, grpc):
    assert http.is_server_live()
    assert http.is_server_ready()
    assert grpc.is_server_live()
    assert grpc.is_server_ready()
    m = http.get_server_metadata()
    assert m["name"] == "reef"
    assert "binary_tensor_data" in m["extensions"]
    g = grpc.get_server_metadata()
    assert g.name == "reef"
    assert "model_configuration" in m["extensions"]
    assert "model_configuration" in g.extensions
    assert "system_shared_memory" in m["extensions"]
    assert "system_shared_memory" in g.extensions
    assert "cuda_shared_memory" in m["extensions"]
    assert "cuda_shared_memory" in g.extensions


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cuda_shared_memory_requests(http, grpc, protocol):
    """tritonclient's CUDA shared memory calls reach the server in its wire
    format: the status lists no region, and a handle no device can map is
    refused with a message saying so (mapping real handles needs a GPU:
    scripts/device/cuda_shm_check.py does it there)."""
    client = http if protocol == "http" else grpc
    status = client.get_cuda_shared_memory_status()
    assert (status == []) if protocol == "http" else (len(status.regions) == 0)
    name = f"reef_cuda_{protocol}_{os.getpid()}"
    handle = base64.b64encode(np.random.default_rng(5).bytes(64))
    with pytest.raises(InferenceServerException) as e:
        client.register_cuda_shared_memory(name, handle, 0, 64)
    # A device that maps handles cannot map this one; the CPU backend maps none.
    msg = str(e.value)
    assert "cannot map" in msg or "needs a CUDA device" in msg, msg
    with pytest.raises(InferenceServerException) as e:
        client.register_cuda_shared_memory(name, base64.b64encode(b"short"), 0, 64)
    assert "64 bytes, got 5" in str(e.value), str(e.value)
    client.unregister_cuda_shared_memory(name)


def test_model_metadata(http, grpc, meta):
    assert http.is_model_ready(MODEL)
    assert grpc.is_model_ready(MODEL)
    assert meta["name"] == MODEL
    assert meta["inputs"] and meta["outputs"]
    g = grpc.get_model_metadata(MODEL)
    assert [t.name for t in g.inputs] == [t["name"] for t in meta["inputs"]]
    assert [list(t.shape) for t in g.outputs] == [t["shape"] for t in meta["outputs"]]
    index = http.get_model_repository_index()
    assert any(row["name"] == MODEL for row in index)


def test_infer_http_json_binary_and_grpc_agree(http, grpc, meta):
    data = random_inputs(meta, seed=1)
    as_json = http_infer(http, meta, data, binary=False)
    as_binary = http_infer(http, meta, data, binary=True)
    over_grpc = grpc_infer(grpc, meta, data)
    for t in meta["outputs"]:
        name = t["name"]
        assert list(as_binary[name].shape[1:]) == [d for d in t["shape"][1:]]
        assert as_binary[name].shape[0] == 1
        assert rel_l2(as_json[name], as_binary[name]) < 1e-5
        assert rel_l2(over_grpc[name], as_binary[name]) < 1e-5
        if as_binary[name].dtype == np.float32:
            assert np.all(np.isfinite(as_binary[name]))
    if MODEL == "add":
        assert rel_l2(as_binary["sum"], data["a"] + data["b"]) < 1e-6
        assert rel_l2(over_grpc["diff"], data["a"] - data["b"]) < 1e-6


def test_bad_inputs_are_rejected(http, grpc, meta):
    t = meta["inputs"][0]
    wrong_shape = [1] + [d + 1 if d > 0 else 1 for d in t["shape"][1:]] + [2]
    x = np.ones(wrong_shape, dtype=NP_TYPES[t["datatype"]])
    for client_mod, client in ((httpclient, http), (grpcclient, grpc)):
        inp = client_mod.InferInput(t["name"], wrong_shape, t["datatype"])
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, [inp])
        assert t["name"] in str(e.value)
        other = "INT32" if t["datatype"] != "INT32" else "INT64"
        shape = [1 if d < 0 else d for d in t["shape"]]
        inp = client_mod.InferInput(t["name"], shape, other)
        inp.set_data_from_numpy(np.ones(shape, dtype=NP_TYPES[other]))
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, [inp])
        assert t["name"] in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            client.get_model_metadata("no-such-model-here")
        assert "no-such-model-here" in str(e.value)


def test_model_config(http, grpc, meta):
    cfg = http.get_model_config(MODEL)
    assert cfg["name"] == MODEL
    assert cfg["platform"] == "reef"
    assert cfg["backend"] == "reef"
    max_batch = cfg["max_batch_size"]
    if MAX_BATCH >= 0:
        assert max_batch == MAX_BATCH
    if PRIORITY is not None:
        assert cfg["parameters"]["priority"]["string_value"] == PRIORITY
    # Triton drops the batch dimension from dims when the model batches.
    skip = 1 if max_batch > 0 else 0
    for key, meta_key in (("input", "inputs"), ("output", "outputs")):
        assert [t["name"] for t in cfg[key]] == [t["name"] for t in meta[meta_key]]
        for t, m in zip(cfg[key], meta[meta_key]):
            assert t["data_type"] == "TYPE_" + m["datatype"]
            assert t["dims"] == m["shape"][skip:]
    assert http.get_model_config(MODEL, model_version="1") == cfg

    g = grpc.get_model_config(MODEL).config
    assert g.name == MODEL
    assert g.platform == "reef"
    assert g.backend == "reef"
    assert g.max_batch_size == max_batch
    for key in ("input", "output"):
        got = getattr(g, key)
        assert [t.name for t in got] == [t["name"] for t in cfg[key]]
        assert [list(t.dims) for t in got] == [t["dims"] for t in cfg[key]]
        assert [mc.DataType.Name(t.data_type) for t in got] == [t["data_type"] for t in cfg[key]]
    assert g.parameters["priority"].string_value == cfg["parameters"]["priority"]["string_value"]

    for client in (http, grpc):
        with pytest.raises(InferenceServerException) as e:
            client.get_model_config("no-such-model-here")
        assert "no-such-model-here" in str(e.value)


def shared_memory_module():
    """tritonclient.utils.shared_memory, or a skip saying why it is missing
    (older tritonclient releases load a C library that may fail to load)."""
    try:
        import tritonclient.utils.shared_memory as shm
    except Exception as e:  # noqa: BLE001 - any load failure is a skip reason
        pytest.skip(f"tritonclient.utils.shared_memory cannot be loaded: {e!r}")
    return shm


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_system_shared_memory(http, grpc, meta, protocol):
    shm = shared_memory_module()
    client_mod, client = (httpclient, http) if protocol == "http" else (grpcclient, grpc)
    data = random_inputs(meta, seed=7)
    expected = http_infer(http, meta, data, binary=True)
    tag = f"{protocol}_{MODEL}_{os.getpid()}"
    in_name, out_name = f"reef_in_{tag}", f"reef_out_{tag}"
    in_sizes = [data[t["name"]].nbytes for t in meta["inputs"]]
    out_sizes = [expected[t["name"]].nbytes for t in meta["outputs"]]
    in_handle = shm.create_shared_memory_region(in_name, "/" + in_name, sum(in_sizes))
    out_handle = shm.create_shared_memory_region(out_name, "/" + out_name, sum(out_sizes))
    try:
        shm.set_shared_memory_region(in_handle, [data[t["name"]] for t in meta["inputs"]])
        # Poison the output region (NaN / 0xff bytes) so stale data cannot pass.
        shm.set_shared_memory_region(out_handle, [np.full(sum(out_sizes), 0xFF, dtype=np.uint8)])
        client.register_system_shared_memory(in_name, "/" + in_name, sum(in_sizes))
        client.register_system_shared_memory(out_name, "/" + out_name, sum(out_sizes))
        status = client.get_system_shared_memory_status(in_name)
        if protocol == "http":
            assert status == [
                {"name": in_name, "key": "/" + in_name, "offset": 0, "byte_size": sum(in_sizes)}
            ]
        else:
            assert status.regions[in_name].key == "/" + in_name
            assert status.regions[in_name].byte_size == sum(in_sizes)

        inputs, offset = [], 0
        for t, size in zip(meta["inputs"], in_sizes):
            x = client_mod.InferInput(t["name"], list(data[t["name"]].shape), t["datatype"])
            x.set_shared_memory(in_name, size, offset)
            inputs.append(x)
            offset += size
        outputs, offsets, offset = [], [], 0
        for t, size in zip(meta["outputs"], out_sizes):
            o = client_mod.InferRequestedOutput(t["name"])
            o.set_shared_memory(out_name, size, offset)
            outputs.append(o)
            offsets.append(offset)
            offset += size
        r = client.infer(MODEL, inputs, outputs=outputs)
        for t, off in zip(meta["outputs"], offsets):
            out = r.get_output(t["name"])
            assert out is not None
            if protocol == "http":
                shape = out["shape"]
                assert "data" not in out
            else:
                shape = list(out.shape)
            got = shm.get_contents_as_numpy(
                out_handle, NP_TYPES[t["datatype"]], shape, offset=off
            ).copy()
            assert got.shape == expected[t["name"]].shape
            assert np.array_equal(got, expected[t["name"]]), t["name"]

        client.unregister_system_shared_memory(in_name)
        status = client.get_system_shared_memory_status()
        names = [s["name"] for s in status] if protocol == "http" else list(status.regions)
        assert in_name not in names and out_name in names
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, inputs, outputs=outputs)
        assert in_name in str(e.value)
    finally:
        client.unregister_system_shared_memory(in_name)
        client.unregister_system_shared_memory(out_name)
        shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)


def test_inference_statistics(http, grpc, meta):
    """Triton's statistics extension: tritonclient reads the same counters over
    both protocols, and they move by exactly the requests sent meanwhile."""
    assert "statistics" in http.get_server_metadata()["extensions"]
    assert "statistics" in grpc.get_server_metadata().extensions

    def http_stat():
        (s,) = http.get_inference_statistics(MODEL)["model_stats"]
        assert s["name"] == MODEL
        return s

    before = http_stat()
    data = random_inputs(meta, seed=5)
    http_infer(http, meta, data, binary=True)
    http_infer(http, meta, data, binary=False)
    grpc_infer(grpc, meta, data)
    t = meta["inputs"][0]
    bad = [1] + [d + 1 if d > 0 else 1 for d in t["shape"][1:]] + [2]
    x = grpcclient.InferInput(t["name"], bad, t["datatype"])
    x.set_data_from_numpy(np.ones(bad, dtype=NP_TYPES[t["datatype"]]))
    with pytest.raises(InferenceServerException):
        grpc.infer(MODEL, [x])
    after = http_stat()

    def delta(path):
        a, b = after, before
        for k in path:
            a, b = a[k], b[k]
        return a - b

    assert delta(["execution_count"]) == 3
    assert delta(["inference_count"]) == 3
    assert delta(["inference_stats", "success", "count"]) == 3
    assert delta(["inference_stats", "fail", "count"]) == 1
    phases = ["queue", "compute_input", "compute_infer", "compute_output"]
    for k in phases:
        assert delta(["inference_stats", k, "count"]) == 3
    spent = sum(delta(["inference_stats", k, "ns"]) for k in phases)
    assert 0 < spent <= delta(["inference_stats", "success", "ns"])
    assert after["last_inference"] >= before["last_inference"]
    assert after["last_inference"] > 0

    g = grpc.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    # gRPC's JSON form spells 64-bit integers as strings.
    assert int(g["execution_count"]) == after["execution_count"]
    assert int(g["inference_stats"]["success"]["ns"]) == after["inference_stats"]["success"]["ns"]
    names = [s["name"] for s in http.get_inference_statistics()["model_stats"]]
    assert MODEL in names
    for client in (http, grpc):
        with pytest.raises(InferenceServerException) as e:
            client.get_inference_statistics("no-such-model-here")
        assert "no-such-model-here" in str(e.value)


def grpc_inputs(meta, data):
    inputs = []
    for t in meta["inputs"]:
        x = grpcclient.InferInput(t["name"], list(data[t["name"]].shape), t["datatype"])
        x.set_data_from_numpy(data[t["name"]])
        inputs.append(x)
    return inputs


def test_grpc_streaming_inference(http, grpc, meta):
    """tritonclient's streaming API: every request on the stream is answered,
    results match unary inference, and a bad request fails alone."""
    import queue

    answers = queue.Queue()
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        data = {f"r{i}": random_inputs(meta, seed=20 + i) for i in range(3)}
        for rid, d in data.items():
            grpc.async_stream_infer(MODEL, grpc_inputs(meta, d), request_id=rid)
        t = meta["inputs"][0]
        bad = [1] + [d + 1 if d > 0 else 1 for d in t["shape"][1:]] + [2]
        x = grpcclient.InferInput(t["name"], bad, t["datatype"])
        x.set_data_from_numpy(np.ones(bad, dtype=NP_TYPES[t["datatype"]]))
        grpc.async_stream_infer(MODEL, [x], request_id="bad")
        got, errors = {}, []
        for _ in range(len(data) + 1):
            result, error = answers.get(timeout=300)
            if error is not None:
                errors.append(str(error))
            else:
                got[result.get_response().id] = result
    finally:
        grpc.stop_stream()
    assert sorted(got) == sorted(data)
    assert len(errors) == 1 and t["name"] in errors[0], errors
    for rid, d in data.items():
        want = http_infer(http, meta, d, binary=True)
        for o in meta["outputs"]:
            assert rel_l2(got[rid].as_numpy(o["name"]), want[o["name"]]) < 1e-5


def needs_test_model(name):
    """Skips unless the server serves `name`, a model of reef-server's test
    service (`slow`: answers only at shutdown; `busy`: always overloaded),
    not of a real scheduler's zoo."""
    probe = httpclient.InferenceServerClient(url=HTTP_URL)
    ready = probe.is_model_ready(name)
    probe.close()
    if not ready:
        pytest.skip("the server has no '%s' model (reef-server's test service has)" % name)


def client_gone(model):
    """The server's count of `model`'s requests whose client left before the
    answer (Prometheus, /metrics)."""
    import urllib.request

    text = urllib.request.urlopen("http://%s/metrics" % HTTP_URL, timeout=30).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("reef_requests_total{") and 'model="%s"' % model in line and 'outcome="client_gone"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_client_that_gives_up_cancels_its_request(protocol):
    """A client whose deadline passes (gRPC's client_timeout) or whose
    connection times out (HTTP's network_timeout) leaves; the server drops
    the request (the `slow` model answers only at shutdown), counts it as
    `client_gone` and keeps serving."""
    import time

    needs_test_model("slow")
    before = client_gone("slow")
    x = np.array([[0.5, -1.5]], dtype=np.float32)
    if protocol == "grpc":
        c = grpcclient.InferenceServerClient(url=GRPC_URL)
        i = grpcclient.InferInput("x", [1, 2], "FP32")
        i.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as e:
            c.infer("slow", [i], client_timeout=0.3)
        # DEADLINE_EXCEEDED, or CANCELLED "Timeout expired" where the
        # client's own timer fires first.
        msg = str(e.value).lower()
        assert "deadline" in msg or "timeout" in msg, str(e.value)
    else:
        c = httpclient.InferenceServerClient(url=HTTP_URL, network_timeout=0.3)
        i = httpclient.InferInput("x", [1, 2], "FP32")
        i.set_data_from_numpy(x)
        with pytest.raises(Exception):
            c.infer("slow", [i])
    c.close()
    deadline = time.time() + 30
    while client_gone("slow") < before + 1 and time.time() < deadline:
        time.sleep(0.05)
    assert client_gone("slow") == before + 1
    fresh = httpclient.InferenceServerClient(url=HTTP_URL)
    assert fresh.is_server_ready()
    fresh.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_overload_is_refused_by_name(protocol):
    """A model whose queue is full (`busy`) refuses at once: 429 over HTTP,
    UNAVAILABLE over gRPC, with the reason; the server keeps serving."""
    needs_test_model("busy")
    x = np.array([[0.5, -1.5, 2.0, 0.25]], dtype=np.float32)
    if protocol == "grpc":
        c = grpcclient.InferenceServerClient(url=GRPC_URL)
        i = grpcclient.InferInput("x", [1, 4], "FP32")
    else:
        c = httpclient.InferenceServerClient(url=HTTP_URL)
        i = httpclient.InferInput("x", [1, 4], "FP32")
    i.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        c.infer("busy", [i])
    status = str(e.value.status())
    assert ("429" in status) if protocol == "http" else ("UNAVAILABLE" in status), status
    assert e.value.message(), "the refusal names its reason"
    assert c.is_server_ready()
    c.close()
