//! The DISB runner end to end on the CPU backend: `reef bench disb` runs a
//! tiny workload in every mode through the real scheduler and writes JSON,
//! Markdown and SVG plots whose figures are consistent.

mod serve_process;

use serve_process::Serve;
use std::process::Command;
use std::time::Duration;

/// The tests here run one at a time: each runs `reef bench disb` (and
/// some a server) on every core, and several at once on a 2-core CI box
/// starved the BE work of one of them (no BE answer in a run).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `reef bench disb` on the tiny workload (1 s, `reset`) with `extra`,
/// which must make it fail; its standard error.
fn refused_disb(tag: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "bench",
            "disb",
            "--quiet",
            "--modes",
            "reset",
            "--duration",
            "1",
        ])
        .args(extra)
        .arg("--out")
        .arg(std::env::temp_dir().join(format!("reef-disb-{tag}-{}", std::process::id())))
        .arg("--workload")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../workloads/tiny-A.json"
        ))
        .output()
        .expect("run reef");
    assert!(!out.status.success(), "reef bench disb {extra:?} ran");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `reef bench disb` on the tiny workload on the CPU (2 s, 0.5 s
/// warm-up) with `extra` arguments into a fresh folder named `tag`; returns
/// the folder and stdout, failing the test if the command fails.
fn run_tiny_disb(tag: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let out = std::env::temp_dir().join(format!("reef-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/../../workloads/tiny-A.json");
    let r = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "bench",
            "disb",
            "--device",
            "cpu",
            "--quiet",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--workload",
            workload,
        ])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run reef");
    let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        r.status.success(),
        "reef bench disb {extra:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    (out, stdout)
}

/// The JSON result the runner wrote into `out`.
fn result_json(out: &std::path::Path) -> serde_json::Value {
    let path = std::fs::read_dir(out)
        .expect("output folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a JSON result");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn bench_disb_runs_a_tiny_workload_in_every_mode() {
    let _serial = serial();
    let (out, stdout) = run_tiny_disb("disb-test", &[]);
    println!("{stdout}");
    for f in [
        "disb-tiny-A.json",
        "disb-tiny-A.md",
        "disb-tiny-A-cdf.svg",
        "disb-tiny-A-throughput.svg",
    ] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f} missing or empty");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("disb-tiny-A.json")).unwrap()).unwrap();
    let modes = json["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["rt-alone", "seq", "stream", "wait", "reset", "reef"]
    );
    for m in modes {
        let rt = &m["rt"];
        assert!(
            rt["count"].as_u64().unwrap() > 0,
            "no RT requests measured in {}",
            m["mode"]
        );
        let (p50, p99, max, mean) = (
            rt["p50_ms"].as_f64().unwrap(),
            rt["p99_ms"].as_f64().unwrap(),
            rt["max_ms"].as_f64().unwrap(),
            rt["mean_ms"].as_f64().unwrap(),
        );
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max && mean <= max,
            "inconsistent RT figures in {}",
            m["mode"]
        );
        assert!(
            m["errors"]
                .as_object()
                .map(|e| e.is_empty())
                .unwrap_or(true),
            "errors in {}: {}",
            m["mode"],
            m["errors"]
        );
        // The scheduler's account of the RT queueing: its input writes are
        // the end of it.
        let (queued, input) = (&m["rt_queued"], &m["rt_input"]);
        assert_eq!(queued["count"], rt["count"], "{}: {queued}", m["mode"]);
        assert_eq!(input["count"], rt["count"], "{}: {input}", m["mode"]);
        let (q, i) = (
            queued["mean_ms"].as_f64().unwrap(),
            input["mean_ms"].as_f64().unwrap(),
        );
        assert!(
            0.0 < i && i <= q && q <= mean,
            "{}: input {i}, queued {q}",
            m["mode"]
        );
        // In seq mode RT always goes first: when a loaded machine makes the
        // RT requests arrive faster than they run, BE never gets a turn
        // (seen on the 2-core CI box while other builds ran), by design.
        if m["mode"] != "rt-alone" && m["mode"] != "seq" {
            assert!(
                m["be_throughput_rps"].as_f64().unwrap() > 0.0,
                "no BE throughput in {}",
                m["mode"]
            );
        }
    }
    // One device: no per-device figures.
    assert!(json.get("device_comparison").is_none());
    assert!(modes.iter().all(|m| m.get("devices").is_none()));
    assert!(!stdout.contains("Per device"), "{stdout}");
    // Preemptive modes preempted.
    for m in modes
        .iter()
        .filter(|m| m["mode"] == "reset" || m["mode"] == "reef")
    {
        assert!(
            m["preemptions"].as_u64().unwrap() > 0,
            "no preemption in {}",
            m["mode"]
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `--be-alone` runs the BE tasks alone after rt-alone, and the JSON and the
/// table carry the exclusive-RT ceiling computed from the two baselines.
#[test]
fn bench_disb_be_alone_gives_the_exclusive_ceiling() {
    let _serial = serial();
    let (out, stdout) = run_tiny_disb("disb-be-alone", &["--modes", "reset", "--be-alone"]);
    let json = result_json(&out);
    let modes = json["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["rt-alone", "be-alone", "reset"]);
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap_or(f64::NAN);
    let (alone, be) = (&modes[0], &modes[1]);
    assert_eq!(be["rt"]["count"], 0, "be-alone ran RT work: {}", be["rt"]);
    assert!(
        f(be, "be_throughput_rps") > 0.0,
        "be-alone: no BE throughput"
    );
    let c = &json["ceiling"];
    let occ = f(c, "rt_occupancy");
    assert!(occ > 0.0 && occ < 1.0, "occupancy {occ}");
    assert_eq!(f(c, "rt_rps"), f(alone, "rt_throughput_rps"));
    assert_eq!(f(c, "be_alone_rps"), f(be, "be_throughput_rps"));
    let want = f(c, "rt_rps") + f(c, "be_alone_rps") * (1.0 - occ);
    assert!((f(c, "total_rps") - want).abs() < 1e-9, "{c}");
    // RT alone cannot hold the device longer than its requests took.
    let rt_time = f(alone, "rt_throughput_rps") * f(&alone["rt"], "mean_ms") / 1000.0;
    assert!(
        occ <= rt_time * 1.05,
        "occupancy {occ} against RT time {rt_time}"
    );
    assert!(stdout.contains("Exclusive-RT ceiling"), "{stdout}");
    assert!(stdout.contains("reset "), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The same workload through a reef server on loopback (`--via-server`,
/// gRPC by default): every request answered over gRPC (RT and BE on their
/// own connections), no errors, and the scheduler behind the server
/// preempted.
#[test]
fn bench_disb_runs_through_the_grpc_server() {
    let _serial = serial();
    check_through_server("disb-grpc-test", &[]);
}

/// `--via-server --shm`: the same, with every tensor passed through system
/// shared memory regions registered with the server.
#[test]
fn bench_disb_runs_through_the_grpc_server_with_shared_memory() {
    let _serial = serial();
    check_through_server("disb-grpc-shm-test", &["--shm"]);
}

/// `--via-server --protocol http`: the same over HTTP/1.1 (Triton's binary
/// tensors), with the tensors in the messages and then through system
/// shared memory.
#[test]
fn bench_disb_runs_through_the_http_server() {
    let _serial = serial();
    check_through_server("disb-http-test", &["--protocol", "http"]);
    check_through_server("disb-http-shm-test", &["--protocol", "http", "--shm"]);
}

/// `--rt-client direct`: RT requests written on the open-loop threads and
/// their answers polled by the direct client's reader; `--rt-client poll`:
/// written by runtime tasks that poll for their answers; every request
/// answered with the legs adding up, the report naming the client; over
/// gRPC the flag is refused, naming why.
#[test]
fn bench_disb_sends_rt_requests_directly_over_http() {
    let _serial = serial();
    for client in ["direct", "poll"] {
        let device = check_through_server(
            &format!("disb-http-{client}-test"),
            &["--protocol", "http", "--shm", "--rt-client", client],
        );
        assert!(device.contains(&format!("RT client {client}")), "{device}");
    }
    let text = refused_disb(
        "grpc-direct",
        &[
            "--via-server",
            "--protocol",
            "grpc",
            "--rt-client",
            "direct",
        ],
    );
    assert!(text.contains("HTTP only"), "{text}");
}

/// `--pinned-inputs` is refused, naming why, where no GPU reads the inputs
/// (the CPU backend), where they do not travel from pinned memory (through
/// messages or system shared memory) and against a server without CUDA
/// shared memory.
#[test]
fn bench_disb_refuses_pinned_inputs_where_they_cannot_apply() {
    if !reef_cuda::cuda_available() {
        let text = refused_disb("pinned-cpu", &["--device", "cpu", "--pinned-inputs"]);
        assert!(text.contains("--pinned-inputs needs a GPU"), "{text}");
    } else {
        println!("a GPU is present: the CPU-only refusal is not checked");
    }
    let text = refused_disb("pinned-via", &["--via-server", "--pinned-inputs"]);
    assert!(
        text.contains("--pinned-inputs") && text.contains("--via-server"),
        "{text}"
    );
    let text = refused_disb(
        "pinned-server",
        &["--server", "http://127.0.0.1:9", "--pinned-inputs"],
    );
    assert!(text.contains("needs --cuda-shm"), "{text}");
}

/// `--server`: the workload driven into `reef serve` running as another
/// process (reset mode, client shared memory allowed), over gRPC once with
/// tensors in the messages and once through system shared memory, and over
/// HTTP on the server's Unix socket through system shared memory: every
/// request answered without errors, each with the server's own timing.
/// `--cuda-shm` on a machine without a GPU fails, naming CUDA.
#[test]
fn bench_disb_drives_a_server_in_another_process() {
    let _serial = serial();
    let socket = std::env::temp_dir().join(format!("reef-disb-http-{}.sock", std::process::id()));
    let socket_arg = socket.display().to_string();
    let serve = Serve::start(&[
        "--device",
        "cpu",
        "--models",
        "resnet_tiny,bert_tiny",
        "--mode",
        "reset",
        "--allow-client-shm",
        "--http-uds",
        &socket_arg,
    ]);
    assert!(
        serve.wait_ready(&["resnet_tiny", "bert_tiny"], Duration::from_secs(120)),
        "the server never got ready"
    );
    let url = format!("http://{}", serve.grpc);
    let http_uds = format!("unix:{socket_arg}");
    for (tag, server, extra) in [
        ("disb-remote", &url, &[][..]),
        ("disb-remote-shm", &url, &["--shm"][..]),
        (
            "disb-remote-http-uds-shm",
            &http_uds,
            &["--protocol", "http", "--shm"][..],
        ),
    ] {
        let mut args = vec!["--modes", "reset", "--server", server];
        args.extend_from_slice(extra);
        let (out, stdout) = run_tiny_disb(tag, &args);
        let json = result_json(&out);
        assert!(
            json["device"].as_str().unwrap().contains(server.as_str()),
            "{}",
            json["device"]
        );
        let modes = json["modes"].as_array().unwrap();
        let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
        assert_eq!(names, ["rt-alone", "reset"], "{stdout}");
        for m in modes {
            assert!(m["rt"]["count"].as_u64().unwrap() > 0, "{}", m["mode"]);
            assert_eq!(m["submitted"], m["completed_ok"], "{}", m["mode"]);
            assert_eq!(m["rt_service"]["count"], m["rt"]["count"], "{}", m["mode"]);
        }
        assert!(modes[1]["be_throughput_rps"].as_f64().unwrap() > 0.0);
        let _ = std::fs::remove_dir_all(&out);
    }
    if !reef_cuda::cuda_available() {
        let text = refused_disb("cudashm", &["--server", &url, "--cuda-shm"]);
        assert!(text.to_lowercase().contains("cuda"), "{text}");
    }
    // The server is still up after all of it.
    assert!(serve.wait_ready(&["resnet_tiny"], Duration::from_secs(5)));
}

/// Runs the tiny workload in reset mode through the server (plus `extra`
/// flags) and checks every request was answered without errors.
fn check_through_server(tag: &str, extra: &[&str]) -> String {
    let mut args = vec!["--modes", "reset", "--via-server"];
    args.extend_from_slice(extra);
    let (out, stdout) = run_tiny_disb(tag, &args);
    println!("{stdout}");
    let json = result_json(&out);
    let modes = json["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["rt-alone", "reset"]);
    for m in modes {
        assert!(
            m["rt"]["count"].as_u64().unwrap() > 0,
            "no RT in {}",
            m["mode"]
        );
        assert!(
            m["errors"]
                .as_object()
                .map(|e| e.is_empty())
                .unwrap_or(true),
            "errors in {}: {}",
            m["mode"],
            m["errors"]
        );
        assert_eq!(
            m["submitted"], m["completed_ok"],
            "unanswered requests in {}",
            m["mode"]
        );
    }
    let reset = &modes[1];
    assert!(reset["be_throughput_rps"].as_f64().unwrap() > 0.0);
    assert!(
        reset["sched"]["preemptions"].as_u64().unwrap() > 0,
        "the scheduler behind the server never preempted: {}",
        reset["sched"]
    );
    // Per-request stats cross the protocol (the `reef_timing` response
    // parameters): the preempted BE requests say so, and every measured RT
    // request reports its time inside the server, which lies within the
    // client's latency.
    assert!(
        reset["preemptions"].as_u64().unwrap() > 0,
        "no answer reported a preemption"
    );
    for m in modes {
        let inside = &m["rt_service"];
        assert_eq!(inside["count"], m["rt"]["count"], "{}: {inside}", m["mode"]);
        let (srv, client) = (
            inside["mean_ms"].as_f64().unwrap(),
            m["rt"]["mean_ms"].as_f64().unwrap(),
        );
        assert!(
            srv > 0.0 && srv <= client,
            "{}: {srv} ms inside the server, {client} ms at the client",
            m["mode"]
        );
    }
    // The rest is split in three legs on the client's clock (the server
    // sends its handler's start): arrival to the call, the call to the
    // handler, the handler's answer to the runner. With the time inside the
    // server they add up to the client's latency, request by request, so
    // their means add up to its mean (up to the two clocks' reads).
    for m in modes {
        let mean = |k: &str| {
            assert_eq!(m[k]["count"], m["rt"]["count"], "{}: {k}", m["mode"]);
            m[k]["mean_ms"].as_f64().unwrap()
        };
        let legs = [
            mean("rt_client"),
            mean("rt_request"),
            mean("rt_service"),
            mean("rt_response"),
        ];
        let total = m["rt"]["mean_ms"].as_f64().unwrap();
        assert!(
            legs.iter().all(|&l| l >= 0.0) && (legs.iter().sum::<f64>() - total).abs() < 0.02,
            "{}: legs {legs:?} against the RT mean {total}",
            m["mode"]
        );
        assert!(legs[1] > 0.0, "{}: the request took no time", m["mode"]);
        // The output reads after the reply are the end of the response leg.
        let readback = mean("rt_readback");
        assert!(
            readback > 0.0 && readback <= legs[3],
            "{}: readback {readback} ms against a response leg of {} ms",
            m["mode"],
            legs[3]
        );
    }
    assert!(stdout.contains("RT outside the server, means"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
    json["device"].as_str().unwrap_or_default().to_string()
}

/// `--devices 2`: the workload over two emulated CPU devices (one scheduler
/// each, behind the multi-device router): every request answered, BE work
/// done, and the result names both devices.
#[test]
fn bench_disb_runs_over_two_devices() {
    let _serial = serial();
    let (out, stdout) = run_tiny_disb("disb-two-devices", &["--modes", "reset", "--devices", "2"]);
    println!("{stdout}");
    let json = result_json(&out);
    let device = json["device"].as_str().unwrap_or_default();
    assert_eq!(device.matches(" + ").count(), 1, "device: {device}");
    let modes = json["modes"].as_array().unwrap();
    for m in modes {
        assert_eq!(
            m["submitted"], m["completed_ok"],
            "unanswered in {}",
            m["mode"]
        );
        assert!(
            m["rt"]["count"].as_u64().unwrap() > 0,
            "no RT in {}",
            m["mode"]
        );
    }
    let reset = &modes[1];
    assert!(reset["be_throughput_rps"].as_f64().unwrap() > 0.0);
    check_per_device(&json, &stdout);
    let _ = std::fs::remove_dir_all(&out);
}

/// The per-device figures of a two-device result: both devices served RT
/// requests in every mode, the devices' RT counts and throughputs add up to
/// the mode's, the mode's RT mean is the devices' means weighted by their
/// counts, each device is compared with the same device of rt-alone, and the
/// table has a row per mode and device.
fn check_per_device(json: &serde_json::Value, stdout: &str) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(1.0);
    let modes = json["modes"].as_array().unwrap();
    let alone = &modes[0];
    assert_eq!(alone["mode"], "rt-alone");
    assert!(stdout.contains("#### Per device"), "{stdout}");
    for m in modes {
        let mode = m["mode"].as_str().unwrap();
        let devs = m["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("{mode}: no devices"));
        assert_eq!(devs.len(), 2, "{mode}");
        let counts: Vec<u64> = devs
            .iter()
            .map(|d| d["rt"]["count"].as_u64().unwrap())
            .collect();
        assert!(
            counts.iter().all(|&c| c > 0),
            "{mode}: RT counts {counts:?}"
        );
        assert_eq!(
            counts.iter().sum::<u64>(),
            m["rt"]["count"].as_u64().unwrap(),
            "{mode}"
        );
        for key in [
            "rt_throughput_rps",
            "be_throughput_rps",
            "total_throughput_rps",
        ] {
            let sum: f64 = devs.iter().map(|d| f(&d[key])).sum();
            assert!(close(sum, f(&m[key])), "{mode} {key}: {sum} vs {}", m[key]);
        }
        let weighted: f64 = devs
            .iter()
            .map(|d| f(&d["rt"]["mean_ms"]) * f(&d["rt"]["count"]))
            .sum::<f64>()
            / f(&m["rt"]["count"]);
        assert!(close(weighted, f(&m["rt"]["mean_ms"])), "{mode}: mean");
        let max = devs
            .iter()
            .map(|d| f(&d["rt"]["max_ms"]))
            .fold(0.0, f64::max);
        assert_eq!(max, f(&m["rt"]["max_ms"]), "{mode}: max");
        for (i, d) in devs.iter().enumerate() {
            assert_eq!(d["device"].as_u64(), Some(i as u64));
            let c = json["device_comparison"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["mode"] == mode && c["device"] == i)
                .unwrap_or_else(|| panic!("{mode}: no comparison for device {i}"));
            assert_eq!(
                f(&c["baseline_rt_mean_ms"]),
                f(&alone["devices"][i]["rt"]["mean_ms"]),
                "{mode} device {i}: not against the same device"
            );
            let row = format!("| {mode} | {i} | {} | ", counts[i]);
            assert!(stdout.contains(&row), "no row {row:?} in\n{stdout}");
        }
    }
}

/// `reef` with its padding options in `--modes`: each setup is a row
/// labelled as given, and only the beside setup launched BE kernels beside
/// RT work (the CPU device plans no padding).
#[test]
fn bench_disb_compares_padding_policies() {
    let _serial = serial();
    let (out, stdout) = run_tiny_disb("disb-beside", &["--modes", "reef,reef:beside1:tile100000"]);
    let json = result_json(&out);
    let modes = json["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["rt-alone", "reef", "reef:beside1:tile100000"]);
    assert!(stdout.contains("| reef:beside1:tile100000 |"), "{stdout}");
    let pads = |i: usize| modes[i]["sched"]["pad_launches"].as_u64().unwrap();
    assert_eq!(pads(1), 0, "plain reef on the CPU pads nothing");
    assert!(pads(2) > 0, "no BE kernel ran beside RT work");
    for m in &modes[1..] {
        assert!(
            m["be_throughput_rps"].as_f64().unwrap() > 0.0,
            "{}: no BE answer in the window",
            m["mode"]
        );
        assert!(
            m["preemptions"].as_u64().unwrap() > 0,
            "{}: no preemption",
            m["mode"]
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
