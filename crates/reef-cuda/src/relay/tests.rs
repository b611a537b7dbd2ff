//! The relay's host protocol against threads that do what `reef_relay`
//! does (common.cu), with their starts delayed at random and lives short
//! enough that posts meet instances as they leave.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where the emulated lane flags start in the emulated address space (the
/// words are at 0..2 * SLOT_BYTES).
const FLAG_BASE: u64 = 1 << 20;

/// The memory both sides see: the relay words (u32 and u64 views kept apart:
/// the protocol reads the command only as u64, the rest only as u32) and
/// the lane flags.
struct Shared {
    w32: Vec<AtomicU32>,
    w64: Vec<AtomicU64>,
    flags: Vec<AtomicU32>,
}

impl Shared {
    fn new(lanes: usize) -> Arc<Shared> {
        Arc::new(Shared {
            w32: (0..2 * SLOT_BYTES / 4).map(|_| AtomicU32::new(0)).collect(),
            w64: (0..2 * SLOT_BYTES / 8).map(|_| AtomicU64::new(0)).collect(),
            flags: (0..lanes).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    fn flag(&self, lane: usize) -> u32 {
        self.flags[lane].load(Ordering::SeqCst)
    }
}

struct TestWords(Arc<Shared>);

impl Words for TestWords {
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        &self.0.w32[offset / 4]
    }
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        &self.0.w64[offset / 8]
    }
    fn device_base(&self) -> u64 {
        0
    }
}

/// Starts each instance as a thread that first waits for the slot's previous
/// one (a stream runs its kernels in order) and for a random delay (a
/// kernel queued behind others).
struct TestSpawn {
    shared: Arc<Shared>,
    rng: StdRng,
    last: [Option<JoinHandle<()>>; 2],
}

impl Spawn for TestSpawn {
    fn spawn(&mut self, slot: usize, params: &RelayParams) -> Result<(), ExecError> {
        let shared = self.shared.clone();
        let params = *params;
        let before = self.last[slot].take();
        let delay = Duration::from_micros(self.rng.random_range(0..300));
        self.last[slot] = Some(std::thread::spawn(move || {
            if let Some(h) = before {
                h.join().expect("instance thread");
            }
            std::thread::sleep(delay);
            emulate(&shared, &params);
        }));
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ExecError> {
        for h in self.last.iter_mut().filter_map(Option::take) {
            h.join().expect("instance thread");
        }
        Ok(())
    }
}

/// `reef_relay`'s thread 0.
fn emulate(sh: &Shared, p: &RelayParams) {
    let phase = &sh.w32[p.state as usize / 4];
    phase.store(RUNNING, Ordering::SeqCst);
    let t0 = Instant::now();
    let mut last = 0;
    for i in 0u32.. {
        let before = last;
        last = serve(sh, p, last);
        if p.once != 0 && last != before {
            break;
        }
        if t0.elapsed() >= Duration::from_nanos(p.life_ns) {
            break;
        }
        if i % 64 == 0 && sh.w32[p.quit as usize / 4].load(Ordering::SeqCst) != 0 {
            break;
        }
        std::thread::yield_now();
    }
    phase.store(LEAVING, Ordering::SeqCst);
    serve(sh, p, last);
    phase.store(GONE, Ordering::SeqCst);
}

/// `reef_relay_serve`.
fn serve(sh: &Shared, p: &RelayParams, last: u32) -> u32 {
    let c = sh.w64[p.cmd as usize / 8].load(Ordering::SeqCst);
    assert_eq!(c & 0xffff, c >> 48, "a torn command");
    let seq = (c & 0xffff) as u32;
    if seq == last {
        return last;
    }
    let mask = (c >> 16) as u32;
    for (i, &addr) in p.flags.iter().enumerate() {
        if mask >> i & 1 == 1 {
            let lane = (addr - FLAG_BASE) as usize / 4;
            sh.flags[lane].store(1, Ordering::SeqCst);
        }
    }
    sh.w32[p.state as usize / 4 + 1].store(seq, Ordering::SeqCst);
    seq
}

fn relay(shared: &Arc<Shared>, seed: u64, timing: Timing) -> Relay<TestWords, TestSpawn> {
    Relay::new(
        TestWords(shared.clone()),
        TestSpawn {
            shared: shared.clone(),
            rng: StdRng::seed_from_u64(seed),
            last: [None, None],
        },
        timing,
    )
}

fn addr(lane: usize) -> u64 {
    FLAG_BASE + 4 * lane as u64
}

/// The scheduler's side, at random: keeps the relay alive, raises lanes
/// (raising with "the driver", a plain store, what the relay refused),
/// settles and clears one, pauses. A lane cleared must read down until it
/// is raised again (no relayed raise lands after the clear), and after a
/// settle every lane raised must read up (a raise reported done is done).
fn scheduler(seed: u64, timing: Timing, steps: usize) -> RelayCounts {
    const LANES: usize = 5;
    let shared = Shared::new(LANES);
    let mut relay = relay(&shared, seed, timing);
    // The last lane is made after the first instances: they cannot raise it.
    for lane in 0..LANES - 1 {
        relay.register(addr(lane));
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut up = [false; LANES];
    for step in 0..steps {
        if step == steps / 4 {
            relay.register(addr(LANES - 1));
        }
        match rng.random_range(0..8) {
            0..=2 => relay.keep().unwrap(),
            3 | 4 => {
                for (lane, &up) in up.iter().enumerate() {
                    if !up {
                        assert_eq!(
                            shared.flag(lane),
                            0,
                            "step {step}: lane {lane} raised after its clear"
                        );
                    }
                }
                let lanes: Vec<usize> = (0..LANES).filter(|_| rng.random_bool(0.5)).collect();
                let flags: Vec<u64> = lanes.iter().map(|&l| addr(l)).collect();
                let done = relay.raise(&flags);
                for (&lane, done) in lanes.iter().zip(done) {
                    if !done {
                        shared.flags[lane].store(1, Ordering::SeqCst);
                    }
                    up[lane] = true;
                }
            }
            5 | 6 => {
                relay.settle().unwrap();
                for (lane, &up) in up.iter().enumerate() {
                    if up {
                        assert_eq!(
                            shared.flag(lane),
                            1,
                            "step {step}: lane {lane}'s raise never landed"
                        );
                    }
                }
                let lane = rng.random_range(0..LANES);
                shared.flags[lane].store(0, Ordering::SeqCst);
                up[lane] = false;
            }
            _ => std::thread::sleep(Duration::from_micros(rng.random_range(0..150))),
        }
    }
    relay.settle().unwrap();
    for (lane, up) in up.iter_mut().enumerate() {
        shared.flags[lane].store(0, Ordering::SeqCst);
        *up = false;
    }
    let counts = relay.counts();
    drop(relay);
    for lane in 0..LANES {
        assert_eq!(
            shared.flag(lane),
            0,
            "lane {lane} raised after the last clear"
        );
    }
    counts
}

#[test]
fn relayed_raises_land_before_a_clear_and_never_after_it() {
    let short = Timing {
        life: Duration::from_millis(2),
        renew: Duration::from_millis(1),
        usable: Duration::from_micros(1500),
        settle_limit: Duration::from_secs(20),
        once: false,
    };
    // Posts right up to the end of an instance's life meet it leaving.
    let edge = Timing {
        usable: Duration::from_millis(2),
        ..short
    };
    // Instances that leave after one raise meet posts as they leave far
    // more often.
    let once = Timing { once: true, ..edge };
    let mut total = RelayCounts::default();
    for (seed, timing) in [
        (1, short),
        (2, edge),
        (3, edge),
        (4, edge),
        (5, once),
        (6, once),
    ] {
        let c = scheduler(seed, timing, 4000);
        println!("seed {seed}: {c:?}");
        assert!(c.launched > 1 && c.relayed > 0, "seed {seed}: {c:?}");
        total.relayed += c.relayed;
        total.driver += c.driver;
        total.late += c.late;
    }
    assert!(
        total.driver > 0,
        "no raise fell back to the driver: {total:?}"
    );
}

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
    // Five u64 then REEF_RELAY_LANES u64 flags, as in common.cu.
    assert_eq!(std::mem::size_of::<RelayParams>(), 8 * (5 + RELAY_LANES));
    let src = include_str!("../../kernels/common.cu");
    assert!(src.contains("    u64 once;"));
    assert!(src.contains(&format!("#define REEF_RELAY_LANES {RELAY_LANES}")));
}

#[test]
fn a_relay_that_never_runs_leaves_every_raise_to_the_driver() {
    struct Never;
    impl Spawn for Never {
        fn spawn(&mut self, _: usize, _: &RelayParams) -> Result<(), ExecError> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), ExecError> {
            Ok(())
        }
    }
    let shared = Shared::new(1);
    let mut relay = Relay::new(TestWords(shared.clone()), Never, Timing::GPU);
    relay.register(addr(0));
    relay.keep().unwrap();
    assert_eq!(relay.raise(&[addr(0)]), vec![false]);
    relay.settle().unwrap();
    let c = relay.counts();
    assert_eq!((c.launched, c.relayed, c.driver), (1, 0, 1));
}

#[test]
fn a_relay_run_once_leaves_after_a_raise_and_the_next_launch_starts_another() {
    let shared = Shared::new(2);
    // Lives far longer than the test: an instance leaves only after its
    // raise, however slowly the threads standing in for it are scheduled.
    let timing = Timing {
        life: Duration::from_secs(120),
        renew: Duration::from_secs(60),
        usable: Duration::from_secs(100),
        settle_limit: Duration::from_secs(20),
        once: true,
    };
    let mut relay = relay(&shared, 7, timing);
    relay.register(addr(0));
    relay.register(addr(1));
    relay.keep().unwrap();
    let running = |relay: &Relay<TestWords, TestSpawn>| {
        let t0 = Instant::now();
        while relay.pick().is_none() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no instance ran");
            std::thread::yield_now();
        }
    };
    running(&relay);
    assert_eq!(relay.raise(&[addr(1)]), vec![true]);
    relay.settle().unwrap();
    assert_eq!((shared.flag(0), shared.flag(1)), (0, 1));
    // It left: the next raise finds none until a BE launch starts one.
    let t0 = Instant::now();
    while relay.phase(relay.newest) != GONE {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the instance stayed"
        );
        std::thread::yield_now();
    }
    assert_eq!(relay.raise(&[addr(0)]), vec![false]);
    shared.flags[1].store(0, Ordering::SeqCst);
    relay.keep().unwrap();
    running(&relay);
    assert_eq!(relay.raise(&[addr(0)]), vec![true]);
    relay.settle().unwrap();
    assert_eq!((shared.flag(0), shared.flag(1)), (1, 0));
    let c = relay.counts();
    assert_eq!((c.launched, c.relayed, c.driver), (2, 2, 1), "{c:?}");
}
