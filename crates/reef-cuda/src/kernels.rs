//! The kernels: their CUDA C++ sources (`kernels/*.cu`, one program text,
//! compiled once per kernel set), the NVRTC options, the kernel sets, and
//! the list of kernel families with their entry points, block sizes and
//! dynamic shared memory.

use crate::params::{
    ATTENTION_SMEM, ATTENTION_THREADS, EW_THREADS, GEMM_L_THREADS, GEMM_THREADS, ROW_THREADS,
};
use reef_exec::Variant;

/// Pipeline stages of the wgmma matmul (`REEF_WGM_STAGES` in `gemm.cu`).
pub const WGM_STAGES: u32 = 6;

/// The sources, concatenated in this order into one program (no `#include`).
pub const SOURCES: [(&str, &str); 5] = [
    ("common.cu", include_str!("../kernels/common.cu")),
    ("gemm.cu", include_str!("../kernels/gemm.cu")),
    ("elementwise.cu", include_str!("../kernels/elementwise.cu")),
    ("rows.cu", include_str!("../kernels/rows.cu")),
    ("attention.cu", include_str!("../kernels/attention.cu")),
];

/// The whole program text.
pub fn program_source() -> String {
    let mut s = String::new();
    for (name, text) in SOURCES {
        s.push_str("// ---- ");
        s.push_str(name);
        s.push_str(" ----\n");
        s.push_str(text);
        s.push('\n');
    }
    s
}

/// NVRTC options for compute capability `major.minor`. `--fmad=false` keeps
/// every float operation as written (no contraction that could differ
/// between the RT and BE inlining sites); fast math stays off.
pub fn nvrtc_options(major: i32, minor: i32) -> Vec<String> {
    // sm_90a: the architecture-specific target that has wgmma.
    let suffix = if has_wgmma(major, minor) { "a" } else { "" };
    vec![
        format!("--gpu-architecture=sm_{major}{minor}{suffix}"),
        "--std=c++17".into(),
        "--fmad=false".into(),
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
        "--ftz=false".into(),
        // Optimize the kernels on every core (0: as many threads as the host
        // has); the module's first compile on a fresh machine dominates the
        // time to first inference.
        "--split-compile=0".into(),
    ]
}

/// The environment variable with extra preprocessor definitions for the
/// kernel module, for kernel experiments: `NAME=VALUE` or `NAME`, separated
/// by commas or spaces (e.g. `REEF_FLAG_EVERY=4`). They are part of the
/// cache key.
pub const NVRTC_DEFINES_VAR: &str = "REEF_NVRTC_DEFINES";

/// `-D` options from a `REEF_NVRTC_DEFINES` value; an error names the entry
/// that is not `NAME` or `NAME=VALUE` with an identifier name and a value
/// of letters, digits, `_`, `.` or `-`.
pub fn nvrtc_defines(v: &str) -> Result<Vec<String>, String> {
    let ident = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|d| !d.is_empty())
        .map(|d| {
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let value_ok = value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if ident(name) && value_ok {
                Ok(format!("-D{d}"))
            } else {
                Err(format!(
                    "{NVRTC_DEFINES_VAR}: {d:?} is not NAME or NAME=VALUE (an identifier, \
                     and a value of letters, digits, '_', '.' or '-')"
                ))
            }
        })
        .collect()
}

/// Whether compute capability `major.minor` has wgmma (sm_90 only: the
/// instructions are specific to the sm_90a target, not forward compatible).
pub fn has_wgmma(major: i32, minor: i32) -> bool {
    (major, minor) == (9, 0)
}

/// A kernel set: the families compiled together into one kernel module
/// (one NVRTC program over the whole source, with `-DREEF_SET_<NAME>`
/// selecting the set's entry points). A device compiles and loads only the
/// sets its options use ([`crate::CudaOptions::kernel_sets`]), so a first
/// start does not compile GEMM families it never launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelSet {
    /// Element-wise, data-movement and row families, depthwise convolution
    /// and `reef_hold`: every device.
    Base,
    /// The TF32 tensor-core GEMMs the load-time rules pick (64 x 64 and
    /// 128 x 128 convolutions, 64 x 64 matmuls, with their rounded-weight
    /// twins).
    Tf32,
    /// TF32 tiles only the tactic tuner or `REEF_TALL_TILES` picks (128 x
    /// 64 convolutions, 128 x 128 matmuls).
    Tf32Wide,
    /// The experimental wgmma convolutions and matmuls (sm_90 with
    /// `REEF_WGMMA=1`).
    Wgmma,
    /// Exact-f32 FFMA GEMMs (`REEF_PRECISION=f32`).
    F32,
    /// Split-TF32 GEMMs (`REEF_PRECISION=tf32x3`).
    SplitTf32,
}

impl KernelSet {
    /// Every set, in a fixed order.
    pub const ALL: [KernelSet; 6] = [
        KernelSet::Base,
        KernelSet::Tf32,
        KernelSet::Tf32Wide,
        KernelSet::Wgmma,
        KernelSet::F32,
        KernelSet::SplitTf32,
    ];

    /// The set's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Base => "base",
            KernelSet::Tf32 => "tf32",
            KernelSet::Tf32Wide => "tf32-wide",
            KernelSet::Wgmma => "wgmma",
            KernelSet::F32 => "f32",
            KernelSet::SplitTf32 => "tf32x3",
        }
    }

    /// The preprocessor symbol that selects the set in the source.
    pub fn symbol(self) -> &'static str {
        match self {
            KernelSet::Base => "REEF_SET_BASE",
            KernelSet::Tf32 => "REEF_SET_TF32",
            KernelSet::Tf32Wide => "REEF_SET_TF32_WIDE",
            KernelSet::Wgmma => "REEF_SET_WGMMA",
            KernelSet::F32 => "REEF_SET_F32",
            KernelSet::SplitTf32 => "REEF_SET_TF32X3",
        }
    }

    /// The NVRTC option that compiles this set.
    pub fn define(self) -> String {
        format!("-D{}=1", self.symbol())
    }

    /// The families of this set.
    pub fn families(self) -> impl Iterator<Item = Family> {
        Family::ALL.into_iter().filter(move |f| f.set() == self)
    }
}

impl std::fmt::Display for KernelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel family: one tile function, two entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Implicit-GEMM convolution on TF32 tensor cores, 128 x 128 tiles.
    ConvTcL,
    /// Implicit-GEMM convolution on TF32 tensor cores, 64 x 64 tiles.
    ConvTc,
    /// Implicit-GEMM convolution on TF32 wgmma (sm_90a), 128 channels x 64
    /// pixels per tile, one warpgroup.
    ConvWg,
    /// As [`Family::ConvWg`] with 64 channels x 64 pixels.
    ConvWgS,
    /// Implicit-GEMM convolution in exact f32 (FFMA).
    ConvFfma,
    /// Direct convolution for c/groups == 1 (depthwise).
    ConvDw,
    /// Batched matmul on TF32 tensor cores, 64 x 64 tiles.
    MatMulTc,
    /// Batched matmul in exact f32 (FFMA).
    MatMulFfma,
    /// Pooling.
    Pool,
    /// Per-channel affine.
    ChannelAffine,
    /// Broadcast binary.
    Binary,
    /// Broadcast comparison.
    Compare,
    /// Broadcast select.
    Where,
    /// Unary map.
    Unary,
    /// Logical not.
    Not,
    /// Type cast.
    Cast,
    /// Strided copy.
    Copy,
    /// Concatenation.
    Concat,
    /// Gather.
    Gather,
    /// Element-wise gather along an axis (GatherElements).
    GatherElements,
    /// Padding.
    Pad,
    /// Softmax.
    Softmax,
    /// Layer normalisation.
    LayerNorm,
    /// Reduction.
    Reduce,
    /// Implicit-GEMM convolution in split TF32 ("3xTF32"), 64 x 64 tiles.
    ConvTcX3,
    /// Batched matmul in split TF32 ("3xTF32"), 64 x 64 tiles.
    MatMulTcX3,
    /// [`Family::ConvTcL`] over weights stored rounded to TF32 (no
    /// conversion of the weight operand).
    ConvTcLW,
    /// [`Family::ConvTc`] over weights stored rounded to TF32.
    ConvTcW,
    /// [`Family::MatMulTc`] with B (a weight) stored rounded to TF32.
    MatMulTcW,
    /// Resize (nearest and linear).
    Resize,
    /// ArgMax / ArgMin.
    ArgExtreme,
    /// Implicit-GEMM convolution on TF32 tensor cores, 128 channels x 64
    /// pixels per tile, four warps of 64 x 32 (`CfgT`).
    ConvTcT,
    /// [`Family::ConvTcT`] over weights stored rounded to TF32.
    ConvTcTW,
    /// Batched matmul on TF32 tensor cores, 128 x 128 tiles, 256 threads
    /// (`CfgL`; only where the tactic tuner picks it).
    MatMulTcL,
    /// [`Family::MatMulTcL`] with B (a weight) stored rounded to TF32.
    MatMulTcLW,
    /// Batched matmul on TF32 wgmma (sm_90a), 128 x 128 tiles of two
    /// warpgroups, both operands from shared memory, stages in dynamic
    /// shared memory (`WmCfg`; `REEF_WGMMA=1`).
    MatMulWg,
    /// [`Family::MatMulWg`] with B (a weight) stored rounded to TF32.
    MatMulWgW,
    /// Implicit-GEMM convolution on the wgmma matmul's tiles (`WmCfg`): 128
    /// channels x 128 pixels, the gathered operand stored K-major.
    ConvWgm,
    /// [`Family::ConvWgm`] over weights stored rounded to TF32.
    ConvWgmW,
    /// Fused attention (scores, softmax and values in one kernel), f32.
    Attention,
}

impl Family {
    /// Every family, in a fixed order ([`Family::index`]).
    pub const ALL: [Family; 40] = [
        Family::ConvTcL,
        Family::ConvTc,
        Family::ConvWg,
        Family::ConvWgS,
        Family::ConvFfma,
        Family::ConvDw,
        Family::MatMulTc,
        Family::MatMulFfma,
        Family::Pool,
        Family::ChannelAffine,
        Family::Binary,
        Family::Compare,
        Family::Where,
        Family::Unary,
        Family::Not,
        Family::Cast,
        Family::Copy,
        Family::Concat,
        Family::Gather,
        Family::GatherElements,
        Family::Pad,
        Family::Softmax,
        Family::LayerNorm,
        Family::Reduce,
        Family::ConvTcX3,
        Family::MatMulTcX3,
        Family::ConvTcLW,
        Family::ConvTcW,
        Family::MatMulTcW,
        Family::Resize,
        Family::ArgExtreme,
        Family::ConvTcT,
        Family::ConvTcTW,
        Family::MatMulTcL,
        Family::MatMulTcLW,
        Family::MatMulWg,
        Family::MatMulWgW,
        Family::ConvWgm,
        Family::ConvWgmW,
        Family::Attention,
    ];

    /// Position in [`Family::ALL`].
    pub fn index(self) -> usize {
        Family::ALL.iter().position(|&f| f == self).unwrap_or(0)
    }

    /// The tile function's base name in the C source.
    pub fn base_name(self) -> &'static str {
        match self {
            Family::ConvTcL => "conv_tc_l",
            Family::ConvTc => "conv_tc",
            Family::ConvWg => "conv_wg",
            Family::ConvWgS => "conv_wg_s",
            Family::ConvFfma => "conv_ffma",
            Family::ConvDw => "conv_dw",
            Family::MatMulTc => "matmul_tc",
            Family::MatMulFfma => "matmul_ffma",
            Family::Pool => "pool",
            Family::ChannelAffine => "channel_affine",
            Family::Binary => "binary",
            Family::Compare => "compare",
            Family::Where => "where",
            Family::Unary => "unary",
            Family::Not => "lnot",
            Family::Cast => "cast",
            Family::Copy => "copy",
            Family::Concat => "concat",
            Family::Gather => "gather",
            Family::GatherElements => "gather_elements",
            Family::Pad => "pad",
            Family::Softmax => "softmax",
            Family::LayerNorm => "layernorm",
            Family::Reduce => "reduce",
            Family::ConvTcX3 => "conv_tc_x3",
            Family::MatMulTcX3 => "matmul_tc_x3",
            Family::ConvTcLW => "conv_tc_l_w",
            Family::ConvTcW => "conv_tc_w",
            Family::MatMulTcW => "matmul_tc_w",
            Family::Resize => "resize",
            Family::ArgExtreme => "arg_extreme",
            Family::ConvTcT => "conv_tc_t",
            Family::ConvTcTW => "conv_tc_t_w",
            Family::MatMulTcL => "matmul_tc_l",
            Family::MatMulTcLW => "matmul_tc_l_w",
            Family::MatMulWg => "matmul_wg",
            Family::MatMulWgW => "matmul_wg_w",
            Family::ConvWgm => "conv_wgm",
            Family::ConvWgmW => "conv_wgm_w",
            Family::Attention => "attention",
        }
    }

    /// The kernel set whose module holds this family.
    pub fn set(self) -> KernelSet {
        match self {
            Family::ConvTcL
            | Family::ConvTcLW
            | Family::ConvTc
            | Family::ConvTcW
            | Family::MatMulTc
            | Family::MatMulTcW => KernelSet::Tf32,
            Family::ConvTcT | Family::ConvTcTW | Family::MatMulTcL | Family::MatMulTcLW => {
                KernelSet::Tf32Wide
            }
            Family::ConvWg
            | Family::ConvWgS
            | Family::MatMulWg
            | Family::MatMulWgW
            | Family::ConvWgm
            | Family::ConvWgmW => KernelSet::Wgmma,
            Family::ConvFfma | Family::MatMulFfma => KernelSet::F32,
            Family::ConvTcX3 | Family::MatMulTcX3 => KernelSet::SplitTf32,
            _ => KernelSet::Base,
        }
    }

    /// The family that reads its weight operand stored rounded to TF32
    /// (the `_w` twin), where one exists.
    pub fn with_tf32_weights(self) -> Family {
        match self {
            Family::ConvTcL => Family::ConvTcLW,
            Family::ConvTc => Family::ConvTcW,
            Family::ConvTcT => Family::ConvTcTW,
            Family::MatMulTc => Family::MatMulTcW,
            Family::MatMulTcL => Family::MatMulTcLW,
            Family::MatMulWg => Family::MatMulWgW,
            Family::ConvWgm => Family::ConvWgmW,
            f => f,
        }
    }

    /// The `extern "C"` entry point of a variant.
    pub fn entry(self, variant: Variant) -> String {
        match variant {
            Variant::Rt => format!("{}_rt", self.base_name()),
            Variant::Be => format!("{}_be", self.base_name()),
        }
    }

    /// Bytes of dynamic shared memory a launch of this family needs (the
    /// wgmma families' stages, `WmCfg` in `gemm.cu`: [`WGM_STAGES`] of 128
    /// x 16 A and B floats; the attention family's [`ATTENTION_SMEM`]); 0
    /// for families on static shared memory alone.
    pub fn dynamic_smem(self) -> u32 {
        match self {
            Family::MatMulWg | Family::MatMulWgW | Family::ConvWgm | Family::ConvWgmW => {
                WGM_STAGES * 2 * 128 * 16 * 4
            }
            Family::Attention => ATTENTION_SMEM,
            _ => 0,
        }
    }

    /// Threads per block (must match the kernel's `__launch_bounds__`).
    pub fn threads(self) -> u32 {
        match self {
            Family::ConvTcL
            | Family::ConvTcLW
            | Family::MatMulTcL
            | Family::MatMulTcLW
            | Family::MatMulWg
            | Family::MatMulWgW
            | Family::ConvWgm
            | Family::ConvWgmW => GEMM_L_THREADS,
            Family::ConvTc
            | Family::ConvTcW
            | Family::ConvTcT
            | Family::ConvTcTW
            | Family::MatMulTcW
            | Family::ConvWg
            | Family::ConvWgS
            | Family::ConvFfma
            | Family::MatMulTc
            | Family::MatMulFfma
            | Family::ConvTcX3
            | Family::MatMulTcX3 => GEMM_THREADS,
            Family::Softmax | Family::LayerNorm | Family::Reduce | Family::ArgExtreme => {
                ROW_THREADS
            }
            Family::Attention => ATTENTION_THREADS,
            _ => EW_THREADS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvrtc_defines_parse_and_reject_what_is_not_a_definition() {
        assert_eq!(
            nvrtc_defines("REEF_FLAG_EVERY=4, X").unwrap(),
            vec!["-DREEF_FLAG_EVERY=4".to_string(), "-DX".to_string()]
        );
        assert!(nvrtc_defines("  ").unwrap().is_empty());
        for bad in ["4X=1", "A=$(rm)", "A=1;B", "-O3"] {
            let e = nvrtc_defines(bad).unwrap_err();
            assert!(e.contains("REEF_NVRTC_DEFINES"), "{e}");
        }
    }

    #[test]
    fn every_family_has_both_entry_points_in_the_source() {
        let src = program_source();
        for f in Family::ALL {
            assert!(
                ["REEF_FAMILY", "REEF_FAMILY_MB", "REEF_FAMILY_MB2"]
                    .iter()
                    .any(|m| src.contains(&format!("{m}({}, ", f.base_name()))),
                "{f:?} missing"
            );
            assert_eq!(Family::ALL[f.index()], f);
            assert!(f.threads() <= 1024 && f.threads() % 32 == 0);
        }
        assert_eq!(Family::Not.entry(Variant::Be), "lnot_be");
    }

    /// The kernel sets each line of the source is compiled in: the sets of
    /// the enclosing `#if defined(REEF_SET_*)` regions (every set outside
    /// them).
    fn line_sets(src: &str) -> Vec<(String, Vec<KernelSet>)> {
        let mut stack: Vec<Option<KernelSet>> = vec![];
        let mut out = vec![];
        for line in src.lines() {
            let t = line.trim_start();
            if t.starts_with("#if") {
                let set = KernelSet::ALL
                    .into_iter()
                    .find(|s| t.starts_with(&format!("#if defined({})", s.symbol())));
                stack.push(set);
            } else if t.starts_with("#endif") {
                stack.pop().expect("an #endif without its #if");
            }
            let inner: Vec<KernelSet> = stack.iter().flatten().copied().collect();
            assert!(inner.len() <= 1, "nested kernel-set regions at {line:?}");
            let sets = if inner.is_empty() {
                KernelSet::ALL.to_vec()
            } else {
                inner
            };
            out.push((line.to_string(), sets));
        }
        assert!(stack.is_empty(), "an #if without its #endif");
        out
    }

    #[test]
    fn every_family_is_instantiated_in_its_kernel_set_only() {
        let lines = line_sets(&program_source());
        for f in Family::ALL {
            let entries: Vec<&Vec<KernelSet>> = lines
                .iter()
                .filter(|(l, _)| {
                    ["REEF_FAMILY", "REEF_FAMILY_MB", "REEF_FAMILY_MB2"]
                        .iter()
                        .any(|m| l.starts_with(&format!("{m}({}, ", f.base_name())))
                })
                .map(|(_, s)| s)
                .collect();
            assert_eq!(entries, vec![&vec![f.set()]], "{f:?}");
            assert!(f.set().families().any(|g| g == f));
        }
        let hold: Vec<_> = lines
            .iter()
            .filter(|(l, _)| l.contains("void reef_hold("))
            .collect();
        assert_eq!(hold.len(), 1);
        assert_eq!(hold[0].1, vec![KernelSet::Base]);
        // Every set has a family, and its define names its symbol.
        for s in KernelSet::ALL {
            assert!(s.families().next().is_some(), "{s} is empty");
            assert_eq!(s.define(), format!("-D{}=1", s.symbol()));
        }
    }

    #[test]
    fn the_wgmma_matmul_stages_match_the_kernels() {
        let want = format!("#define REEF_WGM_STAGES {WGM_STAGES}");
        assert!(program_source().contains(&want), "{want}");
        // 227 KB is the most an sm_90 block may have.
        assert!(Family::MatMulWg.dynamic_smem() <= 227 * 1024);
        assert_eq!(
            Family::MatMulWgW.dynamic_smem(),
            Family::MatMulWg.dynamic_smem()
        );
        assert_eq!(Family::ConvTcL.dynamic_smem(), 0);
    }

    #[test]
    fn the_abort_bit_matches_the_kernels() {
        let want = format!("#define REEF_ABORTED {:#010x}u", crate::launch::ABORTED_BIT);
        assert!(program_source().contains(&want), "{want}");
    }

    #[test]
    fn sources_include_no_headers() {
        assert!(!program_source().contains("#include"));
    }

    #[test]
    fn options_name_the_architecture_and_keep_precise_math() {
        let o = nvrtc_options(9, 0);
        assert!(o.contains(&"--gpu-architecture=sm_90a".to_string()));
        assert!(nvrtc_options(8, 0).contains(&"--gpu-architecture=sm_80".to_string()));
        assert!(nvrtc_options(8, 9).contains(&"--gpu-architecture=sm_89".to_string()));
        assert!(o.contains(&"--fmad=false".to_string()));
        assert!(!o
            .iter()
            .any(|s| s.contains("fast_math") || s.contains("fast-math")));
    }
}
