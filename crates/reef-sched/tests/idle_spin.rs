//! The scheduling thread's polling after its work (`SchedConfig::idle_spin`):
//! requests that arrive while it polls, and after it has gone to sleep, are
//! answered alike, and a shutdown during the polling ends it at once.

mod common;

use common::{infer, input_data, tiny_rt};
use reef_exec::cpu::CpuDevice;
use reef_model::Tensor;
use reef_sched::{SchedConfig, Service};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPIN: Duration = Duration::from_millis(400);

#[test]
fn requests_during_and_after_the_polling_are_answered_alike() {
    let cfg = SchedConfig {
        idle_spin: Some(SPIN),
        ..SchedConfig::default()
    };
    let s = tiny_rt(Arc::new(CpuDevice::new(Some(2)).expect("cpu device")), cfg);
    let input = |seed| {
        let (shape, data) = input_data(&s, seed);
        vec![Tensor::f32(shape, data).expect("sizes match")]
    };
    let (a, b) = (input(1), input(2));
    let want_a = infer(&s, a.clone());
    // At once: the thread is still polling after the first answer.
    let got_b = infer(&s, b.clone());
    assert_ne!(want_a, got_b, "two inputs, two answers");
    assert_eq!(infer(&s, a.clone()), want_a, "answered while polling");
    // After the polling: the thread sleeps on its queue and wakes for this.
    std::thread::sleep(SPIN + Duration::from_millis(100));
    assert_eq!(infer(&s, a), want_a, "answered after a sleep");
    assert_eq!(infer(&s, b), got_b);
    // A shutdown while polling is taken at once, not after the polling.
    let t = Instant::now();
    s.shutdown();
    let took = t.elapsed();
    println!("shutdown while polling took {took:?}");
    assert!(took < SPIN / 2, "shutdown waited for the polling: {took:?}");
}
