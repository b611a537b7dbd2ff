//! `TaskStats::first_kernel`: every RT task launched on an idle RT lane has
//! its first kernel timed on the device (the CPU backend's lane timer here),
//! within the task's own time; BE tasks and `seq` mode's tasks have none.

mod common;

use common::{input_data, tiny_rt, MODEL};
use reef_exec::cpu::CpuDevice;
use reef_model::Tensor;
use reef_sched::{InferRequest, Mode, Priority, SchedConfig, Service, TaskStats};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stats_of(mode: Mode, priority: Priority, n: usize) -> Vec<TaskStats> {
    let cfg = SchedConfig {
        mode,
        ..SchedConfig::default()
    };
    let s = tiny_rt(Arc::new(CpuDevice::new(Some(2)).expect("cpu device")), cfg);
    let (shape, data) = input_data(&s, 5);
    let out = (0..n)
        .map(|_| {
            let input = Tensor::f32(shape.clone(), data.clone()).expect("sizes match");
            let r = s
                .infer_blocking(InferRequest {
                    model: MODEL.into(),
                    inputs: vec![input.into()],
                    priority: Some(priority),
                    arrival: Instant::now(),
                })
                .expect("answered");
            // One at a time, on an idle lane.
            std::thread::sleep(Duration::from_millis(2));
            r.stats
        })
        .collect();
    s.shutdown();
    out
}

#[test]
fn rt_tasks_on_an_idle_lane_have_their_first_kernel_timed() {
    for mode in [Mode::Stream, Mode::Wait, Mode::Reset, Mode::Reef] {
        for st in stats_of(mode, Priority::Rt, 5) {
            let d = st
                .first_kernel
                .unwrap_or_else(|| panic!("{mode}: an RT task without its first kernel timed"));
            assert!(d > Duration::ZERO, "{mode}: {d:?}");
            assert!(
                d <= st.latency - st.queued,
                "{mode}: first kernel {d:?} beyond the task's time on the device ({:?})",
                st.latency - st.queued
            );
        }
    }
}

#[test]
fn be_tasks_and_seq_mode_have_no_first_kernel_time() {
    for st in stats_of(Mode::Reset, Priority::Be, 3) {
        assert_eq!(st.first_kernel, None, "a BE task was timed");
    }
    for st in stats_of(Mode::Seq, Priority::Rt, 3) {
        assert_eq!(st.first_kernel, None, "seq mode timed a task");
    }
}
