//! Builders shared by the unit tests of the figures, the ceiling and the
//! report.

use crate::schema::RequestRecord;
use crate::workload::{Load, TaskSpec, Workload};
use reef_sched::Priority;

/// A workload of one closed-loop RT task of model "m".
pub(crate) fn one_rt_task(duration_s: f64, warmup_s: f64) -> Workload {
    Workload {
        name: "x".into(),
        notes: None,
        duration_s,
        warmup_s: Some(warmup_s),
        tasks: vec![TaskSpec {
            name: None,
            model: "m".into(),
            priority: Priority::Rt,
            load: Load::Continuous,
            batch_size: 1,
            seed: None,
        }],
    }
}

/// A successful request of task 0 (warm-up before 100 ms) with no
/// scheduler facts; tests override the fields they vary.
pub(crate) fn record(p: Priority, arrival: f64, lat: f64) -> RequestRecord {
    RequestRecord {
        task: 0,
        priority: p,
        arrival_ms: arrival,
        latency_ms: lat,
        ok: true,
        error: None,
        warmup: arrival < 100.0,
        queued_ms: None,
        input_ms: None,
        output_ms: None,
        first_kernel_ms: None,
        preemptions: 0,
        kernels_rerun: 0,
        dispatch_lag_us: None,
        service_ms: None,
        client_ms: None,
        request_ms: None,
        response_ms: None,
        readback_ms: None,
        device: None,
    }
}
