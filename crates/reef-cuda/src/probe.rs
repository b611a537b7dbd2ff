//! The drain probe's host half: where a preemption's time on the device
//! goes. Kernels compiled with `REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE`
//! (common.cu) count, in a device buffer this module allocates, how long
//! after the relay's raise each BE block noticed its flag and left (and
//! left without noticing it: its tile ran to its end, and of those, the
//! blocks that started after the raise, and where their last GEMM item
//! was at the raise), how long the K step a block stopped in took, how
//! long a GEMM item's split-K part and epilogue take with the flag down,
//! and per raise when its last block left. Only
//! relayed raises (`REEF_RAISE=relay` or `relay-once`) stamp the raise, so
//! the probe reads nothing with the driver's raise. It is a
//! diagnostic: its atomics perturb what they time a little, and a build
//! without the define has none of it.

use crate::error::CudaCall;
use crate::memory::DeviceBuffer;
use cudarc::driver::{result, sys, CudaContext, CudaModule, CudaStream, DriverError};
use reef_exec::{DeviceHistogram, ExecError};
use std::sync::Arc;

/// The module global that holds the buffer's address.
const SYMBOL: &str = "reef_probe_buf";
/// Histograms, buckets and bucket width (`REEF_PROBE_*` in common.cu).
const SERIES: [&str; 12] = [
    "drain: raise to its last flagged block out",
    "notice: raise to a block seeing its flag",
    "exit: raise to a flagged block out",
    "step: the K step a block stopped in",
    "ran out: raise to a flagged block out that never saw its flag",
    "late start: as ran out, for blocks that started after the raise",
    "ran out in the K loop: as ran out, the raise during its GEMM item's K loop",
    "ran out in split-K: as ran out, the raise while it published or summed partials",
    "ran out in the epilogue: as ran out, the raise in its epilogue or on its way out",
    "ran out, no GEMM: as ran out, for blocks of the other families",
    "split-K part: a GEMM item's partial, arrival and sum, flag down",
    "epilogue and out: a GEMM item's epilogue and the block's way out, flag down",
];
const BUCKETS: usize = 256;
const BUCKET_NS: u64 = 250;
/// The buffer's leading u32 words: the raise's time and the latest exit
/// (two u64).
const HEAD_WORDS: usize = 4;

/// The probe's buffer, its address written into every module that has the
/// probe.
pub(crate) struct DrainProbe {
    buf: DeviceBuffer,
}

impl DrainProbe {
    /// Attaches a zeroed buffer to `modules` when they were compiled with
    /// the probe (`None` otherwise).
    pub fn attach(
        ctx: &Arc<CudaContext>,
        modules: &[Arc<CudaModule>],
        stream: &Arc<CudaStream>,
    ) -> Result<Option<DrainProbe>, ExecError> {
        let mut buf = None;
        for module in modules {
            let mut global = match module.get_global(SYMBOL, stream) {
                Ok(g) => g,
                Err(DriverError(sys::CUresult::CUDA_ERROR_NOT_FOUND)) => continue,
                Err(e) => return Err(ExecError::Cuda(format!("cuModuleGetGlobal({SYMBOL}): {e}"))),
            };
            let b: &DeviceBuffer = match &buf {
                Some(b) => b,
                None => {
                    let b = DeviceBuffer::alloc(ctx, 4 * (HEAD_WORDS + SERIES.len() * BUCKETS))?;
                    // SAFETY: the buffer holds b.bytes() bytes, owned here.
                    unsafe { result::memset_d8_sync(b.ptr(), 0, b.bytes()) }
                        .call("cuMemsetD8(drain probe)")?;
                    buf.insert(b)
                }
            };
            stream
                .memcpy_htod(&b.ptr().to_le_bytes(), &mut global)
                .call("cuMemcpyHtoD(reef_probe_buf)")?;
        }
        stream
            .synchronize()
            .call("cuStreamSynchronize(drain probe)")?;
        if buf.is_some() {
            tracing::warn!("drain probe compiled in (REEF_DRAIN_PROBE): a diagnostic build");
        }
        Ok(buf.map(|buf| DrainProbe { buf }))
    }

    /// The histograms so far.
    pub fn read(&self, ctx: &Arc<CudaContext>) -> Result<Vec<DeviceHistogram>, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut words = vec![0u32; HEAD_WORDS + SERIES.len() * BUCKETS];
        // SAFETY: the buffer holds at least `words.len()` u32s; a synchronous
        // copy, racing only with the kernels' atomic adds (counts read a
        // moment early).
        unsafe { result::memcpy_dtoh_sync(&mut words, self.buf.ptr()) }
            .call("cuMemcpyDtoH(drain probe)")?;
        Ok(split(&words[HEAD_WORDS..]))
    }
}

/// The buffer's counts as one histogram per series.
fn split(counts: &[u32]) -> Vec<DeviceHistogram> {
    SERIES
        .iter()
        .zip(counts.chunks(BUCKETS))
        .map(|(&name, c)| DeviceHistogram {
            name,
            bucket_ns: BUCKET_NS,
            counts: c.iter().map(|&n| u64::from(n)).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_matches_the_kernels() {
        let src = include_str!("../kernels/common.cu");
        for (name, v) in [
            ("REEF_PROBE_SERIES", SERIES.len() as u64),
            ("REEF_PROBE_BUCKETS", BUCKETS as u64),
            ("REEF_PROBE_BUCKET_NS", BUCKET_NS),
        ] {
            assert!(src.contains(&format!("#define {name} {v}\n")), "{name}");
        }
        assert!(src.contains(&format!("__device__ u64 {SYMBOL};")));
        // The counts start after two u64 words.
        assert!(src.contains("(u32*)(w + 2) + series * REEF_PROBE_BUCKETS + b"));
    }

    #[test]
    fn split_gives_each_series_its_buckets() {
        let mut counts = vec![0u32; SERIES.len() * BUCKETS];
        counts[3] = 7;
        counts[BUCKETS + 1] = 2;
        counts[3 * BUCKETS + BUCKETS - 1] = 1;
        let h = split(&counts);
        assert_eq!(h.len(), SERIES.len());
        assert_eq!(h[0].counts[3], 7);
        assert_eq!(h[1].quantile_ns(1.0), Some(500));
        assert_eq!(h[3].quantile_ns(0.5), Some(BUCKETS as u64 * BUCKET_NS));
        assert_eq!(h[2].total(), 0);
    }
}
