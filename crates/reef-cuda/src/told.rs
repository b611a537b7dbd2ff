//! [`ToldWord`]: a lane's told word, one u32 of pinned host memory mapped
//! into the device's address space. The last block of each direct BE launch
//! to leave the GPU writes the launch's number there (`reef_tell` in
//! common.cu, a posted PCIe write), so the host learns that a lane's BE
//! kernels have left the SMs with a load, without a driver call
//! ([`reef_exec::Lane::drained`]). The device only ever writes it: kernels
//! never read host memory (that costs them a PCIe round trip each, Session
//! 22 in docs/PERF.md).

use crate::device::DeviceShared;
use crate::mapped::MappedHost;
use reef_exec::ExecError;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One host-mapped u32, zero when made. The lane that owns it synchronizes
/// its stream before dropping it, so no kernel still writes it when it is
/// freed.
pub(crate) struct ToldWord {
    word: MappedHost,
}

impl ToldWord {
    /// Allocates the word for a lane of `shared`.
    pub fn new(shared: &Arc<DeviceShared>) -> Result<ToldWord, ExecError> {
        Ok(ToldWord {
            word: MappedHost::new(&shared.ctx, 64, "told word")?,
        })
    }

    /// The address kernels write it at.
    pub fn device_ptr(&self) -> u64 {
        self.word.device_ptr()
    }

    /// The last launch number a kernel wrote (acquire: a word seen is a
    /// write the device made before it).
    pub fn load(&self) -> u32 {
        self.word.u32_at(0).load(Ordering::Acquire)
    }
}
