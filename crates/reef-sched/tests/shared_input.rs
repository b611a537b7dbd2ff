//! Inputs in shared device regions (`Input::Shared`, Triton's CUDA shared
//! memory): the scheduler checks them against the model and the region's
//! bounds, and a task copies them in with `Context::write_input_shared`.
//! On the CPU backend (no device memory to map) a region of host memory
//! stands in for the mapped allocation; the answer must equal, bit for bit,
//! the one for the same values as a host tensor. The CPU backend itself
//! refuses to map IPC handles, naming itself.

mod common;

use common::{infer, input_data, tiny_rt, MODEL};
use reef_exec::cpu::CpuDevice;
use reef_exec::SharedRegion;
use reef_model::{DType, Tensor};
use reef_sched::{
    InferRequest, Input, Priority, SchedConfig, SchedError, Scheduler, Service, SharedInput,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Host memory standing in for a mapped device allocation.
#[derive(Debug)]
struct HostRegion(Mutex<Vec<u8>>);

impl SharedRegion for HostRegion {
    fn byte_size(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn read(&self, offset: usize, out: &mut [u8]) -> reef_exec::Result<()> {
        reef_exec::shared::check_span("read", self.byte_size(), offset, out.len())?;
        out.copy_from_slice(&self.0.lock().unwrap()[offset..offset + out.len()]);
        Ok(())
    }
    fn write(&self, offset: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        reef_exec::shared::check_span("write", self.byte_size(), offset, bytes.len())?;
        self.0.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn scheduler() -> Arc<Scheduler> {
    let dev = Arc::new(CpuDevice::new(Some(2)).expect("cpu device"));
    tiny_rt(dev, SchedConfig::default())
}

fn submit(s: &Scheduler, input: Input) -> Result<Vec<Tensor>, SchedError> {
    s.infer_blocking(InferRequest {
        model: MODEL.into(),
        inputs: vec![input],
        priority: Some(Priority::Rt),
        arrival: Instant::now(),
    })
    .map(|r| r.outputs)
}

#[test]
fn a_shared_input_answers_as_the_same_host_tensor() {
    let s = scheduler();
    let (shape, data) = input_data(&s, 11);
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    // The tensor at offset 24 of a region with NaN bytes around it.
    let mut mem = vec![0xffu8; 24 + bytes.len() + 8];
    mem[24..24 + bytes.len()].copy_from_slice(&bytes);
    let region: Arc<dyn SharedRegion> = Arc::new(HostRegion(Mutex::new(mem)));
    let shared = Input::Shared(SharedInput {
        dtype: DType::F32,
        shape: shape.clone(),
        region: region.clone(),
        offset: 24,
    });
    let got = submit(&s, shared).expect("answered");
    let want = infer(&s, vec![Tensor::f32(shape.clone(), data).expect("sizes")]);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.bytes(), w.bytes(), "bit-identical to the host input");
    }

    // Past the region's end: refused at submit, naming the input.
    let late = Input::Shared(SharedInput {
        dtype: DType::F32,
        shape: shape.clone(),
        region: region.clone(),
        offset: 40,
    });
    match submit(&s, late) {
        Err(SchedError::InvalidInput(m)) => {
            assert!(m.contains("exceeds its shared region"), "{m}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // The wrong type: refused as for a host tensor.
    let wrong = Input::Shared(SharedInput {
        dtype: DType::I32,
        shape,
        region,
        offset: 0,
    });
    assert!(matches!(
        submit(&s, wrong),
        Err(SchedError::InvalidInput(_))
    ));
}

#[test]
fn the_cpu_backend_maps_no_ipc_handles() {
    let s = scheduler();
    let e = s.open_shared(0, &[0u8; 64], 16).unwrap_err().to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    let e = s.open_shared(1, &[0u8; 64], 16).unwrap_err().to_string();
    assert!(e.contains("device 1 does not exist"), "{e}");
    // Over several devices, the region goes to the one named.
    let multi = reef_sched::multi::MultiScheduler::new(vec![scheduler(), scheduler()])
        .expect("two devices");
    let e = multi
        .open_shared(1, &[0u8; 64], 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    let e = multi
        .open_shared(2, &[0u8; 64], 16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("device 2 does not exist") && e.contains("2 devices"),
        "{e}"
    );
}
