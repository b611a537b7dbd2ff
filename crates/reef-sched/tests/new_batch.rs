//! Requests at a batch size the model has not run yet: the model is
//! compiled for it on the loader thread, so `submit` returns at once and
//! other requests go on meanwhile; a failed compile answers its request,
//! and a shutdown answers every request still waiting for one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::cpu::CpuDevice;
use reef_model::Tensor;
use reef_sched::{
    GraphSource, InferRequest, InferResponse, Priority, SchedConfig, SchedError, Scheduler,
    Service, Ticket,
};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "resnet_tiny";
/// The tests' bound on anything that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// A source of [`MODEL`] whose graphs for batch sizes of 2 and more wait
/// until the returned sender says go (one message per graph), and fail for
/// batch 5.
fn gated_source() -> (GraphSource, mpsc::Sender<()>) {
    let (go, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let src: GraphSource = Arc::new(move |b| {
        if b == 5 {
            return Err("no graph for batch 5".into());
        }
        if b >= 2 {
            gate.lock()
                .expect("gate")
                .recv_timeout(PATIENCE)
                .map_err(|e| format!("the test never opened the gate: {e}"))?;
        }
        reef_zoo::build(MODEL, b, 3).map_err(|e| e.to_string())
    });
    (src, go)
}

fn scheduler(cfg: SchedConfig) -> (Arc<Scheduler>, mpsc::Sender<()>) {
    let dev = Arc::new(CpuDevice::new(Some(2)).expect("cpu device"));
    let s = Scheduler::new(dev, cfg).expect("scheduler");
    let (src, go) = gated_source();
    s.load_model(MODEL, src, Priority::Be).expect("load");
    (s, go)
}

/// `batch` random images.
fn images(rng: &mut ChaCha8Rng, batch: usize) -> Tensor {
    let data = (0..batch * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::f32(vec![batch, 3, 32, 32], data).expect("input")
}

fn request(x: Tensor, priority: Priority) -> InferRequest {
    InferRequest {
        model: MODEL.into(),
        inputs: vec![x.into()],
        priority: Some(priority),
        arrival: Instant::now(),
    }
}

/// Submits on another thread, failing the test if `submit` blocks.
fn submit_promptly(s: &Arc<Scheduler>, req: InferRequest) -> Result<Ticket, SchedError> {
    let (tx, rx) = mpsc::channel();
    let s = s.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s.submit(req));
    });
    rx.recv_timeout(PATIENCE)
        .expect("submit returned while the compile waits")
}

fn wait(t: Ticket) -> Result<InferResponse, SchedError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(async { tokio::time::timeout(PATIENCE, t).await })
        .expect("answered in time")
        .expect("answer sent")
}

fn logits(r: &InferResponse) -> Vec<f32> {
    r.outputs[0].as_f32().expect("f32 logits").to_vec()
}

#[test]
fn a_new_batch_size_compiles_off_the_submitting_thread() {
    let (s, go) = scheduler(SchedConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let batch = images(&mut rng, 3);
    let waiting = submit_promptly(&s, request(batch.clone(), Priority::Be)).expect("accepted");
    // While batch 3 waits for its compile, batch 1 runs, RT and BE.
    let rows: Vec<Vec<f32>> = (0..3)
        .map(|i| {
            let one = batch.as_f32().expect("f32")[i * 3072..(i + 1) * 3072].to_vec();
            let x = Tensor::f32(vec![1, 3, 32, 32], one).expect("row");
            let prio = if i % 2 == 0 {
                Priority::Rt
            } else {
                Priority::Be
            };
            logits(&wait(s.submit(request(x, prio)).expect("accepted")).expect("ran"))
        })
        .collect();
    assert_eq!(s.stats().be_queue_depth, 1, "batch 3 waits");
    go.send(()).expect("gate");
    let got = logits(&wait(waiting).expect("batch 3 ran"));
    assert_eq!(got.len(), 3 * rows[0].len());
    for (i, row) in rows.iter().enumerate() {
        let err = reef_model::tensor::rel_l2(&got[i * row.len()..(i + 1) * row.len()], row);
        assert!(err < 1e-5, "row {i}: relative error {err}");
    }
    // Compiled now: the next batch-3 request needs no gate.
    let again = wait(
        s.submit(request(images(&mut rng, 3), Priority::Rt))
            .expect("ok"),
    );
    assert!(again.is_ok());
    assert_eq!(s.stats().be_queue_depth, 0);
}

#[test]
fn a_failed_compile_answers_its_request_and_frees_its_place() {
    let cfg = SchedConfig {
        be_capacity: 1,
        ..SchedConfig::default()
    };
    let (s, _go) = scheduler(cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let t = submit_promptly(&s, request(images(&mut rng, 5), Priority::Be)).expect("accepted");
    match wait(t) {
        Err(SchedError::InvalidInput(m)) => assert!(m.contains("batch 5"), "{m}"),
        other => panic!("expected the compile's error, got {:?}", other.map(|_| ())),
    }
    // Its place in the BE queue (capacity 1) is free again.
    let ok = wait(
        s.submit(request(images(&mut rng, 1), Priority::Be))
            .expect("accepted"),
    );
    assert!(ok.is_ok());
}

#[test]
fn a_shutdown_answers_the_requests_waiting_for_a_compile() {
    let (s, go) = scheduler(SchedConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let first = submit_promptly(&s, request(images(&mut rng, 2), Priority::Be)).expect("ok");
    let queued = submit_promptly(&s, request(images(&mut rng, 4), Priority::Rt)).expect("ok");
    let stopper = {
        let s = s.clone();
        std::thread::spawn(move || s.shutdown())
    };
    // Open the gate once the shutdown waits for the compile under way.
    while s.submit(request(images(&mut rng, 1), Priority::Be)).is_ok() {
        std::thread::sleep(Duration::from_millis(1));
    }
    go.send(()).expect("gate");
    stopper.join().expect("shutdown");
    let first = wait(first);
    assert!(
        matches!(first, Ok(_) | Err(SchedError::Cancelled(_))),
        "the compile under way ends in an answer: {:?}",
        first.map(|_| ())
    );
    match wait(queued) {
        Err(SchedError::Cancelled(m)) => assert!(m.contains("shutting down"), "{m}"),
        other => panic!("expected a cancellation, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_multi_device_scheduler_compiles_off_the_submitting_thread_too() {
    let (s, go) = scheduler(SchedConfig::default());
    let m = reef_sched::multi::MultiScheduler::new(vec![s]).expect("multi");
    let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
    let (tx, rx) = mpsc::channel();
    let m2 = m.clone();
    let x = images(&mut rng, 2);
    std::thread::spawn(move || {
        let _ = tx.send(m2.submit(request(x, Priority::Be)));
    });
    let waiting = rx
        .recv_timeout(PATIENCE)
        .expect("submit returned while the compile waits")
        .expect("accepted");
    // Batch 1 is compiled: it runs while batch 2 waits.
    let one = wait(
        m.submit(request(images(&mut rng, 1), Priority::Rt))
            .expect("ok"),
    );
    assert!(one.is_ok());
    go.send(()).expect("gate");
    let two = wait(waiting).expect("batch 2 ran");
    assert_eq!(two.outputs[0].shape[0], 2);
    assert_eq!(two.stats.device, 0, "the answer names its device");
}
