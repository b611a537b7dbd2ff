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
//! driver until the next instance. The protocol here is the host's half; the
//! words live behind [`Words`] and instances start through [`Spawn`], so the
//! tests run it against a thread that does what the kernel does.

mod cuda;
#[cfg(test)]
mod tests;

pub(crate) use cuda::{relay_words, CudaRelay, CudaSpawn};

use reef_exec::ExecError;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lane flags one relay instance can raise (`REEF_RELAY_LANES` in
/// common.cu): the scheduler's 32 BE queues.
pub(crate) const RELAY_LANES: usize = 32;
/// How long an instance runs.
pub(crate) const LIFE: Duration = Duration::from_millis(5);
/// Bytes of mapped memory per instance slot: the command word, the quit
/// word and the state words each on their own 64-byte line.
pub(crate) const SLOT_BYTES: usize = 192;
/// Offsets in a slot.
const CMD: usize = 0;
const QUIT: usize = 64;
const STATE: usize = 128;
/// Phases an instance writes to its first state word.
const RUNNING: u32 = 1;
const LEAVING: u32 = 2;
const GONE: u32 = 3;

/// The kernel's parameters (`RelayParams` in common.cu).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RelayParams {
    pub cmd: u64,
    pub quit: u64,
    pub state: u64,
    pub life_ns: u64,
    pub once: u64,
    pub flags: [u64; RELAY_LANES],
}

/// The command word: the sequence number in bits 0-15 and 48-63, the mask
/// in bits 16-47.
fn command(seq: u16, mask: u32) -> u64 {
    u64::from(seq) | u64::from(mask) << 16 | u64::from(seq) << 48
}

/// The relay's words in memory both sides see: `2 * SLOT_BYTES` bytes.
pub(crate) trait Words: Send {
    /// The u32 at byte `offset` (a multiple of 4).
    fn u32_at(&self, offset: usize) -> &AtomicU32;
    /// The u64 at byte `offset` (a multiple of 8).
    fn u64_at(&self, offset: usize) -> &AtomicU64;
    /// The address the relay kernel reads the first byte at.
    fn device_base(&self) -> u64;
}

/// Starts relay instances.
pub(crate) trait Spawn: Send {
    /// Starts an instance in `slot` (0 or 1) with `params`; instances of
    /// one slot run one after another.
    fn spawn(&mut self, slot: usize, params: &RelayParams) -> Result<(), ExecError>;
    /// Waits until every instance started has ended.
    fn finish(&mut self) -> Result<(), ExecError>;
}

/// How long instances live and are used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// An instance's life.
    pub life: Duration,
    /// The age at which [`Relay::keep`] starts the next instance.
    pub renew: Duration,
    /// No post goes to an instance started longer ago than this: it might
    /// leave before reading it (the raise would then fall back after a
    /// wait).
    pub usable: Duration,
    /// Longest wait for an instance to serve a post or to leave (an error
    /// after it).
    pub settle_limit: Duration,
    /// Instances leave once they have served a raise (`REEF_RAISE=relay-once`):
    /// none stays resident beside the RT work that raised it, and the next
    /// [`Relay::keep`] starts another.
    pub once: bool,
}

impl Timing {
    /// The GPU's: a [`LIFE`] of 5 ms, renewed at half, used until 4 ms; a
    /// healthy instance serves within microseconds, so 200 ms is a fault.
    pub const GPU: Timing = Timing {
        life: LIFE,
        renew: Duration::from_micros(2500),
        usable: Duration::from_millis(4),
        settle_limit: Duration::from_millis(200),
        once: false,
    };
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
    /// Raises posted as their instance was leaving (served anyway, or
    /// then made with the driver).
    pub late: u64,
}

/// A short busy wait, then giving the core away: instances answer within
/// microseconds on a GPU, a thread standing in for one may need the core.
fn pause(t0: Instant) {
    if t0.elapsed() < Duration::from_micros(50) {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// One started instance.
struct Instance {
    started: Instant,
    /// The lane flags it can raise, by mask bit.
    flags: Vec<u64>,
    /// The last sequence number posted (0: none).
    seq: u16,
    /// Whether a post is not yet known served (or the instance gone).
    unsettled: bool,
    told_to_quit: bool,
}

/// The host's half of the relay: two instance slots and the BE lanes'
/// flags.
pub(crate) struct Relay<W: Words, S: Spawn> {
    words: W,
    spawner: S,
    timing: Timing,
    slots: [Option<Instance>; 2],
    /// The slot started last.
    newest: usize,
    /// The live BE lanes' flags.
    lanes: Vec<u64>,
    counts: RelayCounts,
}

impl<W: Words, S: Spawn> Relay<W, S> {
    /// A relay over `words` that starts instances with `spawner`. Nothing
    /// is started yet (each start writes its slot's words first).
    pub fn new(words: W, spawner: S, timing: Timing) -> Self {
        Relay {
            words,
            spawner,
            timing,
            slots: [None, None],
            newest: 1,
            lanes: Vec::new(),
            counts: RelayCounts::default(),
        }
    }

    fn word(&self, slot: usize, offset: usize) -> &AtomicU32 {
        self.words.u32_at(slot * SLOT_BYTES + offset)
    }

    fn cmd(&self, slot: usize) -> &AtomicU64 {
        self.words.u64_at(slot * SLOT_BYTES + CMD)
    }

    fn phase(&self, slot: usize) -> u32 {
        self.word(slot, STATE).load(Ordering::SeqCst)
    }

    fn served(&self, slot: usize) -> u16 {
        self.word(slot, STATE + 4).load(Ordering::SeqCst) as u16
    }

    /// Counts so far.
    pub fn counts(&self) -> RelayCounts {
        self.counts
    }

    /// A BE lane's flag, which instances started from now on can raise.
    pub fn register(&mut self, flag: u64) {
        if !self.lanes.contains(&flag) {
            self.lanes.push(flag);
        }
    }

    /// Whether any of `flags` is a registered lane's (0: none).
    pub fn serves_any(&self, flags: &[u64]) -> bool {
        flags.iter().any(|f| *f != 0 && self.lanes.contains(f))
    }

    /// Forgets a lane's flag. Call [`Relay::settle`] first: no post may
    /// still be about to write it.
    pub fn unregister(&mut self, flag: u64) {
        self.lanes.retain(|&f| f != flag);
    }

    /// Called with each BE launch: starts an instance when none was started
    /// in the last [`Timing::renew`] or the newest is gone, and tells an
    /// older one to quit once the newest runs.
    pub fn keep(&mut self) -> Result<(), ExecError> {
        let newest = self.newest;
        let other = 1 - newest;
        let renew = match &self.slots[newest] {
            Some(i) => i.started.elapsed() >= self.timing.renew || self.phase(newest) == GONE,
            None => true,
        };
        // A gone instance never writes again, served or not.
        if renew && (self.slots[other].is_none() || self.phase(other) == GONE) {
            return self.start(other);
        }
        if self.slots[newest].is_some() && self.phase(newest) == RUNNING {
            self.quit(other);
        }
        Ok(())
    }

    /// Tells the instance of `slot`, if any, to quit (once).
    fn quit(&mut self, slot: usize) {
        if let Some(inst) = self.slots[slot].as_mut() {
            if !inst.told_to_quit {
                inst.told_to_quit = true;
                self.word(slot, QUIT).store(1, Ordering::SeqCst);
            }
        }
    }

    fn start(&mut self, slot: usize) -> Result<(), ExecError> {
        let lanes = &self.lanes[..self.lanes.len().min(RELAY_LANES)];
        let mut flags = [0u64; RELAY_LANES];
        flags[..lanes.len()].copy_from_slice(lanes);
        let instance = Instance {
            started: Instant::now(),
            flags: lanes.to_vec(),
            seq: 0,
            unsettled: false,
            told_to_quit: false,
        };
        self.cmd(slot).store(command(0, 0), Ordering::SeqCst);
        self.word(slot, QUIT).store(0, Ordering::SeqCst);
        self.word(slot, STATE).store(0, Ordering::SeqCst);
        self.word(slot, STATE + 4).store(0, Ordering::SeqCst);
        let base = self.words.device_base() + (slot * SLOT_BYTES) as u64;
        let params = RelayParams {
            cmd: base + CMD as u64,
            quit: base + QUIT as u64,
            state: base + STATE as u64,
            life_ns: self.timing.life.as_nanos() as u64,
            once: u64::from(self.timing.once),
            flags,
        };
        // Marked as started first: should the start fail, the slot still
        // counts as busy until its phase reads gone (it never will), and no
        // post goes to it (it never runs).
        self.slots[slot] = Some(instance);
        self.newest = slot;
        self.spawner.spawn(slot, &params)?;
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
            if let Some(i) = inst.flags.iter().position(|g| g == f) {
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
        // word replaces it, so it raises that post's lanes too.
        let owed = if inst.unsettled && self.served(slot) != inst.seq {
            (self.cmd(slot).load(Ordering::SeqCst) >> 16) as u32
        } else {
            0
        };
        // SeqCst store, then SeqCst load: the post is visible before the
        // phase is read (on x86 the store is a locked exchange).
        self.cmd(slot)
            .store(command(seq, mask | owed), Ordering::SeqCst);
        let inst = self.slots[slot].as_mut().expect("picked slot");
        inst.seq = seq;
        inst.unsettled = true;
        if self.timing.once {
            // The picked instance leaves after this raise; so should the
            // other, rather than stay resident beside the RT work.
            self.quit(1 - slot);
        }
        if self.phase(slot) == RUNNING {
            self.counts.relayed += 1;
            return raised;
        }
        // It was leaving: its last read may have come before the post.
        self.counts.late += 1;
        let t0 = Instant::now();
        while self.phase(slot) == LEAVING && t0.elapsed() < self.timing.settle_limit {
            pause(t0);
        }
        if self.served(slot) == seq {
            self.counts.relayed += 1;
            return raised;
        }
        if self.phase(slot) == GONE {
            self.slots[slot].as_mut().expect("picked slot").unsettled = false;
        }
        self.counts.driver += 1;
        vec![false; flags.len()]
    }

    /// The newest running instance started less than [`Timing::usable`]
    /// ago.
    fn pick(&self) -> Option<usize> {
        [self.newest, 1 - self.newest].into_iter().find(|&s| {
            self.slots[s]
                .as_ref()
                .is_some_and(|i| i.started.elapsed() < self.timing.usable)
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
            while self.served(slot) != seq && self.phase(slot) != GONE {
                if t0.elapsed() > self.timing.settle_limit {
                    return Err(ExecError::Cuda(format!(
                        "the preemption relay served no raise for {:?} \
                         (phase {}, served {}, posted {seq})",
                        self.timing.settle_limit,
                        self.phase(slot),
                        self.served(slot)
                    )));
                }
                pause(t0);
            }
            self.slots[slot].as_mut().expect("slot").unsettled = false;
        }
        Ok(())
    }
}

impl<W: Words, S: Spawn> Drop for Relay<W, S> {
    /// Tells every instance to quit and waits for them (the words must
    /// outlive their readers).
    fn drop(&mut self) {
        for slot in 0..2 {
            self.word(slot, QUIT).store(1, Ordering::SeqCst);
        }
        tracing::info!(counts = ?self.counts, "preemption relay");
        if let Err(e) = self.spawner.finish() {
            tracing::warn!("{e}");
        }
    }
}
