//! The GPU's SM clock through NVML (libnvidia-ml, loaded at run time): a
//! thread that reads one device's clock at a fixed period, so that a
//! benchmark can put the clock beside its latencies (a GPU that lowers its
//! clock while idle makes sparse work slower than the same work beside a
//! busy neighbour).

use crate::error::CudaCall;
use cudarc::driver::{result, sys};
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::Nvml;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Samples one GPU's SM clock on a thread of its own until dropped.
pub struct ClockSampler {
    samples: Arc<Mutex<Vec<(Instant, u32)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClockSampler {
    /// Starts sampling CUDA device `ordinal`'s SM clock every `period`
    /// (NVML finds the device by its PCI bus id, since the two number
    /// devices differently). Fails, naming why, where the driver or NVML
    /// cannot be loaded or the clock cannot be read.
    pub fn start(ordinal: usize, period: Duration) -> Result<ClockSampler, String> {
        let bus_id = pci_bus_id(ordinal).map_err(|e| e.to_string())?;
        let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        nvml.device_by_pci_bus_id(bus_id.as_str())
            .and_then(|d| d.clock_info(Clock::SM))
            .map_err(|e| format!("NVML: the SM clock of GPU {ordinal} ({bus_id}): {e}"))?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, until) = (samples.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("reef-sm-clock".into())
            .spawn(move || {
                let Ok(dev) = nvml.device_by_pci_bus_id(bus_id.as_str()) else {
                    return;
                };
                while !until.load(Ordering::Relaxed) {
                    if let Ok(mhz) = dev.clock_info(Clock::SM) {
                        into.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((Instant::now(), mhz));
                    }
                    std::thread::sleep(period);
                }
            })
            .map_err(|e| format!("starting the clock sampler: {e}"))?;
        Ok(ClockSampler {
            samples,
            stop,
            thread: Some(thread),
        })
    }

    /// The samples (MHz) taken between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<u32> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .map(|&(_, mhz)| mhz)
            .collect()
    }
}

impl Drop for ClockSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CUDA device `ordinal`'s PCI bus id (`0000:1B:00.0`), without making a
/// context on it (a client that serves nothing holds no GPU memory for it).
fn pci_bus_id(ordinal: usize) -> reef_exec::Result<String> {
    let count = crate::device::driver_ready()?;
    if ordinal >= count {
        return Err(reef_exec::ExecError::Unavailable(format!(
            "no CUDA device {ordinal} ({count} present)"
        )));
    }
    let dev = result::device::get(ordinal as i32).call("cuDeviceGet")?;
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: `buf` is a writable buffer of the length passed; `dev` is a
    // device handle the driver just gave.
    unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, dev) }
        .result()
        .call("cuDeviceGetPCIBusId")?;
    // SAFETY: the driver wrote a NUL-terminated string into `buf`.
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(id.to_string_lossy().into_owned())
}
