//! Device selection: `auto` takes the first CUDA GPU when one works, else the CPU.

use anyhow::{bail, Result};
use reef_exec::{Device, ExecError};
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
            // A bad setting (e.g. REEF_PRECISION) is the user's to fix, not a
            // reason to fall back to the CPU.
            Err(e @ ExecError::Invalid(_)) => bail!("CUDA device options: {e}"),
            Err(e) => {
                tracing::info!("no usable GPU ({e}); using the CPU backend");
                cpu()
            }
        },
    }
}

/// The checks of [`open_many`] that take no time: a device count of at
/// least 1, GPU options that parse, and a GPU where one is required. A
/// server runs them before it binds its endpoints, so that such mistakes
/// fail at once; opening a GPU (which compiles its kernels the first time)
/// happens after.
pub fn precheck(choice: DeviceChoice, n: usize) -> Result<()> {
    if n == 0 {
        bail!("--devices must be at least 1");
    }
    if choice != DeviceChoice::Cpu {
        if let Err(e) = reef_cuda::CudaOptions::from_env() {
            bail!("CUDA device options: {e}");
        }
    }
    if choice == DeviceChoice::Cuda && !reef_cuda::cuda_available() {
        bail!("no usable CUDA device: no driver, no NVRTC or no GPU visible");
    }
    Ok(())
}

/// Opens `n` devices: GPUs 0..n, or, on the CPU backend, `n` emulated devices
/// sharing the cores (each gets its own worker pool).
pub fn open_many(choice: DeviceChoice, n: usize) -> Result<Vec<Arc<dyn Device>>> {
    if n == 0 {
        bail!("--devices must be at least 1");
    }
    if n == 1 {
        return Ok(vec![open(choice, None)?]);
    }
    let cpus = || -> Result<Vec<Arc<dyn Device>>> {
        let threads = (std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
            / n)
            .max(1);
        (0..n)
            .map(
                |_| Ok(Arc::new(reef_exec::cpu::CpuDevice::new(Some(threads))?) as Arc<dyn Device>),
            )
            .collect()
    };
    let gpus = || -> Result<Vec<Arc<dyn Device>>> {
        (0..n)
            .map(|i| match reef_cuda::CudaDevice::new(i) {
                Ok(d) => Ok(Arc::new(d) as Arc<dyn Device>),
                Err(e) => bail!("CUDA device {i} of the {n} requested is not usable: {e}"),
            })
            .collect()
    };
    match choice {
        DeviceChoice::Cpu => cpus(),
        DeviceChoice::Cuda => gpus(),
        DeviceChoice::Auto if reef_cuda::cuda_available() => gpus(),
        DeviceChoice::Auto => cpus(),
    }
}
