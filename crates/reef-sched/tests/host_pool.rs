//! The scheduler's pinned input pool (`SchedConfig::pinned_input_bytes`):
//! 256 MiB by default where the device offers one (a GPU), off at 0, and
//! when on, buffers for every FP32 model input are made
//! at model load (pinning stays off the requests' path), and tensors built
//! in them are answered like any other. The CPU backend has no pool, so a
//! CPU device that offers one (pinning nothing) stands in for a GPU.

mod common;

use common::{infer, input_data, tiny_rt};
use reef_exec::cpu::CpuDevice;
use reef_exec::host_pool::{HostPool, NoPin};
use reef_exec::{Device, DeviceKind, ModelHandle, Plan, Priority as LanePriority};
use reef_model::Tensor;
use reef_sched::{SchedConfig, Scheduler, Service};
use std::sync::{Arc, OnceLock};

/// A CPU device with a pool of unpinned buffers.
struct WithPool {
    cpu: CpuDevice,
    pool: OnceLock<Arc<HostPool>>,
}

impl Device for WithPool {
    fn name(&self) -> String {
        self.cpu.name()
    }
    fn kind(&self) -> DeviceKind {
        self.cpu.kind()
    }
    fn compute_units(&self) -> usize {
        self.cpu.compute_units()
    }
    fn load(&self, plan: Arc<Plan>) -> reef_exec::Result<Arc<dyn ModelHandle>> {
        self.cpu.load(plan)
    }
    fn lane(&self, p: LanePriority) -> reef_exec::Result<Box<dyn reef_exec::Lane>> {
        self.cpu.lane(p)
    }
    fn host_pool(&self, max_bytes: usize) -> Option<Arc<HostPool>> {
        Some(
            self.pool
                .get_or_init(|| Arc::new(HostPool::new(Box::new(NoPin), max_bytes, 0)))
                .clone(),
        )
    }
}

fn scheduler(pinned_input_bytes: usize) -> Arc<Scheduler> {
    let dev = WithPool {
        cpu: CpuDevice::new(Some(2)).expect("cpu device"),
        pool: OnceLock::new(),
    };
    let cfg = SchedConfig {
        pinned_input_bytes,
        ..SchedConfig::default()
    };
    tiny_rt(Arc::new(dev), cfg)
}

#[test]
fn the_pool_is_off_at_zero_and_prepared_at_load_when_on() {
    assert_eq!(
        SchedConfig::default().pinned_input_bytes,
        reef_sched::DEFAULT_PINNED_INPUT_BYTES
    );
    let cpu = tiny_rt(
        Arc::new(CpuDevice::new(Some(2)).expect("cpu device")),
        SchedConfig::default(),
    );
    assert!(cpu.host_pool().is_none(), "the CPU backend makes no pool");
    assert!(scheduler(0).host_pool().is_none(), "off at zero");
    let s = scheduler(16 << 20);
    let pool = s.host_pool().expect("configured");
    assert_eq!(
        pool.buffers(),
        4,
        "buffers made for the model's input at load"
    );
    let (shape, data) = input_data(&s, 7);
    let plain = infer(
        &s,
        vec![Tensor::f32(shape.clone(), data.clone()).expect("sizes")],
    );
    let buf = pool.copied(&data).expect("a prepared buffer");
    let pooled = infer(&s, vec![Tensor::f32_shared(shape, buf).expect("sizes")]);
    assert_eq!(plain, pooled, "a tensor in a pool buffer answers the same");
    assert_eq!(pool.buffers(), 4, "served by a prepared buffer");
}
