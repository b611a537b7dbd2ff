//! [`Precision`]: how convolutions and matmuls multiply (TF32 tensor cores,
//! split TF32 on tensor cores, or exact f32 FFMA), and its selection from
//! the environment (`REEF_PRECISION`, with `REEF_TF32=0` as an alias of `f32`).

use std::fmt;
use std::str::FromStr;

/// The environment variable that selects the [`Precision`].
pub const PRECISION_VAR: &str = "REEF_PRECISION";
/// The older switch: `REEF_TF32=0` (or `false`/`off`/`no`) means [`Precision::F32`].
pub const TF32_VAR: &str = "REEF_TF32";

/// The arithmetic of implicit-GEMM convolutions and matmuls (every other
/// kernel computes in f32 regardless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// TF32 tensor cores (`mma.sync m16n8k8`, operands rounded to 10
    /// mantissa bits with `cvt.rna`): the fastest; a relative L2 error
    /// around 1e-4..1e-3 against f32 on whole models.
    #[default]
    Tf32,
    /// Split TF32 ("3xTF32") on tensor cores: `a = a_hi + a_lo` with
    /// `a_hi = tf32(a)`, `a_lo = tf32(a - a_hi)`, and
    /// `acc += a_hi*b_lo + a_lo*b_hi + a_hi*b_hi` (small terms first; per
    /// K step of 8 into a zeroed partial, then added to `acc` in IEEE f32).
    /// Close to f32 accuracy at three times the tensor-core work.
    Tf32x3,
    /// Exact f32 FFMA (no tensor cores): the slowest, bit-for-bit f32 products.
    F32,
}

impl Precision {
    /// Every precision, fastest first.
    pub const ALL: [Precision; 3] = [Precision::Tf32, Precision::Tf32x3, Precision::F32];

    /// The name accepted by `REEF_PRECISION` (and printed).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Tf32 => "tf32",
            Precision::Tf32x3 => "tf32x3",
            Precision::F32 => "f32",
        }
    }

    /// Whether GEMMs run on tensor cores.
    pub fn tensor_cores(self) -> bool {
        !matches!(self, Precision::F32)
    }

    /// The relative L2 error against an f32 reference that a whole model is
    /// expected to stay under in this precision (1e-3, 1e-4, 1e-5).
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::Tf32 => 1e-3,
            Precision::Tf32x3 => 1e-4,
            Precision::F32 => 1e-5,
        }
    }

    /// The precision selected by the environment: `REEF_PRECISION` when set,
    /// else `REEF_TF32` (off: `f32`), else the default (`tf32`).
    pub fn from_env() -> Result<Self, PrecisionError> {
        let var = |name: &str| std::env::var(name).ok();
        Self::from_vars(var(PRECISION_VAR).as_deref(), var(TF32_VAR).as_deref())
    }

    /// [`Precision::from_env`] over given values of `REEF_PRECISION` and
    /// `REEF_TF32` (`None`: unset). An empty value counts as unset.
    pub fn from_vars(precision: Option<&str>, tf32: Option<&str>) -> Result<Self, PrecisionError> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        if let Some(v) = set(precision) {
            let p: Precision = v.parse()?;
            if let Some(t) = set(tf32) {
                if parse_switch(t) == Some(false) && p != Precision::F32 {
                    tracing::warn!("{TF32_VAR}={t} ignored: {PRECISION_VAR}={v} takes precedence");
                }
            }
            return Ok(p);
        }
        match set(tf32) {
            None => Ok(Precision::default()),
            Some(t) => match parse_switch(t) {
                Some(true) => Ok(Precision::Tf32),
                Some(false) => Ok(Precision::F32),
                None => Err(PrecisionError {
                    var: TF32_VAR,
                    value: t.to_string(),
                    accepted: "1, true, on, yes (tf32) or 0, false, off, no (f32)",
                }),
            },
        }
    }
}

/// The environment variable that turns the experimental wgmma convolution
/// and matmul kernels on (`REEF_WGMMA=1`, sm_90 only). They are off by
/// default: on the H100 the convolutions are slower than the `mma.sync`
/// kernels on most layers (run 29, docs/PERF.md), and the matmuls are not
/// measured yet.
pub const WGMMA_VAR: &str = "REEF_WGMMA";

/// Whether `REEF_WGMMA` (given value, `None`: unset) turns wgmma kernels
/// on; unset or empty means no.
pub fn wgmma_from_var(v: Option<&str>) -> Result<bool, PrecisionError> {
    switch_from_var(WGMMA_VAR, v, false)
}

/// The environment variable that turns off lean RT launches (`REEF_RT_LEAN=0`):
/// by default an RT kernel counts its blocks done and publishes progress only
/// when something reads it (the task's last kernel, and RT kernels that
/// padding follows); with it off, every RT kernel does (the older behaviour,
/// kept for comparison).
pub const RT_LEAN_VAR: &str = "REEF_RT_LEAN";

/// The environment variable that turns off direct BE launches
/// (`REEF_BE_DIRECT=0`): by default a BE kernel whose tiles all fit on the
/// GPU at once runs one block per tile with no claim cursor; with it off,
/// every BE kernel runs persistent blocks that claim tiles (the older
/// behaviour, kept for comparison).
pub const BE_DIRECT_VAR: &str = "REEF_BE_DIRECT";

/// The environment variable that turns off direct BE launches of
/// multi-wave kernels (`REEF_BE_DIRECT_ALL=0`): by default a direct launch
/// runs one block per tile however many tiles (blocks dispatched after the
/// flag went up leave at their entry check); with it off, kernels of more
/// than one wave run persistent blocks that claim tiles from a cursor (the
/// older behaviour, kept for comparison).
pub const BE_DIRECT_ALL_VAR: &str = "REEF_BE_DIRECT_ALL";

/// The environment variable that turns on the BE kernels' told word
/// (`REEF_BE_TOLD=1`): the last block of a direct BE launch to leave
/// writes the launch's number to a host-mapped word of its lane, so a
/// drain ends when the host reads it. Off by default: the scheduler asks
/// the lane's stream (`cuStreamQuery`) and the kernels skip the count.
pub const BE_TOLD_VAR: &str = "REEF_BE_TOLD";

/// The environment variable that turns off TF32-rounded weights
/// (`REEF_TF32_WEIGHTS=0`): by default, in `tf32` precision, weights that
/// only TF32 GEMMs read are stored rounded to TF32 and those kernels skip
/// converting them (bit-identical results); with it off, every kernel
/// converts its operands (the older behaviour, kept for comparison).
pub const TF32_WEIGHTS_VAR: &str = "REEF_TF32_WEIGHTS";

/// The environment variable that turns off K-major matmul weights
/// (`REEF_K_MAJOR_WEIGHTS=0`): by default, in `tf32` precision with rounded
/// weights, a matmul weight read row-major along N is stored transposed and
/// read with unit K stride (`crate::weight_layout`); with it off, it is
/// stored as the plan has it (the older layout, kept for comparison).
pub const K_MAJOR_WEIGHTS_VAR: &str = "REEF_K_MAJOR_WEIGHTS";

/// The environment variable that turns off wave-aware K splits
/// (`REEF_SPLIT_WAVES=0`): by default a GEMM's K splits minimize whole waves
/// of blocks times the K steps per split ([`crate::geometry::split_k`]);
/// with it off, K is split until the tiles fill the resident blocks (the
/// older rule, kept for comparison).
pub const SPLIT_WAVES_VAR: &str = "REEF_SPLIT_WAVES";

/// The environment variable that turns on 128 x 64 convolution tiles
/// (`REEF_TALL_TILES=1`, experimental): a TF32 convolution with 128 or more
/// output channels (whole 128-channel tiles, or at least 512) then runs
/// 128 x 64 tiles of four 64 x 32 warp tiles instead of 64 x 64 tiles.
pub const TALL_TILES_VAR: &str = "REEF_TALL_TILES";

/// The environment variable that turns off the convolutions' K-index gather
/// table (`REEF_GATHER_TABLE=0`): by default a convolution that gathers its
/// input (im2col) reads each K index's offset and (r, s) displacement from a
/// table built at load; with it off, every thread steps (c, r, s) itself
/// (the older loader, kept for comparison).
pub const GATHER_TABLE_VAR: &str = "REEF_GATHER_TABLE";

/// The environment variable that sets how often BE GEMM tiles check the
/// preemption flag (`REEF_FLAG_CHUNK=N`, 1..=64, default 1): every N K steps,
/// between chunks of N steps. Larger N makes BE GEMMs faster and the
/// preemption drain slower (kernels/gemm.cu has the measurements).
pub const FLAG_CHUNK_VAR: &str = "REEF_FLAG_CHUNK";

/// `REEF_FLAG_CHUNK` (given value, `None`: unset): unset or empty gives 1;
/// anything but a whole number from 1 to 64 is an error naming the variable.
pub fn flag_chunk_from_var(v: Option<&str>) -> Result<u32, PrecisionError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(1),
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| PrecisionError {
                var: FLAG_CHUNK_VAR,
                value: t.to_string(),
                accepted: "a whole number of K steps from 1 to 64",
            }),
    }
}

/// The environment variable that picks the driver call raising the
/// preemption flags (`REEF_RAISE=memset|batch|write|relay`, default
/// `memset`).
pub const RAISE_VAR: &str = "REEF_RAISE";

/// How [`Device::raise_preempt`](reef_exec::Device::raise_preempt) writes
/// the flags on the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RaiseOp {
    /// One `cuMemsetD32Async` per flag (the default: its preemption p50 was
    /// 0-4 us under `Batch`'s in every row of two H100 calls, docs/PERF.md,
    /// Session 23).
    #[default]
    Memset,
    /// One `cuStreamBatchMemOp` for every flag.
    Batch,
    /// One `cuStreamWriteValue32` per flag.
    Write,
    /// A host store that a polling relay kernel turns into the flag writes
    /// (`relay` module); `Memset` whenever no relay instance is running.
    /// On the H100 it cut the raise's p50 from 2.0-4.8 to 0.9-2.7 us and
    /// the drain-first preemption p50 by up to 3 us, but cost BE 0.4-4% of
    /// its throughput (docs/PERF.md, Session 24), so it is not the default.
    Relay,
    /// As [`RaiseOp::Relay`], but an instance leaves once it has served a
    /// raise (`relay-once`): no relay block is resident while the RT work
    /// that raised it runs, and the next BE launch starts the next one. On
    /// the H100 it relayed every raise and cost BE 0.2-2.1% of its
    /// throughput, half the relay's cost (docs/PERF.md, Session 25). Lanes
    /// made for quick drains ([`reef_exec::LaneOptions::quick_drain`]) are
    /// raised this way whatever this setting.
    RelayOnce,
}

impl RaiseOp {
    /// Whether the raise runs a relay, and whether its instances leave
    /// after one raise (`None`: no relay).
    pub fn relay_once(self) -> Option<bool> {
        match self {
            RaiseOp::Relay => Some(false),
            RaiseOp::RelayOnce => Some(true),
            RaiseOp::Memset | RaiseOp::Batch | RaiseOp::Write => None,
        }
    }
}

/// `REEF_RAISE` (given value, `None`: unset): unset or empty gives
/// [`RaiseOp::Memset`]; anything but `memset`, `batch`, `write`, `relay` or
/// `relay-once` is an
/// error naming the variable.
pub fn raise_from_var(v: Option<&str>) -> Result<RaiseOp, PrecisionError> {
    match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("memset") => Ok(RaiseOp::Memset),
        Some("batch") => Ok(RaiseOp::Batch),
        Some("write") => Ok(RaiseOp::Write),
        Some("relay") => Ok(RaiseOp::Relay),
        Some("relay-once") => Ok(RaiseOp::RelayOnce),
        Some(_) => Err(PrecisionError {
            var: RAISE_VAR,
            value: v.unwrap_or_default().trim().to_string(),
            accepted: "memset, batch, write, relay or relay-once",
        }),
    }
}

/// A yes/no environment setting `var` (given value, `None`: unset); unset or
/// empty gives `default`, anything but a yes/no word is an error naming `var`.
pub fn switch_from_var(
    var: &'static str,
    v: Option<&str>,
    default: bool,
) -> Result<bool, PrecisionError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(t) => parse_switch(t).ok_or_else(|| PrecisionError {
            var,
            value: t.to_string(),
            accepted: "1, true, on, yes or 0, false, off, no",
        }),
    }
}

/// A yes/no value: `1/true/on/yes` or `0/false/off/no`, any case.
fn parse_switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = PrecisionError;

    /// Parses `tf32`, `tf32x3` or `f32` (any case; `3xtf32` is accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tf32" => Ok(Precision::Tf32),
            "tf32x3" | "3xtf32" => Ok(Precision::Tf32x3),
            "f32" | "fp32" => Ok(Precision::F32),
            _ => Err(PrecisionError {
                var: PRECISION_VAR,
                value: s.to_string(),
                accepted: "tf32, tf32x3, f32",
            }),
        }
    }
}

/// Tensor-core mode flag of older call sites: `true` is [`Precision::Tf32`],
/// `false` is [`Precision::F32`].
impl From<bool> for Precision {
    fn from(tf32: bool) -> Self {
        if tf32 {
            Precision::Tf32
        } else {
            Precision::F32
        }
    }
}

/// A device setting from the environment (precision or a switch) that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not a valid setting (accepted: {accepted})")]
pub struct PrecisionError {
    /// The environment variable that held the value.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// The accepted values, in words.
    pub accepted: &'static str,
}

#[cfg(test)]
mod tests {
    #[test]
    fn raise_op_parses_and_names_bad_values() {
        use super::{raise_from_var, RaiseOp};
        assert_eq!(raise_from_var(None).unwrap(), RaiseOp::Memset);
        assert_eq!(raise_from_var(Some(" ")).unwrap(), RaiseOp::Memset);
        assert_eq!(raise_from_var(Some("Write")).unwrap(), RaiseOp::Write);
        assert_eq!(raise_from_var(Some("batch")).unwrap(), RaiseOp::Batch);
        assert_eq!(raise_from_var(Some("relay ")).unwrap(), RaiseOp::Relay);
        assert_eq!(
            raise_from_var(Some("Relay-Once")).unwrap(),
            RaiseOp::RelayOnce
        );
        assert_eq!(RaiseOp::RelayOnce.relay_once(), Some(true));
        assert_eq!(RaiseOp::Relay.relay_once(), Some(false));
        assert_eq!(RaiseOp::Memset.relay_once(), None);
        let e = raise_from_var(Some("poke")).unwrap_err();
        assert_eq!((e.var, e.value.as_str()), ("REEF_RAISE", "poke"));
    }
    use super::*;

    #[test]
    fn flag_chunk_parses_and_names_the_variable_on_bad_values() {
        assert_eq!(flag_chunk_from_var(None).unwrap(), 1);
        assert_eq!(flag_chunk_from_var(Some(" ")).unwrap(), 1);
        assert_eq!(flag_chunk_from_var(Some("4")).unwrap(), 4);
        assert_eq!(flag_chunk_from_var(Some("64")).unwrap(), 64);
        for bad in ["0", "65", "-1", "four", "2.5"] {
            let e = flag_chunk_from_var(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("REEF_FLAG_CHUNK") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn wgmma_switch_is_off_unless_asked_for() {
        assert!(!wgmma_from_var(None).unwrap());
        assert!(!wgmma_from_var(Some(" ")).unwrap());
        assert!(wgmma_from_var(Some("1")).unwrap());
        assert!(wgmma_from_var(Some("On")).unwrap());
        assert!(!wgmma_from_var(Some("0")).unwrap());
        let e = wgmma_from_var(Some("maybe")).unwrap_err().to_string();
        assert!(e.contains("REEF_WGMMA") && e.contains("maybe"), "{e}");
    }

    #[test]
    fn switches_default_when_unset_and_name_their_variable() {
        assert!(switch_from_var(RT_LEAN_VAR, None, true).unwrap());
        assert!(switch_from_var(RT_LEAN_VAR, Some(""), true).unwrap());
        assert!(!switch_from_var(RT_LEAN_VAR, Some("off"), true).unwrap());
        assert!(switch_from_var(BE_DIRECT_VAR, Some("YES"), false).unwrap());
        let e = switch_from_var(BE_DIRECT_VAR, Some("2"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("REEF_BE_DIRECT") && e.contains('2'), "{e}");
    }

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(" TF32X3 ".parse::<Precision>().unwrap(), Precision::Tf32x3);
        assert_eq!(Precision::default(), Precision::Tf32);
        assert!(Precision::Tf32x3.tensor_cores() && !Precision::F32.tensor_cores());
    }

    #[test]
    fn environment_selection() {
        let f = Precision::from_vars;
        assert_eq!(f(None, None).unwrap(), Precision::Tf32);
        assert_eq!(f(Some(""), None).unwrap(), Precision::Tf32);
        assert_eq!(f(Some("tf32x3"), None).unwrap(), Precision::Tf32x3);
        assert_eq!(f(Some("f32"), None).unwrap(), Precision::F32);
        // REEF_TF32 stays an alias.
        assert_eq!(f(None, Some("0")).unwrap(), Precision::F32);
        assert_eq!(f(None, Some("off")).unwrap(), Precision::F32);
        assert_eq!(f(None, Some("1")).unwrap(), Precision::Tf32);
        // REEF_PRECISION wins.
        assert_eq!(f(Some("tf32x3"), Some("0")).unwrap(), Precision::Tf32x3);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_accepted_values() {
        let e = Precision::from_vars(Some("fp16"), None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("REEF_PRECISION") && msg.contains("fp16"),
            "{msg}"
        );
        assert!(msg.contains("tf32, tf32x3, f32"), "{msg}");
        let e = Precision::from_vars(None, Some("maybe")).unwrap_err();
        assert!(e.to_string().contains("REEF_TF32"), "{e}");
    }
}
