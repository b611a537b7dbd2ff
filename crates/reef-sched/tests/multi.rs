//! The multi-device scheduler on emulated devices (one single-threaded CPU
//! device per scheduler): BE bursts spread over every device, RT requests go
//! to the shorter RT queue, unhealthy and faulting devices get no new work
//! while every request is still answered, results agree bit for bit across
//! devices, placement on a subset is respected, and statistics are reported
//! per device with each device's health.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::cpu::CpuDevice;
use reef_exec::{Device, DeviceKind, ExecError, Lane, ModelHandle, Plan};
use reef_model::{DType, Tensor};
use reef_sched::multi::MultiScheduler;
use reef_sched::{
    GraphSource, InferRequest, Priority, SchedConfig, SchedError, Scheduler, Service, Ticket,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The tests share two cores; one at a time keeps their timing independent.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn zoo(name: &'static str) -> GraphSource {
    Arc::new(move |b| reef_zoo::build(name, b, 3).map_err(|e| e.to_string()))
}

fn cpu() -> Arc<dyn Device> {
    Arc::new(CpuDevice::new(Some(1)).expect("cpu device"))
}

fn scheds(n: usize) -> Vec<Arc<Scheduler>> {
    (0..n)
        .map(|_| Scheduler::new(cpu(), SchedConfig::default()).expect("scheduler"))
        .collect()
}

/// Random inputs for `model` with batch `batch`, never all zeros.
fn inputs(s: &dyn Service, model: &str, batch: usize, rng: &mut ChaCha8Rng) -> Vec<Tensor> {
    let info = s
        .models()
        .into_iter()
        .find(|m| m.name == model)
        .expect("model loaded");
    info.inputs
        .iter()
        .map(|t| {
            assert_eq!(t.dtype, DType::F32, "test models take f32 inputs");
            let shape: Vec<usize> = t
                .shape
                .iter()
                .map(|&d| if d < 0 { batch } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            Tensor::f32(
                shape,
                (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            )
            .expect("sizes match")
        })
        .collect()
}

fn req(model: &str, inputs: Vec<Tensor>, p: Priority) -> InferRequest {
    InferRequest {
        model: model.into(),
        inputs: inputs.into_iter().map(Into::into).collect(),
        priority: Some(p),
        arrival: Instant::now(),
    }
}

fn wait(t: Ticket) -> Vec<Tensor> {
    t.blocking_recv()
        .expect("ticket resolved")
        .expect("request succeeded")
        .outputs
}

/// Completions per device, (rt, be).
fn completed(m: &MultiScheduler) -> Vec<[u64; 2]> {
    m.device_stats().iter().map(|d| d.stats.completed).collect()
}

/// Completions per device once `total` tasks of class `class` (0 rt, 1 be)
/// are counted (waits at most 5 s, then returns what is). A device counts a
/// task before answering it, so this returns at once when every ticket of
/// the test has resolved; the wait covers requests whose tickets were
/// dropped.
fn settled(m: &MultiScheduler, class: usize, total: u64) -> Vec<[u64; 2]> {
    let t0 = Instant::now();
    loop {
        let c = completed(m);
        if c.iter().map(|c| c[class]).sum::<u64>() >= total || t0.elapsed().as_secs() >= 5 {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn be_burst_spreads_over_all_devices_with_identical_results() {
    let _s = serial();
    let m = MultiScheduler::new(scheds(3)).expect("multi");
    m.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    assert_eq!(m.models().len(), 1, "a model is listed once");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = inputs(&*m, "mobilenet_tiny", 1, &mut rng);
    // Reference: a scheduler of its own on a device of its own.
    let solo = Scheduler::new(cpu(), SchedConfig::default()).expect("scheduler");
    solo.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    let want = solo
        .infer_blocking(req("mobilenet_tiny", x.clone(), Priority::Be))
        .expect("reference")
        .outputs;
    solo.shutdown();
    let tickets: Vec<Ticket> = (0..24)
        .map(|_| {
            m.submit(req("mobilenet_tiny", x.clone(), Priority::Be))
                .expect("accepted")
        })
        .collect();
    for t in tickets {
        assert!(wait(t) == want, "result differs from the reference");
    }
    let done = settled(&m, 1, 24);
    println!("BE completions per device: {done:?}");
    assert!(
        done.iter().all(|c| c[1] > 0),
        "a device got no BE work: {done:?}"
    );
    assert_eq!(done.iter().map(|c| c[1]).sum::<u64>(), 24);
    assert_eq!(m.stats().completed[1], 24);
    m.shutdown();
}

#[test]
fn answers_name_the_device_that_ran_them() {
    let _s = serial();
    let s = scheds(3);
    // A single scheduler is device 0.
    s[2].load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = inputs(&*s[2], "mobilenet_tiny", 1, &mut rng);
    let alone = s[2]
        .infer_blocking(req("mobilenet_tiny", x.clone(), Priority::Be))
        .expect("answered");
    assert_eq!(alone.stats.device, 0);
    s[2].unload_model("mobilenet_tiny").expect("unload");
    let m = MultiScheduler::new(s).expect("multi");
    m.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    // Device 2 already answered one request above.
    let before = completed(&m);
    let tickets: Vec<Ticket> = (0..18)
        .map(|_| {
            m.submit(req("mobilenet_tiny", x.clone(), Priority::Be))
                .expect("accepted")
        })
        .collect();
    let mut answered = [0u64; 3];
    for t in tickets {
        let r = t
            .blocking_recv()
            .expect("ticket resolved")
            .expect("request succeeded");
        assert!(r.stats.device < 3, "device {} out of range", r.stats.device);
        answered[r.stats.device] += 1;
    }
    // The devices' own counts say the same (a device counts a task before
    // answering it).
    let done: Vec<u64> = completed(&m)
        .iter()
        .zip(&before)
        .map(|(c, b)| c[1] - b[1])
        .collect();
    println!("answers per device {answered:?}, completions {done:?}");
    assert_eq!(
        done,
        answered.to_vec(),
        "the answers' devices disagree with the devices' counts"
    );
    assert!(
        answered.iter().all(|&n| n > 0),
        "a device got no work: {answered:?}"
    );
    m.shutdown();
}

#[test]
fn results_are_bit_identical_on_every_device() {
    let _s = serial();
    let m = MultiScheduler::new(scheds(3)).expect("multi");
    m.load_model("resnet_tiny", zoo("resnet_tiny"), Priority::Rt)
        .expect("load");
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x = inputs(&*m, "resnet_tiny", 2, &mut rng);
    let mut outs = vec![];
    for d in 0..3 {
        for e in 0..3 {
            m.set_healthy(e, e == d).expect("device exists");
        }
        outs.push(wait(
            m.submit(req("resnet_tiny", x.clone(), Priority::Rt))
                .expect("accepted"),
        ));
        let done = settled(&m, 0, d as u64 + 1);
        assert_eq!(done[d][0], 1, "device {d} did not run it: {done:?}");
    }
    let norm: f32 = outs[0]
        .iter()
        .flat_map(|t| t.as_f32().expect("f32 output").iter().copied())
        .map(|v| v * v)
        .sum();
    assert!(norm > 0.0, "outputs are all zeros");
    assert!(outs[1] == outs[0], "device 1 differs from device 0");
    assert!(outs[2] == outs[0], "device 2 differs from device 0");
    m.shutdown();
}

#[test]
fn rt_request_goes_to_the_shorter_rt_queue() {
    let _s = serial();
    let s = scheds(2);
    let m = MultiScheduler::new(s.clone()).expect("multi");
    m.load_model("resnet_tiny", zoo("resnet_tiny"), Priority::Rt)
        .expect("load");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = inputs(&*m, "resnet_tiny", 4, &mut rng);
    // A backlog of RT work on device 0, submitted around the router.
    let backlog: Vec<Ticket> = (0..12)
        .map(|_| {
            s[0].submit(req("resnet_tiny", x.clone(), Priority::Rt))
                .expect("accepted")
        })
        .collect();
    let depth0 = m.device_stats()[0].stats.rt_queue_depth;
    let t = m
        .submit(req("resnet_tiny", x.clone(), Priority::Rt))
        .expect("accepted");
    let out = wait(t);
    for b in backlog {
        assert!(wait(b) == out, "same input, different result");
    }
    // Counted once all 13 are (device 0 keeps finishing backlog meanwhile, so
    // a partial count would not say where the routed request ran).
    let done = settled(&m, 0, 13);
    println!("RT queue depth of device 0 at submit: {depth0}; completions {done:?}");
    assert!(depth0 > 0, "the backlog drained before the request came");
    assert_eq!(done[1][0], 1, "the RT request did not go to device 1");
    assert_eq!(done[0][0], 12);
    m.shutdown();
}

#[test]
fn unhealthy_device_gets_no_new_work_and_all_is_answered() {
    let _s = serial();
    let m = MultiScheduler::new(scheds(3)).expect("multi");
    m.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = inputs(&*m, "mobilenet_tiny", 1, &mut rng);
    let submit = || {
        m.submit(req("mobilenet_tiny", x.clone(), Priority::Be))
            .expect("accepted")
    };
    let mut tickets: Vec<Ticket> = (0..9).map(|_| submit()).collect();
    // Taken out while it has work: that work is still answered.
    m.set_healthy(1, false).expect("device exists");
    let in_flight_at_removal = m.device_stats()[1].stats.be_queue_depth;
    tickets.extend((0..12).map(|_| submit()));
    let want = wait(tickets.remove(0));
    for t in tickets {
        assert!(wait(t) == want, "same input, different result");
    }
    let done = settled(&m, 1, 21);
    let stats = m.device_stats();
    println!("completions {done:?} (device 1 had {in_flight_at_removal} queued at removal)");
    assert!(!stats[1].healthy, "device 1 reported healthy");
    assert!(done[1][1] <= 3, "device 1 got work after removal: {done:?}");
    assert_eq!(done.iter().map(|c| c[1]).sum::<u64>(), 21);
    assert!(done[0][1] >= 6 && done[2][1] >= 6, "uneven: {done:?}");
    // No healthy device left: refused, not lost.
    m.set_healthy(0, false).expect("device exists");
    m.set_healthy(2, false).expect("device exists");
    let e = m
        .submit(req("mobilenet_tiny", x.clone(), Priority::Be))
        .expect_err("no device to take it");
    assert!(matches!(e, SchedError::Internal(_)), "{e}");
    assert!(matches!(
        m.set_healthy(3, true),
        Err(SchedError::InvalidInput(msg)) if msg.contains("device 3")
    ));
    m.shutdown();
}

/// A CPU device whose model loads fail once `fail` is set (a device fault).
struct FaultyDevice {
    inner: CpuDevice,
    fail: AtomicBool,
}

impl Device for FaultyDevice {
    fn name(&self) -> String {
        format!("faulty {}", self.inner.name())
    }
    fn kind(&self) -> DeviceKind {
        self.inner.kind()
    }
    fn compute_units(&self) -> usize {
        self.inner.compute_units()
    }
    fn load(&self, plan: Arc<Plan>) -> reef_exec::Result<Arc<dyn ModelHandle>> {
        if self.fail.load(Ordering::Acquire) {
            return Err(ExecError::Unavailable("injected device fault".into()));
        }
        self.inner.load(plan)
    }
    fn lane(&self, priority: reef_exec::Priority) -> reef_exec::Result<Box<dyn Lane>> {
        self.inner.lane(priority)
    }
}

#[test]
fn faulting_device_is_taken_out_and_the_request_retried() {
    let _s = serial();
    let faulty = Arc::new(FaultyDevice {
        inner: CpuDevice::new(Some(1)).expect("cpu device"),
        fail: AtomicBool::new(false),
    });
    let s0 = Scheduler::new(faulty.clone(), SchedConfig::default()).expect("scheduler");
    let s1 = Scheduler::new(cpu(), SchedConfig::default()).expect("scheduler");
    let m = MultiScheduler::new(vec![s0, s1]).expect("multi");
    m.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    faulty.fail.store(true, Ordering::Release);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Batch 2 is compiled and loaded at first use: device 0 faults then.
    let x = inputs(&*m, "mobilenet_tiny", 2, &mut rng);
    for _ in 0..4 {
        let r = m
            .infer_blocking(req("mobilenet_tiny", x.clone(), Priority::Be))
            .expect("retried on the healthy device");
        assert_eq!(
            r.stats.device, 1,
            "the answer names the device that gave it"
        );
    }
    settled(&m, 1, 4);
    let stats = m.device_stats();
    assert!(
        !stats[0].healthy,
        "the faulting device is still in rotation"
    );
    assert!(stats[1].healthy);
    assert_eq!(stats[0].stats.completed[1], 0);
    assert_eq!(stats[1].stats.completed[1], 4);
    m.shutdown();
}

#[test]
fn device_stats_report_each_device_and_its_health() {
    let _s = serial();
    let faulty = Arc::new(FaultyDevice {
        inner: CpuDevice::new(Some(1)).expect("cpu device"),
        fail: AtomicBool::new(false),
    });
    let mut s = vec![Scheduler::new(faulty.clone(), SchedConfig::default()).expect("scheduler")];
    s.extend(scheds(2));
    // A single scheduler reports itself as device 0 (the provided method).
    let one = s[1].device_stats();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].index, one[0].healthy), (0, true));
    assert_eq!(one[0].device, s[1].stats().device);
    let m = MultiScheduler::new(s).expect("multi");
    m.load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .expect("load");
    let fresh = m.device_stats();
    assert_eq!(fresh.len(), 3, "one entry per device");
    assert!(fresh
        .iter()
        .all(|d| d.healthy && d.stats.completed == [0, 0]));
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    // BE work on every device while all are healthy (batch 1, compiled at load).
    let x1 = inputs(&*m, "mobilenet_tiny", 1, &mut rng);
    let tickets: Vec<Ticket> = (0..9)
        .map(|_| {
            m.submit(req("mobilenet_tiny", x1.clone(), Priority::Be))
                .expect("accepted")
        })
        .collect();
    for t in tickets {
        wait(t);
    }
    settled(&m, 1, 9);
    // Then device 0 faults at its first batch-2 load and leaves rotation; RT
    // requests are retried on the others.
    faulty.fail.store(true, Ordering::Release);
    let x2 = inputs(&*m, "mobilenet_tiny", 2, &mut rng);
    for _ in 0..6 {
        m.infer_blocking(req("mobilenet_tiny", x2.clone(), Priority::Rt))
            .expect("retried on a healthy device");
    }
    settled(&m, 0, 6);
    let per = m.device_stats();
    let total = m.stats();
    println!(
        "per device: {:?}; aggregate {:?}",
        per.iter()
            .map(|d| (d.index, d.healthy, d.stats.completed))
            .collect::<Vec<_>>(),
        total.completed
    );
    assert_eq!(per.len(), 3, "one entry per device");
    for (i, d) in per.iter().enumerate() {
        assert_eq!(d.index, i, "entries are in device order");
        assert_eq!(d.device, d.stats.device, "device {i} names its device");
    }
    assert!(per[0].device.starts_with("faulty"), "{}", per[0].device);
    assert_eq!(
        per.iter().map(|d| d.healthy).collect::<Vec<_>>(),
        [false, true, true],
        "only the faulting device is out of rotation"
    );
    for class in 0..2 {
        let sum: u64 = per.iter().map(|d| d.stats.completed[class]).sum();
        assert_eq!(sum, total.completed[class], "class {class}: {per:?}");
    }
    assert_eq!(total.completed, [6, 9]);
    assert!(per[0].stats.completed[1] > 0, "device 0 ran no BE work");
    assert_eq!(
        per[0].stats.completed[0], 0,
        "the faulted device ran RT work"
    );
    assert_eq!(
        per.iter().map(|d| d.stats.preemptions).sum::<u64>(),
        total.preemptions
    );
    m.shutdown();
}

#[test]
fn placement_on_a_subset_is_respected() {
    let _s = serial();
    let m = MultiScheduler::new(scheds(3)).expect("multi");
    m.load_model_on(
        "mobilenet_tiny",
        zoo("mobilenet_tiny"),
        Priority::Be,
        &[0, 2],
    )
    .expect("load");
    m.load_model_on("resnet_tiny", zoo("resnet_tiny"), Priority::Be, &[1])
        .expect("load");
    let e = m
        .load_model_on("resnet_tiny", zoo("resnet_tiny"), Priority::Be, &[0, 5])
        .expect_err("device 5 does not exist");
    assert!(
        matches!(&e, SchedError::InvalidInput(msg) if msg.contains("device 5")),
        "{e}"
    );
    let names: Vec<String> = m.models().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["mobilenet_tiny", "resnet_tiny"]);
    assert!(m.scheduler(1).expect("device 1").models().len() == 1);
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let xm = inputs(&*m, "mobilenet_tiny", 1, &mut rng);
    let xr = inputs(&*m, "resnet_tiny", 1, &mut rng);
    let tickets: Vec<Ticket> = (0..8)
        .flat_map(|_| {
            [
                m.submit(req("mobilenet_tiny", xm.clone(), Priority::Be))
                    .expect("accepted"),
                m.submit(req("resnet_tiny", xr.clone(), Priority::Be))
                    .expect("accepted"),
            ]
        })
        .collect();
    for t in tickets {
        wait(t);
    }
    let done = settled(&m, 1, 16);
    println!("completions {done:?}");
    assert_eq!(done[1][1], 8, "resnet_tiny only runs on device 1");
    assert!(done[0][1] > 0 && done[2][1] > 0, "{done:?}");
    assert_eq!(done[0][1] + done[2][1], 8);
    let before2 = done[2][1];
    // Re-placing moves the model.
    m.load_model_on("resnet_tiny", zoo("resnet_tiny"), Priority::Be, &[2])
        .expect("reload");
    assert!(m.scheduler(1).expect("device 1").models().is_empty());
    wait(
        m.submit(req("resnet_tiny", xr.clone(), Priority::Be))
            .expect("accepted"),
    );
    let done = settled(&m, 1, 17);
    assert_eq!(done[1][1], 8, "device 1 no longer holds resnet_tiny");
    assert_eq!(done[2][1], before2 + 1, "{done:?}");
    m.unload_model("resnet_tiny").expect("unload");
    assert!(matches!(
        m.submit(req("resnet_tiny", xr, Priority::Be)),
        Err(SchedError::UnknownModel(_))
    ));
    m.shutdown();
}

#[test]
fn needs_at_least_one_device() {
    assert!(matches!(
        MultiScheduler::new(vec![]),
        Err(SchedError::InvalidInput(_))
    ));
}
