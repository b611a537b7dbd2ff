//! [`Relay`]: the preemption relay (`REEF_RAISE=relay`). A `reef_relay`
//! kernel of one thread polls a command word in host-mapped memory and
//! raises the BE lanes' device flags it names, so that
//! [`Device::raise_preempt`](reef_exec::Device::raise_preempt) is a host
//! store, not a driver call (Session 22 in docs/PERF.md: a host store reached
//! a polling warp in about 1.8 us, while the raise's driver call took 1.7-8.6
//! us at p50 and up to 84 us at p99 inside reef, Session 23).
//!
//! Its rules:
//! - **Bounded life.** An instance runs [`LIFE`] and leaves, so nothing that
//!   waits for the whole device (a context synchronize at model load, a
//!   `cuMemFree`) waits longer. BE launches keep one alive
//!   ([`Relay::keep`]): past half its life the next instance starts on the
//!   other of two streams, and the older one is told to quit once the newer
//!   runs. With no BE work the relay is gone within [`LIFE`].
//! - **A raise lands or falls back.** The host posts (sequence number and
//!   lane mask in one 8-byte store), then reads the instance's phase. If it
//!   was still running, the instance reads the post before it leaves (it
//!   says it is leaving before its last read; both sides fence between
//!   their store and their load). If not, the host waits for it to be gone
//!   and raises with the driver whatever it had not served.
//! - **Never after the clear.** Before any flag is cleared
//!   ([`Relay::settle`]), every post must be served (the instance writes the
//!   served number after its flag writes are visible) or its instance gone.
//!   So a relayed raise can never land on a flag that was lowered after it.
//! - **No raise without a running instance.** If none runs (none launched
//!   yet, or one queued behind BE blocks that fill the GPU), or its life is
//!   nearly over, the raise is the driver call (`cuMemsetD32Async` on the
//!   control stream), as without the relay.
//!
//! The flags an instance may raise are the BE lanes' flags that existed at
//! its launch (at most [`RELAY_LANES`]); a lane made later is raised with the
//! driver until the next instance.

use crate::error::CudaCall;
use cudarc::driver::{result, sys, CudaContext, CudaFunction, CudaStream};
use reef_exec::ExecError;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lane flags one relay instance can raise (`REEF_RELAY_LANES` in
/// common.cu): the scheduler's 32 BE queues.
pub(crate) const RELAY_LANES: usize = 32;
/// How long an instance runs.
pub(crate) const LIFE: Duration = Duration::from_millis(5);
/// No post goes to an instance launched longer ago than this (it might
/// leave before reading it; it would then be raised with the driver after
/// a wait).
const USABLE: Duration = Duration::from_millis(4);
/// Longest wait for an instance to serve a post or to leave: far beyond a
/// healthy one's microseconds, short of hanging the scheduler.
const SETTLE_LIMIT: Duration = Duration::from_millis(200);
/// Bytes of mapped memory per instance slot: the command word, the quit
/// word and the state words each on their own 64-byte line.
const SLOT_BYTES: usize = 192;
const CMD: usize = 0;
const QUIT: usize = 64;
const STATE: usize = 128;
/// Phases the kernel writes to its first state word.
const RUNNING: u32 = 1;
const GONE: u32 = 3;

/// The kernel's parameters (`RelayParams` in common.cu).
#[repr(C)]
#[derive(Clone, Copy)]
struct RelayParams {
    cmd: u64,
    quit: u64,
    state: u64,
    life_ns: u64,
    flags: [u64; RELAY_LANES],
}

/// The command word: the sequence number in bits 0-15 and 48-63, the mask
/// in bits 16-47.
fn command(seq: u16, mask: u32) -> u64 {
    u64::from(seq) | u64::from(mask) << 16 | u64::from(seq) << 48
}

/// How raises went, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Relay instances launched.
    pub launched: u64,
    /// Raises posted to a running instance and served by it.
    pub relayed: u64,
    /// Raises made with the driver call: no instance was running (or one
    /// left before it read the post), or a lane had no slot in it.
    pub driver: u64,
}

/// One launched instance.
struct Instance {
    launched: Instant,
    flags: [u64; RELAY_LANES],
    /// Slots of `flags` in use.
    used: usize,
    /// The last sequence number posted (0: none).
    seq: u16,
    /// Whether a post is not yet known served (or the instance gone).
    unsettled: bool,
    told_to_quit: bool,
}

/// The device's relay: two instance slots, each with its stream and its
/// mapped words, and the BE lanes' flags.
pub(crate) struct Relay {
    ctx: Arc<CudaContext>,
    func: CudaFunction,
    streams: [Arc<CudaStream>; 2],
    host: *mut u8,
    dev: u64,
    slots: [Option<Instance>; 2],
    /// The slot launched last.
    newest: usize,
    /// The live BE lanes' flags.
    lanes: Vec<u64>,
    counts: RelayCounts,
}

// SAFETY: `host` points to a pinned allocation this value owns and frees once
// (Drop); it is only accessed through atomics. The device wraps the relay in
// a mutex, so one thread uses it at a time.
unsafe impl Send for Relay {}

impl Relay {
    /// Makes the relay of a device: its streams at `priority` (the
    /// greatest), and its mapped words. Nothing is launched yet.
    pub fn new(
        ctx: &Arc<CudaContext>,
        func: CudaFunction,
        priority: i32,
    ) -> Result<Relay, ExecError> {
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut streams = Vec::with_capacity(2);
        for _ in 0..2 {
            streams.push(
                ctx.new_stream_with_priority(priority)
                    .call("cuStreamCreateWithPriority(relay)")?,
            );
        }
        let mut host: *mut c_void = std::ptr::null_mut();
        // SAFETY: `host` is a valid out-pointer; the allocation is freed once
        // in Drop.
        unsafe {
            sys::cuMemHostAlloc(
                &mut host,
                2 * SLOT_BYTES,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        }
        .result()
        .call("cuMemHostAlloc(relay words)")?;
        let mut relay = Relay {
            ctx: ctx.clone(),
            func,
            streams: [streams[0].clone(), streams[1].clone()],
            host: host.cast::<u8>(),
            dev: 0,
            slots: [None, None],
            newest: 1,
            lanes: Vec::new(),
            counts: RelayCounts::default(),
        };
        // SAFETY: `host` holds 2 * SLOT_BYTES bytes owned by `relay`.
        unsafe { std::ptr::write_bytes(relay.host, 0, 2 * SLOT_BYTES) };
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live DEVICEMAP allocation of this process;
        // `dev` is a valid out-pointer.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host, 0) }
            .result()
            .call("cuMemHostGetDevicePointer(relay words)")?;
        relay.dev = dev;
        Ok(relay)
    }

    fn word32(&self, slot: usize, offset: usize) -> &AtomicU32 {
        debug_assert!(slot < 2 && offset + 8 <= SLOT_BYTES);
        // SAFETY: in bounds of the live, 64-byte aligned allocation (page
        // aligned, offsets multiples of 4); the device writes these words
        // whole, the host only through atomics.
        unsafe { AtomicU32::from_ptr(self.host.add(slot * SLOT_BYTES + offset).cast::<u32>()) }
    }

    fn cmd(&self, slot: usize) -> &AtomicU64 {
        // SAFETY: as `word32`; the command word is 8-byte aligned.
        unsafe { AtomicU64::from_ptr(self.host.add(slot * SLOT_BYTES + CMD).cast::<u64>()) }
    }

    fn phase(&self, slot: usize) -> u32 {
        self.word32(slot, STATE).load(Ordering::SeqCst)
    }

    fn served(&self, slot: usize) -> u16 {
        self.word32(slot, STATE + 4).load(Ordering::SeqCst) as u16
    }

    /// Counts so far.
    pub fn counts(&self) -> RelayCounts {
        self.counts
    }

    /// A BE lane's flag, which instances launched from now on can raise.
    pub fn register(&mut self, flag: u64) {
        if !self.lanes.contains(&flag) {
            self.lanes.push(flag);
        }
    }

    /// Forgets a lane's flag. Call [`Relay::settle`] first: no post may
    /// still be about to write it.
    pub fn unregister(&mut self, flag: u64) {
        self.lanes.retain(|&f| f != flag);
    }

    /// Called with each BE launch: launches an instance when none was
    /// launched in the last half [`LIFE`], and tells an older one to quit
    /// once the newest runs.
    pub fn keep(&mut self) -> Result<(), ExecError> {
        let newest = self.newest;
        let renew = match &self.slots[newest] {
            Some(i) => i.launched.elapsed() >= LIFE / 2,
            None => true,
        };
        if renew {
            let other = 1 - newest;
            // A gone instance never writes again, served or not.
            let free = self.slots[other].is_none() || self.phase(other) == GONE;
            if free {
                self.launch(other)?;
                return Ok(());
            }
        }
        let other = 1 - newest;
        if self.slots[newest].is_some() && self.phase(newest) == RUNNING {
            if let Some(old) = self.slots[other].as_mut() {
                if !old.told_to_quit {
                    old.told_to_quit = true;
                    self.word32(other, QUIT).store(1, Ordering::SeqCst);
                }
            }
        }
        Ok(())
    }

    fn launch(&mut self, slot: usize) -> Result<(), ExecError> {
        let mut flags = [0u64; RELAY_LANES];
        let used = self.lanes.len().min(RELAY_LANES);
        flags[..used].copy_from_slice(&self.lanes[..used]);
        self.cmd(slot).store(command(0, 0), Ordering::SeqCst);
        self.word32(slot, QUIT).store(0, Ordering::SeqCst);
        self.word32(slot, STATE).store(0, Ordering::SeqCst);
        self.word32(slot, STATE + 4).store(0, Ordering::SeqCst);
        let base = self.dev + (slot * SLOT_BYTES) as u64;
        let mut params = RelayParams {
            cmd: base + CMD as u64,
            quit: base + QUIT as u64,
            state: base + STATE as u64,
            life_ns: LIFE.as_nanos() as u64,
            flags,
        };
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut args = [(&mut params as *mut RelayParams).cast::<c_void>()];
        // SAFETY: reef_relay takes one by-value RelayParams, whose C layout
        // this struct mirrors (a layout test checks the size); the driver
        // copies it before returning. Its addresses are this slot's mapped
        // words (live until Drop, which waits for the kernels) and live lane
        // flags (a lane settles the relay before its flag is freed).
        unsafe {
            result::launch_kernel(
                self.func.cu_function(),
                (1, 1, 1),
                (32, 1, 1),
                0,
                self.streams[slot].cu_stream(),
                &mut args,
            )
        }
        .map_err(|e| ExecError::Cuda(format!("cuLaunchKernel(reef_relay): {e}")))?;
        self.slots[slot] = Some(Instance {
            launched: Instant::now(),
            flags,
            used,
            seq: 0,
            unsettled: false,
            told_to_quit: false,
        });
        self.newest = slot;
        self.counts.launched += 1;
        Ok(())
    }

    /// Posts a raise of `flags` to a running instance. Returns, per flag,
    /// whether it is raised (or will be, before any [`Relay::settle`]
    /// returns); the caller raises the others with the driver.
    pub fn raise(&mut self, flags: &[u64]) -> Vec<bool> {
        let mut raised = vec![false; flags.len()];
        let Some(slot) = self.pick() else {
            self.counts.driver += 1;
            return raised;
        };
        let inst = self.slots[slot].as_ref().expect("picked slot");
        let mut mask = 0u32;
        for (f, r) in flags.iter().zip(raised.iter_mut()) {
            if let Some(i) = inst.flags[..inst.used].iter().position(|g| g == f) {
                mask |= 1 << i;
                *r = true;
            }
        }
        if mask == 0 {
            self.counts.driver += 1;
            return raised;
        }
        let seq = (inst.seq % u16::MAX) + 1;
        // A post the instance has not served yet is still owed: the new
        // word (which replaces it) raises its lanes too.
        let owed = if inst.unsettled && self.served(slot) != inst.seq {
            self.cmd(slot).load(Ordering::SeqCst) >> 16
        } else {
            0
        };
        // SeqCst store then SeqCst load: the store is visible before the
        // phase is read (x86: a locked exchange).
        self.cmd(slot)
            .store(command(seq, mask | owed as u32), Ordering::SeqCst);
        let inst = self.slots[slot].as_mut().expect("picked slot");
        inst.seq = seq;
        inst.unsettled = true;
        if self.phase(slot) == RUNNING {
            self.counts.relayed += 1;
            return raised;
        }
        // It was leaving: its last read may have come before the post.
        let t0 = Instant::now();
        while self.phase(slot) != GONE && t0.elapsed() < SETTLE_LIMIT {
            std::hint::spin_loop();
        }
        if self.phase(slot) == GONE && self.served(slot) == seq {
            self.counts.relayed += 1;
            return raised;
        }
        if self.phase(slot) == GONE {
            self.slots[slot].as_mut().expect("picked slot").unsettled = false;
        }
        self.counts.driver += 1;
        vec![false; flags.len()]
    }

    /// The newest running instance launched less than [`USABLE`] ago.
    fn pick(&self) -> Option<usize> {
        [self.newest, 1 - self.newest].into_iter().find(|&s| {
            self.slots[s]
                .as_ref()
                .is_some_and(|i| i.launched.elapsed() < USABLE)
                && self.phase(s) == RUNNING
        })
    }

    /// Returns once no post is left that an instance could still serve:
    /// each was served (its flag writes visible to the device) or its
    /// instance is gone. Call before lowering a flag.
    pub fn settle(&mut self) -> Result<(), ExecError> {
        for slot in 0..2 {
            let Some(inst) = self.slots[slot].as_ref() else {
                continue;
            };
            if !inst.unsettled {
                continue;
            }
            let seq = inst.seq;
            let t0 = Instant::now();
            loop {
                if self.served(slot) == seq || self.phase(slot) == GONE {
                    break;
                }
                if t0.elapsed() > SETTLE_LIMIT {
                    return Err(ExecError::Cuda(format!(
                        "the preemption relay served no raise for {SETTLE_LIMIT:?} \
                         (phase {}, served {}, posted {seq})",
                        self.phase(slot),
                        self.served(slot)
                    )));
                }
                std::hint::spin_loop();
            }
            self.slots[slot].as_mut().expect("slot").unsettled = false;
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for slot in 0..2 {
            self.word32(slot, QUIT).store(1, Ordering::SeqCst);
        }
        tracing::info!(counts = ?self.counts, "preemption relay");
        let r = self
            .ctx
            .bind_to_thread()
            .call("cuCtxSetCurrent")
            .and_then(|()| {
                for s in &self.streams {
                    s.synchronize().call("cuStreamSynchronize(relay)")?;
                }
                // SAFETY: `host` came from cuMemHostAlloc and is freed once,
                // here, after both streams (every instance) finished.
                unsafe { sys::cuMemFreeHost(self.host.cast::<c_void>()) }
                    .result()
                    .call("cuMemFreeHost(relay words)")
            });
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_repeats_its_number_around_the_mask() {
        let c = command(0x1234, 0x8000_0001);
        assert_eq!(c & 0xffff, 0x1234);
        assert_eq!(c >> 48, 0x1234);
        assert_eq!((c >> 16) as u32, 0x8000_0001);
        assert_eq!(command(7, 0) >> 16 & 0xffff_ffff, 0);
    }

    #[test]
    fn params_match_the_kernels_layout() {
        // Four u64 then REEF_RELAY_LANES u64 flags, as in common.cu.
        assert_eq!(std::mem::size_of::<RelayParams>(), 8 * (4 + RELAY_LANES));
        let src = include_str!("../kernels/common.cu");
        assert!(src.contains(&format!("#define REEF_RELAY_LANES {RELAY_LANES}")));
    }
}
