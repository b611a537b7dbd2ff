//! Device selection: `auto` takes the first CUDA GPU when one works, else the CPU.

use anyhow::{bail, Result};
use reef_exec::Device;
use std::sync::Arc;

/// Which device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU if one is usable, else the CPU.
    Auto,
    /// The CPU backend.
    Cpu,
    /// CUDA GPU 0 (fails if there is none).
    Cuda,
}

/// Opens the chosen device.
pub fn open(choice: DeviceChoice, cpu_threads: Option<usize>) -> Result<Arc<dyn Device>> {
    let cpu = || -> Result<Arc<dyn Device>> {
        Ok(Arc::new(reef_exec::cpu::CpuDevice::new(cpu_threads)?))
    };
    match choice {
        DeviceChoice::Cpu => cpu(),
        DeviceChoice::Cuda => match reef_cuda::CudaDevice::new(0) {
            Ok(d) => Ok(Arc::new(d)),
            Err(e) => bail!("no usable CUDA device: {e}"),
        },
        DeviceChoice::Auto => match reef_cuda::CudaDevice::new(0) {
            Ok(d) => Ok(Arc::new(d)),
            Err(e) => {
                tracing::info!("no usable GPU ({e}); using the CPU backend");
                cpu()
            }
        },
    }
}
