//! Task contexts made at model load (`SchedConfig::contexts_at_load`): by
//! default the first RT and BE tasks of a model find theirs in the pool and
//! none is made while serving; at 0 the first task makes one; more than the
//! pool keeps is refused.

mod common;

use common::{infer, input_data, tiny_rt, MODEL};
use reef_exec::cpu::CpuDevice;
use reef_model::Tensor;
use reef_sched::{
    InferRequest, Priority, SchedConfig, Scheduler, Service, DEFAULT_CONTEXTS_AT_LOAD,
    MAX_POOLED_CONTEXTS,
};
use std::sync::Arc;
use std::time::Instant;

fn scheduler(contexts_at_load: usize) -> Arc<Scheduler> {
    let cfg = SchedConfig {
        contexts_at_load,
        ..SchedConfig::default()
    };
    tiny_rt(Arc::new(CpuDevice::new(Some(2)).expect("cpu device")), cfg)
}

fn input(s: &Scheduler, seed: u64) -> Tensor {
    let (shape, data) = input_data(s, seed);
    Tensor::f32(shape, data).expect("input")
}

#[test]
fn the_first_tasks_find_contexts_made_at_load() {
    assert_eq!(
        SchedConfig::default().contexts_at_load,
        DEFAULT_CONTEXTS_AT_LOAD
    );
    let s = scheduler(DEFAULT_CONTEXTS_AT_LOAD);
    let rt = infer(&s, vec![input(&s, 1)]);
    assert!(!rt.is_empty());
    // A BE request with an RT request right behind it: two tasks in flight
    // unless the BE task ends first.
    let be = s
        .submit(InferRequest {
            model: MODEL.into(),
            inputs: vec![input(&s, 2).into()],
            priority: Some(Priority::Be),
            arrival: Instant::now(),
        })
        .expect("BE accepted");
    infer(&s, vec![input(&s, 3)]);
    let be = futures_block(be);
    assert!(!be.outputs.is_empty());
    let made = s.stats().contexts_made;
    assert_eq!(
        made, 0,
        "contexts made while serving with {DEFAULT_CONTEXTS_AT_LOAD} made at load"
    );
}

#[test]
fn without_contexts_at_load_the_first_task_makes_one() {
    let s = scheduler(0);
    infer(&s, vec![input(&s, 4)]);
    assert_eq!(s.stats().contexts_made, 1);
    infer(&s, vec![input(&s, 5)]);
    assert_eq!(s.stats().contexts_made, 1, "reused from the pool");
}

#[test]
fn more_contexts_at_load_than_the_pool_keeps_are_refused() {
    let cfg = SchedConfig {
        contexts_at_load: MAX_POOLED_CONTEXTS + 1,
        ..SchedConfig::default()
    };
    let err = cfg.validate().expect_err("over the pool");
    assert!(err.contains("contexts_at_load"), "{err}");
    let dev = Arc::new(CpuDevice::new(Some(2)).expect("cpu device"));
    assert!(Scheduler::new(dev, cfg).is_err());
}

/// Waits for a ticket on this thread.
fn futures_block(t: reef_sched::Ticket) -> reef_sched::InferResponse {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(t)
        .expect("sent")
        .expect("answered")
}
