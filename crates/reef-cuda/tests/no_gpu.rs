//! Behaviour on a machine without a GPU (or without CUDA at all): the device
//! reports Unavailable instead of panicking.

use reef_cuda::{cuda_available, CudaDevice, CudaOptions, Precision};
use reef_exec::ExecError;

#[test]
fn device_is_unavailable_without_a_gpu() {
    if cuda_available() {
        println!("SKIP: a GPU is present; this test checks the no-GPU path");
        return;
    }
    match CudaDevice::new(0) {
        Err(ExecError::Unavailable(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("device opened without a GPU"),
    }
    assert!(matches!(
        CudaDevice::with_options(
            3,
            CudaOptions {
                precision: Precision::F32,
                ..CudaOptions::default()
            }
        ),
        Err(ExecError::Unavailable(_))
    ));
}

#[test]
fn options_default_to_tf32() {
    assert_eq!(CudaOptions::default().precision, Precision::Tf32);
}

#[test]
fn the_clock_sampler_fails_naming_why_without_a_gpu() {
    if cuda_available() {
        println!("SKIP: a GPU is present; this test checks the no-GPU path");
        return;
    }
    let err = reef_cuda::clocks::ClockSampler::start(0, std::time::Duration::from_millis(5))
        .err()
        .expect("no clock without a GPU");
    assert!(!err.is_empty());
}
