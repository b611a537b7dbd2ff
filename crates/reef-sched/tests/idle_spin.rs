//! The scheduling thread's polling after its work (`SchedConfig::idle_spin`):
//! requests that arrive while it polls, and after it has gone to sleep, are
//! answered alike, and a shutdown during the polling ends it at once.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::cpu::CpuDevice;
use reef_exec::Device;
use reef_model::Tensor;
use reef_sched::{GraphSource, InferRequest, Priority, SchedConfig, Scheduler, Service};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPIN: Duration = Duration::from_millis(400);

fn scheduler() -> Arc<Scheduler> {
    let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).expect("cpu device"));
    let cfg = SchedConfig {
        idle_spin: Some(SPIN),
        ..SchedConfig::default()
    };
    let s = Scheduler::new(dev, cfg).expect("scheduler");
    let src: GraphSource =
        Arc::new(|b| reef_zoo::build("resnet_tiny", b, 3).map_err(|e| e.to_string()));
    s.load_model("resnet_tiny", src, Priority::Rt)
        .expect("load");
    s
}

fn input(s: &Scheduler, seed: u64) -> Vec<Tensor> {
    let info = s.models().into_iter().next().expect("one model");
    let shape: Vec<usize> = info.inputs[0]
        .shape
        .iter()
        .map(|&d| d.max(1) as usize)
        .collect();
    let n = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    vec![Tensor::f32(shape, data).expect("sizes match")]
}

fn infer(s: &Scheduler, inputs: &[Tensor]) -> Vec<Tensor> {
    s.infer_blocking(InferRequest {
        model: "resnet_tiny".into(),
        inputs: inputs.to_vec(),
        priority: Some(Priority::Rt),
        arrival: Instant::now(),
    })
    .expect("answered")
    .outputs
}

#[test]
fn requests_during_and_after_the_polling_are_answered_alike() {
    let s = scheduler();
    let (a, b) = (input(&s, 1), input(&s, 2));
    let want_a = infer(&s, &a);
    // At once: the thread is still polling after the first answer.
    let got_b = infer(&s, &b);
    assert_ne!(want_a, got_b, "two inputs, two answers");
    assert_eq!(infer(&s, &a), want_a, "answered while polling");
    // After the polling: the thread sleeps on its queue and wakes for this.
    std::thread::sleep(SPIN + Duration::from_millis(100));
    assert_eq!(infer(&s, &a), want_a, "answered after a sleep");
    assert_eq!(infer(&s, &b), got_b);
    // A shutdown while polling is taken at once, not after the polling.
    let t = Instant::now();
    s.shutdown();
    let took = t.elapsed();
    println!("shutdown while polling took {took:?}");
    assert!(took < SPIN / 2, "shutdown waited for the polling: {took:?}");
}
