//! Scheduler configuration.

use crate::api::Mode;
use std::time::Duration;

/// Most BE queues (and so BE lanes) a scheduler has.
pub const MAX_BE_QUEUES: usize = 32;

/// [`SchedConfig::idle_spin`] on a GPU when not set: long enough to span
/// the gaps of periodic RT load at 50 requests per second or more.
pub const DEFAULT_GPU_IDLE_SPIN: Duration = Duration::from_millis(20);

/// Default [`SchedConfig::pinned_input_bytes`]: 256 MiB, as Triton's pinned
/// memory pool. Only a GPU makes the pool; the CPU backend ignores it.
pub const DEFAULT_PINNED_INPUT_BYTES: usize = 256 << 20;

/// Default [`SchedConfig::contexts_at_load`]: one context for an RT task and
/// one for a BE task of each model.
pub const DEFAULT_CONTEXTS_AT_LOAD: usize = 2;

/// Most task contexts a model keeps for reuse per batch size (more are
/// freed when their task ends), and so the most
/// [`SchedConfig::contexts_at_load`] may ask for.
pub const MAX_POOLED_CONTEXTS: usize = 8;

/// How the scheduling thread waits between two looks at its queue and the
/// device while it polls ([`SchedConfig::poll_pause`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PollPause {
    /// `sched_yield` between looks: the core goes to any thread waiting for
    /// it (the CPU backend's workers share the scheduler's cores).
    Yield,
    /// A spin-loop hint between looks: the thread keeps its core, so the
    /// operating system has no turn to hand it to another thread at a
    /// preemption.
    Spin,
}

impl PollPause {
    /// Waits once between two looks.
    pub fn pause(self) {
        match self {
            PollPause::Yield => std::thread::yield_now(),
            PollPause::Spin => std::hint::spin_loop(),
        }
    }
}

impl std::str::FromStr for PollPause {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "yield" => Ok(PollPause::Yield),
            "spin" => Ok(PollPause::Spin),
            _ => Err(format!("unknown poll pause '{s}' (expected yield or spin)")),
        }
    }
}

impl std::fmt::Display for PollPause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PollPause::Yield => "yield",
            PollPause::Spin => "spin",
        })
    }
}

/// How a scheduler behaves; every limit is configurable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchedConfig {
    /// Scheduling policy.
    pub mode: Mode,
    /// BE kernels in flight per BE lane (REEF keeps 2, so that little is
    /// buffered on the device when a preemption comes). With
    /// [`SchedConfig::early_rt`] RT work no longer waits for those kernels
    /// to leave, and 4 raised BE throughput by 5-8% on the H100 in most
    /// runs, but in one run of DISB C it cost RT 2-5 points against alone
    /// (docs/RESULTS.md, session 17), so 2 stays the default.
    pub be_depth: usize,
    /// Number of BE queues (each with its own low-priority lane); BE models
    /// are spread over them.
    pub be_queues: usize,
    /// Most RT requests waiting before new ones are refused.
    pub rt_capacity: usize,
    /// Most BE requests waiting per BE queue before new ones are refused.
    pub be_capacity: usize,
    /// Largest batch a request may carry.
    pub max_batch: usize,
    /// `reef` mode's padding: how many BE lanes keep running beside RT work,
    /// their kernels on low-priority streams, so that the GPU's block
    /// scheduler gives them only the room the RT kernels leave (0: BE lanes
    /// stay paused while RT work runs, and padding is planned per RT kernel,
    /// see [`crate::padding`]).
    pub beside_lanes: usize,
    /// With `beside_lanes`: a BE kernel whose estimated tile takes longer than
    /// this waits for the RT work to end instead of running beside it (an RT
    /// block may have to wait for one BE tile). None: no limit.
    pub beside_max_tile: Option<Duration>,
    /// `reset` and `reef` modes without beside lanes (ignored in the other
    /// setups): launch the RT kernels right after raising the BE flags
    /// instead of after the BE lanes drained. Running BE blocks still stop at
    /// their next tile, and the RT stream's priority lets RT blocks be
    /// dispatched before the BE kernels queued on the device (which exit at
    /// entry once dispatched), so RT work no longer waits for the drain and
    /// its host round trip; the drain is watched while RT work runs and
    /// settled before BE work resumes. The recorded preemption latency then
    /// runs until the queued BE kernels, which wait behind the RT kernels,
    /// have left. On by default (false: REEF's order, drain first).
    pub early_rt: bool,
    /// How long the scheduling thread keeps polling its queue after it runs
    /// out of work, before it sleeps on it. A sleeping thread's wake-up
    /// lies on the next request's path; polling keeps it off at the cost of
    /// one busy core while requests keep coming. `None`: the device
    /// decides, [`DEFAULT_GPU_IDLE_SPIN`] on a GPU and zero on the CPU
    /// backend (whose workers need the cores).
    pub idle_spin: Option<Duration>,
    /// How the scheduling thread waits between looks while it polls (with
    /// work in flight, through a drain, and for [`SchedConfig::idle_spin`]).
    /// `None`: the device decides, [`PollPause::Spin`] on a GPU (the thread
    /// busy-polls there either way; a yield only gives the kernel a turn to
    /// run another thread in the middle of a preemption) and
    /// [`PollPause::Yield`] on the CPU backend (its workers need the cores).
    pub poll_pause: Option<PollPause>,
    /// Make the BE lanes for quick drains
    /// ([`reef_exec::LaneOptions::quick_drain`]: on a GPU a told word per
    /// lane and flags raised through the preemption relay; together they
    /// cut the drain-first preemption p99 on the H100 from 16.6-26.7 us to
    /// 10.7-20.1 and cost BE about 4% of its throughput, docs/PERF.md,
    /// Session 28). `None`: where RT work waits for the drain, that is
    /// `reset` and `reef` with the drain first
    /// ([`SchedConfig::launches_rt_early`] false; beside lanes too); RT
    /// work launched first does not wait for it.
    pub quick_drain: Option<bool>,
    /// Write BE tasks' inputs and read their outputs on a thread of their
    /// own (`wait`, `reset` and `reef` modes), not on the scheduling
    /// thread, which then notices RT arrivals while they run. `None`: the
    /// device decides, on a GPU (where a BE task's I/O took up to 236 us of
    /// the scheduling thread, docs/PERF.md, Session 28) but not on the CPU
    /// backend (whose workers need the cores).
    pub be_io_thread: Option<bool>,
    /// Most bytes of pinned host memory the device's input pool may hold
    /// ([`reef_exec::host_pool`]; front ends decode inputs of 64 KiB and up
    /// into it, and their uploads skip the driver's staging copy); 0: no
    /// pool, inputs stay in ordinary memory. Default
    /// [`DEFAULT_PINNED_INPUT_BYTES`].
    pub pinned_input_bytes: usize,
    /// Time each preemption's drain on the device too
    /// ([`Lane::start_drain_timer`](reef_exec::Lane::start_drain_timer):
    /// from the flags' write on the device to the last flagged lane's end),
    /// reported as [`SchedStats::drain_device_us`](crate::SchedStats::drain_device_us)
    /// beside the host's view. Costs the raise a few driver calls; off by
    /// default.
    pub time_drains: bool,
    /// Task contexts (a model's device memory for one task in flight) made
    /// for batch 1 when a model is loaded, so that the first requests do not
    /// allocate them on the scheduling thread (on the H100 five RT tasks that
    /// made theirs took 4.3-6.1 ms to start, against 0.5-1.0 ms with pooled
    /// ones, docs/PERF.md, Session 31); more are made when more tasks of
    /// the model run at once. At most [`MAX_POOLED_CONTEXTS`]. Default
    /// [`DEFAULT_CONTEXTS_AT_LOAD`].
    pub contexts_at_load: usize,
    /// With RT work launched first ([`SchedConfig::launches_rt_early`]):
    /// start the arriving RT tasks (their inputs written, their contexts
    /// taken) before raising the BE flags, so that BE work keeps the device
    /// through the RT inputs' upload (60-160 us from pageable memory on the
    /// H100 hosts, docs/PERF.md, Sessions 19 and 29) instead of leaving it
    /// idle; the RT task's first kernel then waits for the running BE
    /// blocks' next tile. Off by default (not yet measured on a GPU).
    pub late_raise: bool,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            mode: Mode::Reset,
            be_depth: 2,
            be_queues: 4,
            rt_capacity: 1024,
            be_capacity: 256,
            max_batch: 64,
            beside_lanes: 0,
            beside_max_tile: None,
            early_rt: true,
            idle_spin: None,
            poll_pause: None,
            quick_drain: None,
            be_io_thread: None,
            pinned_input_bytes: DEFAULT_PINNED_INPUT_BYTES,
            time_drains: false,
            contexts_at_load: DEFAULT_CONTEXTS_AT_LOAD,
            late_raise: false,
        }
    }
}

impl SchedConfig {
    /// Whether RT work is launched before the BE drain:
    /// [`SchedConfig::early_rt`] where it applies.
    pub fn launches_rt_early(&self) -> bool {
        self.early_rt && self.mode.raises_flags() && self.beside_lanes == 0
    }

    /// Whether the BE flags go up after the RT tasks' inputs are written:
    /// [`SchedConfig::late_raise`] where RT work is launched first.
    pub fn raises_after_inputs(&self) -> bool {
        self.late_raise && self.launches_rt_early()
    }

    /// [`SchedConfig::idle_spin`] on a device of `kind`.
    pub fn idle_spin_on(&self, kind: reef_exec::DeviceKind) -> Duration {
        self.idle_spin.unwrap_or(match kind {
            reef_exec::DeviceKind::Cuda => DEFAULT_GPU_IDLE_SPIN,
            reef_exec::DeviceKind::Cpu => Duration::ZERO,
        })
    }

    /// [`SchedConfig::quick_drain`], or where RT work waits for the drain.
    pub fn quick_drain_on(&self) -> bool {
        self.quick_drain
            .unwrap_or(self.mode.raises_flags() && !self.launches_rt_early())
    }

    /// [`SchedConfig::be_io_thread`] on a device of `kind`.
    pub fn be_io_thread_on(&self, kind: reef_exec::DeviceKind) -> bool {
        self.be_io_thread
            .unwrap_or(kind == reef_exec::DeviceKind::Cuda)
    }

    /// [`SchedConfig::poll_pause`] on a device of `kind`.
    pub fn poll_pause_on(&self, kind: reef_exec::DeviceKind) -> PollPause {
        self.poll_pause.unwrap_or(match kind {
            reef_exec::DeviceKind::Cuda => PollPause::Spin,
            reef_exec::DeviceKind::Cpu => PollPause::Yield,
        })
    }

    /// Checks the limits; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.be_depth == 0 {
            return Err("be_depth must be at least 1".into());
        }
        if self.be_queues == 0 || self.be_queues > MAX_BE_QUEUES {
            return Err(format!(
                "be_queues must be in 1..={MAX_BE_QUEUES}, got {}",
                self.be_queues
            ));
        }
        if self.rt_capacity == 0 || self.be_capacity == 0 {
            return Err("queue capacities must be at least 1".into());
        }
        if self.beside_lanes > MAX_BE_QUEUES {
            return Err(format!(
                "beside_lanes must be in 0..={MAX_BE_QUEUES}, got {}",
                self.beside_lanes
            ));
        }
        if self.max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        if self.contexts_at_load > MAX_POOLED_CONTEXTS {
            return Err(format!(
                "contexts_at_load must be in 0..={MAX_POOLED_CONTEXTS}, got {}",
                self.contexts_at_load
            ));
        }
        Ok(())
    }
}

/// A scheduling mode with its padding policy and preemption order, as
/// benchmarks name the setups they compare: `reef`, `reef:beside1` (one BE
/// lane beside RT work), `reef:beside5:tile20` (five, with BE tiles of at
/// most 20 us), `reset:drain` (REEF's order: the BE drain before the RT
/// launch; `reset` and `reef` launch RT work first, [`SchedConfig::early_rt`]),
/// `reset:drain:depth2` (two BE kernels in flight per lane,
/// [`SchedConfig::be_depth`]; without `depthN` the benchmark's setting
/// holds), `reset:drain:yield` (the scheduling thread yields its core
/// between polls, [`SchedConfig::poll_pause`]; `spin` keeps it; without
/// either the device decides), `reset:drain:plain` (BE lanes not made for
/// quick drains, [`SchedConfig::quick_drain`]; `quick` makes them so;
/// without either, the order decides), `reset:inline` (BE inputs and
/// outputs copied on the scheduling thread, [`SchedConfig::be_io_thread`];
/// `io` on a thread of their own; without either, the device decides),
/// `reset:late` (the BE flags raised after the RT inputs are written,
/// [`SchedConfig::late_raise`]; `prompt` at once, the default). The beside
/// options apply to `reef` mode only, `drain` and `early` to `reset` and
/// `reef` without beside lanes, `late` to those with RT launched first,
/// `depthN` to the modes that feed BE lanes kernel by kernel (`wait`,
/// `reset`, `reef`), `quick` and `plain` to `reset` and `reef`, `io` and
/// `inline` to `wait`, `reset` and `reef`, `yield` and `spin` to every
/// mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSpec {
    /// The mode.
    pub mode: Mode,
    /// [`SchedConfig::beside_lanes`].
    pub beside_lanes: usize,
    /// [`SchedConfig::beside_max_tile`].
    pub beside_max_tile: Option<Duration>,
    /// [`SchedConfig::early_rt`] (true unless `drain` is named).
    pub early_rt: bool,
    /// [`SchedConfig::be_depth`], when named (`depthN`).
    pub be_depth: Option<usize>,
    /// [`SchedConfig::poll_pause`], when named (`yield` or `spin`).
    pub poll_pause: Option<PollPause>,
    /// [`SchedConfig::quick_drain`], when named (`quick` or `plain`).
    pub quick_drain: Option<bool>,
    /// [`SchedConfig::be_io_thread`], when named (`io` or `inline`).
    pub be_io_thread: Option<bool>,
    /// [`SchedConfig::late_raise`], when named (`late` or `prompt`).
    pub late_raise: Option<bool>,
}

impl ModeSpec {
    /// `cfg` in this mode with this padding policy and preemption order.
    pub fn apply(&self, cfg: SchedConfig) -> SchedConfig {
        SchedConfig {
            mode: self.mode,
            beside_lanes: self.beside_lanes,
            beside_max_tile: self.beside_max_tile,
            early_rt: self.early_rt,
            be_depth: self.be_depth.unwrap_or(cfg.be_depth),
            poll_pause: self.poll_pause.or(cfg.poll_pause),
            quick_drain: self.quick_drain.or(cfg.quick_drain),
            be_io_thread: self.be_io_thread.or(cfg.be_io_thread),
            late_raise: self.late_raise.unwrap_or(cfg.late_raise),
            ..cfg
        }
    }

    /// Whether `drain` / `early` can apply.
    fn orders_preemption(&self) -> bool {
        self.mode.raises_flags() && self.beside_lanes == 0
    }
}

impl From<Mode> for ModeSpec {
    fn from(mode: Mode) -> Self {
        ModeSpec {
            mode,
            beside_lanes: 0,
            beside_max_tile: None,
            early_rt: true,
            be_depth: None,
            poll_pause: None,
            quick_drain: None,
            be_io_thread: None,
            late_raise: None,
        }
    }
}

impl std::str::FromStr for ModeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let mut spec = ModeSpec::from(parts.next().unwrap_or_default().parse::<Mode>()?);
        let mut order: Option<&str> = None;
        for opt in parts {
            let lower = opt.to_ascii_lowercase();
            let number = |prefix: &str| -> Option<Result<u64, String>> {
                lower.strip_prefix(prefix).map(|n| {
                    n.parse::<u64>()
                        .map_err(|_| format!("'{opt}' in mode '{s}': '{n}' is not a whole number"))
                })
            };
            if lower == "early" || lower == "drain" {
                if !spec.mode.raises_flags() {
                    return Err(format!(
                        "mode '{s}': '{opt}' needs the reset or reef mode (it orders the RT launch and the BE drain)"
                    ));
                }
                if order.is_some_and(|o| o != lower) {
                    return Err(format!(
                        "mode '{s}': 'early' and 'drain' contradict each other"
                    ));
                }
                spec.early_rt = lower == "early";
                order = Some(if spec.early_rt { "early" } else { "drain" });
                continue;
            }
            if set_switch(
                &mut spec.quick_drain,
                (&lower, ("quick", "plain")),
                (
                    spec.mode.raises_flags(),
                    "the reset or reef mode (the modes that raise preemption flags)",
                ),
                (s, opt),
            )? {
                continue;
            }
            if set_switch(
                &mut spec.be_io_thread,
                (&lower, ("io", "inline")),
                (
                    spec.mode.preempts(),
                    "the wait, reset or reef mode (the others copy on the scheduling thread)",
                ),
                (s, opt),
            )? {
                continue;
            }
            if set_switch(
                &mut spec.late_raise,
                (&lower, ("late", "prompt")),
                (
                    spec.mode.raises_flags(),
                    "the reset or reef mode (the modes that raise preemption flags)",
                ),
                (s, opt),
            )? {
                continue;
            }
            if let Ok(pause) = lower.parse::<PollPause>() {
                if spec.poll_pause.is_some_and(|p| p != pause) {
                    return Err(format!(
                        "mode '{s}': 'yield' and 'spin' contradict each other"
                    ));
                }
                spec.poll_pause = Some(pause);
                continue;
            }
            if let Some(n) = number("depth") {
                let n = n?;
                if !spec.mode.preempts() {
                    return Err(format!(
                        "mode '{s}': '{opt}' needs the wait, reset or reef mode (the others launch whole BE tasks)"
                    ));
                }
                if n == 0 {
                    return Err(format!("mode '{s}': the BE depth must be at least 1"));
                }
                spec.be_depth = Some(n as usize);
                continue;
            }
            if spec.mode != Mode::Reef {
                return Err(format!(
                    "mode '{s}': '{opt}' needs the reef mode (beside options are reef's padding)"
                ));
            }
            if let Some(n) = number("beside") {
                let n = n?;
                if !(1..=MAX_BE_QUEUES as u64).contains(&n) {
                    return Err(format!(
                        "mode '{s}': beside lanes must be in 1..={MAX_BE_QUEUES}, got {n}"
                    ));
                }
                spec.beside_lanes = n as usize;
            } else if let Some(n) = number("tile") {
                let n = n?;
                if n == 0 {
                    return Err(format!("mode '{s}': the tile limit must be at least 1 us"));
                }
                spec.beside_max_tile = Some(Duration::from_micros(n));
            } else {
                return Err(format!(
                    "mode '{s}': unknown option '{opt}' (expected besideN, tileN, early, drain, depthN, quick, plain, io, inline, late, prompt, yield or spin, e.g. reef:beside1:tile20)"
                ));
            }
        }
        if spec.beside_max_tile.is_some() && spec.beside_lanes == 0 {
            return Err(format!("mode '{s}': a tile limit needs besideN"));
        }
        if spec.beside_lanes > 0 {
            if let Some(o) = order {
                return Err(format!(
                    "mode '{s}': '{o}' and besideN do not combine (beside lanes resume right after the drain)"
                ));
            }
        }
        if spec.late_raise == Some(true) && !(spec.early_rt && spec.orders_preemption()) {
            return Err(format!(
                "mode '{s}': 'late' needs RT work launched first (reset or reef, without drain or besideN)"
            ));
        }
        Ok(spec)
    }
}

/// A mode spec's yes/no option: when `lower` is `on` or `off`, sets `field`
/// (true for `on`) and returns true, or names what is wrong: the option
/// outside the modes it `needs` (`allowed` false), or both words in one
/// spec `s`. False for any other word.
fn set_switch(
    field: &mut Option<bool>,
    (lower, (on, off)): (&str, (&str, &str)),
    (allowed, needs): (bool, &str),
    (s, opt): (&str, &str),
) -> Result<bool, String> {
    if lower != on && lower != off {
        return Ok(false);
    }
    if !allowed {
        return Err(format!("mode '{s}': '{opt}' needs {needs}"));
    }
    let value = lower == on;
    if field.is_some_and(|v| v != value) {
        return Err(format!(
            "mode '{s}': '{on}' and '{off}' contradict each other"
        ));
    }
    *field = Some(value);
    Ok(true)
}

impl std::fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.mode)?;
        if self.beside_lanes > 0 {
            write!(f, ":beside{}", self.beside_lanes)?;
        }
        if let Some(t) = self.beside_max_tile {
            write!(f, ":tile{}", t.as_micros())?;
        }
        if self.orders_preemption() && !self.early_rt {
            write!(f, ":drain")?;
        }
        if let Some(d) = self.be_depth {
            write!(f, ":depth{d}")?;
        }
        if let Some(q) = self.quick_drain {
            write!(f, ":{}", if q { "quick" } else { "plain" })?;
        }
        if let Some(io) = self.be_io_thread {
            write!(f, ":{}", if io { "io" } else { "inline" })?;
        }
        if let Some(late) = self.late_raise {
            write!(f, ":{}", if late { "late" } else { "prompt" })?;
        }
        if let Some(p) = self.poll_pause {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_spin_is_the_devices_unless_set() {
        use reef_exec::DeviceKind::{Cpu, Cuda};
        let d = SchedConfig::default();
        assert_eq!(d.idle_spin_on(Cuda), DEFAULT_GPU_IDLE_SPIN);
        assert_eq!(d.idle_spin_on(Cpu), Duration::ZERO);
        let set = SchedConfig {
            idle_spin: Some(Duration::from_millis(3)),
            ..d
        };
        assert_eq!(set.idle_spin_on(Cpu), Duration::from_millis(3));
        assert_eq!(set.idle_spin_on(Cuda), Duration::from_millis(3));
    }

    #[test]
    fn poll_pause_is_the_devices_unless_set_or_named() {
        use reef_exec::DeviceKind::{Cpu, Cuda};
        let d = SchedConfig::default();
        assert_eq!(d.poll_pause_on(Cuda), PollPause::Spin);
        assert_eq!(d.poll_pause_on(Cpu), PollPause::Yield);
        let named = "reset:drain:yield"
            .parse::<ModeSpec>()
            .unwrap()
            .apply(d.clone());
        assert_eq!(named.poll_pause_on(Cuda), PollPause::Yield);
        let set = SchedConfig {
            poll_pause: Some(PollPause::Spin),
            ..d
        };
        assert_eq!(set.poll_pause_on(Cpu), PollPause::Spin);
        let kept = "reset".parse::<ModeSpec>().unwrap().apply(set);
        assert_eq!(
            kept.poll_pause,
            Some(PollPause::Spin),
            "unnamed keeps the setting"
        );
    }

    #[test]
    fn quick_drains_where_rt_waits_for_the_drain_unless_named() {
        let on = |s: &str| {
            s.parse::<ModeSpec>()
                .unwrap()
                .apply(SchedConfig::default())
                .quick_drain_on()
        };
        for (spec, want) in [
            ("reset", false),
            ("reef", false),
            ("reset:drain", true),
            ("reef:drain", true),
            ("reef:beside2", true),
            ("wait", false),
            ("stream", false),
            ("seq", false),
            ("reset:drain:plain", false),
            ("reset:quick", true),
        ] {
            assert_eq!(on(spec), want, "{spec}");
        }
    }

    #[test]
    fn mode_specs_round_trip() {
        for s in [
            "reef",
            "reset",
            "reef:beside1",
            "reef:beside5:tile20",
            "reset:drain",
            "reef:drain:depth2",
            "reset:depth8",
            "wait:depth1",
            "reset:drain:depth1:yield",
            "reset:drain:plain",
            "reef:quick:spin",
            "reset:drain:quick:inline",
            "wait:io:yield",
            "reef:spin",
            "stream:yield",
            "reset:late",
            "reef:depth4:late",
            "reset:drain:prompt",
        ] {
            let spec: ModeSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        let spec: ModeSpec = "REEF:Tile30:beside2".parse().unwrap();
        assert_eq!(spec.to_string(), "reef:beside2:tile30");
        let cfg = spec.apply(SchedConfig::default());
        assert_eq!(cfg.mode, Mode::Reef);
        assert_eq!(cfg.beside_lanes, 2);
        assert_eq!(cfg.beside_max_tile, Some(Duration::from_micros(30)));
        assert!(!cfg.launches_rt_early(), "beside lanes drain first");
        // `early` is the default, so it is not written out.
        let spec: ModeSpec = "Reset:EARLY".parse().unwrap();
        assert_eq!(spec.to_string(), "reset");
        let cfg = spec.apply(SchedConfig {
            be_depth: 3,
            ..SchedConfig::default()
        });
        assert!(cfg.launches_rt_early());
        assert_eq!(cfg.be_depth, 3, "the setting holds without depthN");
        let cfg = "reset:drain:depth2"
            .parse::<ModeSpec>()
            .unwrap()
            .apply(SchedConfig::default());
        assert!(!cfg.launches_rt_early());
        assert_eq!(cfg.be_depth, 2);
        // `late` raises the BE flags after the RT inputs, RT still first.
        let late = |s: &str| {
            s.parse::<ModeSpec>()
                .unwrap()
                .apply(SchedConfig::default())
                .raises_after_inputs()
        };
        assert!(late("reset:late") && late("reef:late"));
        assert!(!late("reset") && !late("reef:prompt"));
        assert!(!SchedConfig::default().raises_after_inputs());
    }

    #[test]
    fn early_rt_applies_to_reset_and_reef_without_beside_lanes() {
        for (mode, beside, early) in [
            (Mode::Reset, 0, true),
            (Mode::Reef, 0, true),
            (Mode::Reef, 1, false),
            (Mode::Wait, 0, false),
            (Mode::Stream, 0, false),
            (Mode::Seq, 0, false),
        ] {
            let cfg = SchedConfig {
                mode,
                beside_lanes: beside,
                ..SchedConfig::default()
            };
            assert!(
                cfg.validate().is_ok(),
                "{mode}: the default is valid everywhere"
            );
            assert_eq!(cfg.launches_rt_early(), early, "{mode} beside {beside}");
            let drain = SchedConfig {
                early_rt: false,
                ..cfg
            };
            assert!(!drain.launches_rt_early());
        }
    }

    #[test]
    fn bad_mode_specs_are_named() {
        for (s, want) in [
            ("reset:beside1", "needs the reef mode"),
            ("reef:beside0", "1..=32"),
            ("reef:beside33", "1..=32"),
            ("reef:besidex", "not a whole number"),
            ("reef:tile20", "needs besideN"),
            ("reef:beside1:tile0", "at least 1 us"),
            ("reef:fast", "unknown option 'fast'"),
            ("wait:early", "needs the reset or reef mode"),
            ("stream:drain", "needs the reset or reef mode"),
            ("reef:beside1:early", "do not combine"),
            ("reef:drain:beside1", "do not combine"),
            ("reset:early:drain", "contradict"),
            ("stream:depth2", "wait, reset or reef"),
            ("reset:depth0", "at least 1"),
            ("reset:depthx", "not a whole number"),
            ("reset:yield:spin", "contradict"),
            ("reset:quick:plain", "contradict"),
            ("wait:quick", "needs the reset or reef mode"),
            ("reset:io:inline", "contradict"),
            ("reset:late:prompt", "contradict"),
            ("stream:late", "needs the reset or reef mode"),
            ("reset:drain:late", "needs RT work launched first"),
            ("reef:late:beside1", "needs RT work launched first"),
            ("stream:io", "wait, reset or reef"),
            ("turbo", "unknown mode"),
        ] {
            let e = s.parse::<ModeSpec>().unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
