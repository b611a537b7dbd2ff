//! GEMM launch geometry: which tile configuration a convolution or matmul
//! runs with and how its K axis is split (deterministic split-K), chosen per
//! kernel at model load from the problem size and the GPU's SM count.

use crate::kernels::Family;
use crate::params::GEMM_K;
use crate::precision::Precision;

/// Fewest K steps (of [`GEMM_K`]) one split may own: K >= 128 per split.
pub const MIN_SPLIT_STEPS: u64 = 8;
/// Most splits of one kernel (bounds the reduction of the last block, which
/// reads the partials of one split at a time).
pub const MAX_SPLITS: u64 = 32;
/// Work items wanted per SM before splitting stops: four 128-thread blocks
/// fit on an SM (registers), and with one block per SM a warp scheduler has
/// a single warp to issue from (Nsight Compute, H100: 0.2 instructions per
/// cycle per scheduler, SMs busy 43% of a layer4 convolution).
pub const TARGET_ITEMS_PER_SM: u64 = 4;
/// Output tiles wanted per SM before large tiles are chosen (two waves).
pub const LARGE_TILES_PER_SM: u64 = 2;
/// Most K steps one work item may own when the K axis is long (K <= 2048 per
/// item): bounds a tile's time, which bounds how long a preempted BE kernel
/// takes to stop (a bs1 fully connected layer would otherwise stream
/// megabytes of weights in one tile).
pub const MAX_ITEM_STEPS: u64 = 128;

/// A GEMM tile configuration (mirrors `CfgL` / `CfgM` in `kernels/gemm.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmTile {
    /// 128 x 128 output tiles, 256 threads (TF32 convolutions only, see
    /// [`GemmTile::large_ok`]).
    Large,
    /// 64 x 64 output tiles, 128 threads.
    Medium,
    /// 128 x 64 output tiles (rows = output channels), 128 threads of 64 x
    /// 32 warp tiles (TF32 convolutions only, like [`GemmTile::Large`]).
    Tall,
    /// wgmma (sm_90a, TF32 convolutions only): 128 output channels x 64
    /// pixels, one 128-thread warpgroup (`CfgW`).
    Wg,
    /// wgmma, 64 output channels x 64 pixels (`CfgWs`).
    WgS,
    /// wgmma with both operands in shared memory (sm_90a, TF32): 128 x 128
    /// output tiles, two 128-thread warpgroups, one block per SM (two for
    /// the matmul RT variant; `WmCfg`;
    /// matmuls and convolutions).
    WgMat,
}

impl GemmTile {
    /// Every tile configuration.
    pub const ALL: [GemmTile; 6] = [
        GemmTile::Large,
        GemmTile::Medium,
        GemmTile::Tall,
        GemmTile::Wg,
        GemmTile::WgS,
        GemmTile::WgMat,
    ];

    /// Output tile (rows, columns).
    pub fn dims(self) -> (u64, u64) {
        match self {
            GemmTile::Large | GemmTile::WgMat => (128, 128),
            GemmTile::Medium | GemmTile::WgS => (64, 64),
            GemmTile::Wg | GemmTile::Tall => (128, 64),
        }
    }

    /// Blocks of this tile the split rules count on being resident on a GPU
    /// of `sms` SMs: two 256-thread large blocks per SM (registers), one
    /// block of the shared-memory wgmma tiles (their convolution and BE
    /// variants; the matmul RT variant fits two), three 128-channel wgmma
    /// blocks (registers), four of the 128-thread tiles.
    pub fn slots(self, sms: u32) -> u64 {
        let sms = u64::from(sms.max(1));
        match self {
            GemmTile::Large => LARGE_TILES_PER_SM * sms,
            GemmTile::Wg => 3 * sms,
            GemmTile::WgMat => sms,
            GemmTile::Medium | GemmTile::Tall | GemmTile::WgS => TARGET_ITEMS_PER_SM * sms,
        }
    }

    /// Whether convolutions in `precision` may use [`GemmTile::Large`].
    /// Only TF32: the split-TF32 core at 128 x 128 needs more than the 128
    /// registers per thread that two resident 256-thread blocks allow (ptxas
    /// spilled 48-80 bytes per thread in a 128 x 128 split-TF32 build), so split TF32 uses
    /// 64 x 64 tiles, and the exact-f32 core exists at 64 x 64 only.
    pub fn large_ok(precision: Precision) -> bool {
        precision == Precision::Tf32
    }

    /// The convolution family of this tile in the given precision
    /// ([`GemmTile::Large`] only where [`GemmTile::large_ok`]; otherwise the
    /// 64 x 64 family of the precision).
    pub fn conv_family(self, precision: Precision) -> Family {
        match (self, precision) {
            (_, Precision::F32) => Family::ConvFfma,
            (GemmTile::Large, Precision::Tf32) => Family::ConvTcL,
            (GemmTile::WgMat, Precision::Tf32) => Family::ConvWgm,
            (GemmTile::Medium, Precision::Tf32) => Family::ConvTc,
            (GemmTile::Tall, Precision::Tf32) => Family::ConvTcT,
            (GemmTile::Wg, Precision::Tf32) => Family::ConvWg,
            (GemmTile::WgS, Precision::Tf32) => Family::ConvWgS,
            (_, Precision::Tf32x3) => Family::ConvTcX3,
        }
    }

    /// The matmul family of this tile in the given precision: the load-time
    /// rules pick [`GemmTile::Medium`], or [`GemmTile::WgMat`] with wgmma;
    /// TF32 matmuls also have a [`GemmTile::Large`] kernel, which the tactic
    /// tuner may pick ([`crate::tactics`]). Other tiles, and every tile in
    /// split TF32 or f32, map to the 64 x 64 family.
    pub fn matmul_family(self, precision: Precision) -> Family {
        match (self, precision) {
            (GemmTile::Large, Precision::Tf32) => Family::MatMulTcL,
            (GemmTile::WgMat, Precision::Tf32) => Family::MatMulWg,
            (_, Precision::Tf32) => Family::MatMulTc,
            (_, Precision::Tf32x3) => Family::MatMulTcX3,
            (_, Precision::F32) => Family::MatMulFfma,
        }
    }
}

/// The K split counts a GEMM with a K axis of `k` may use: (fewest, most).
/// At least enough splits that no work item owns more than
/// [`MAX_ITEM_STEPS`] K steps (that bounds a BE tile's time, hence the
/// preemption drain), at most [`MAX_SPLITS`] and no fewer than
/// [`MIN_SPLIT_STEPS`] steps per split.
pub fn split_bounds(k: u64) -> (u64, u64) {
    step_bounds(k.div_ceil(GEMM_K))
}

/// [`split_bounds`] of a K axis of `steps` K steps.
fn step_bounds(steps: u64) -> (u64, u64) {
    let steps = steps.max(1);
    let cap = (steps / MIN_SPLIT_STEPS).clamp(1, MAX_SPLITS);
    let lo = steps.div_ceil(MAX_ITEM_STEPS).min(cap).max(1);
    (lo, cap)
}

/// Splits of the K axis of `steps` K steps over `tiles` output tiles when
/// `slots` blocks fit on the GPU at once: as many as keep all items in one
/// wave (`tiles * splits <= slots`, rounding down), at least as many as keep
/// every item within [`MAX_ITEM_STEPS`], at most the cap of
/// [`MIN_SPLIT_STEPS`] per split and [`MAX_SPLITS`]. Rounding up instead
/// (the fill rule, [`split_k_fill`]) spilled a few blocks into a second
/// wave that doubled the kernel's time (H200, Nsight Compute: vgg19's 3x3
/// convolution at 56x56 ran 588 blocks on 528 slots, a second wave of 60,
/// where 2 splits run 392 items in one). Returns (splits, K steps per
/// split), ranges of equal whole steps.
pub fn split_k(tiles: u64, steps: u64, slots: u64) -> (u64, u64) {
    let (tiles, steps, slots) = (tiles.max(1), steps.max(1), slots.max(1));
    let (lo, cap) = step_bounds(steps);
    let splits = (slots / tiles).clamp(lo, cap);
    let per = steps.div_ceil(splits);
    (steps.div_ceil(per), per)
}

/// The older split rule (`REEF_SPLIT_WAVES=0`): K split until the tiles fill
/// the `slots` resident blocks, within the same bounds as [`split_k`].
pub fn split_k_fill(tiles: u64, steps: u64, slots: u64) -> (u64, u64) {
    let (tiles, steps) = (tiles.max(1), steps.max(1));
    let (lo, cap) = step_bounds(steps);
    let mut splits = 1;
    if tiles < slots {
        splits = slots.div_ceil(tiles).min(cap);
    }
    splits = splits.max(lo);
    let per = steps.div_ceil(splits);
    (steps.div_ceil(per), per)
}

/// Which tile configurations and split rule a GEMM may use
/// ([`GemmGeom::choose_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRules {
    /// 128 x 128 tiles allowed ([`GemmTile::large_ok`]).
    pub large: bool,
    /// 128 x 64 tiles allowed (convolutions in TF32, `REEF_TALL_TILES`).
    pub tall: bool,
    /// Whole-wave K splits ([`split_k`]) instead of the fill rule.
    pub waves: bool,
}

/// The geometry of one GEMM launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmGeom {
    /// Tile configuration.
    pub tile: GemmTile,
    /// Tiles along M.
    pub m_tiles: u64,
    /// Tiles along N.
    pub n_tiles: u64,
    /// Output tiles (`outer * m_tiles * n_tiles`): one arrival counter each when split.
    pub out_tiles: u64,
    /// K splits (1: no split, no workspace, no counters).
    pub splits: u64,
    /// K range of one split (a multiple of [`GEMM_K`]).
    pub ksplit: u64,
}

impl GemmGeom {
    /// Chooses the geometry of `outer` independent (groups or batch) GEMMs
    /// of `m` x `n` x `k` on a GPU with `sms` SMs. Large tiles when
    /// `large_ok` ([`GemmTile::large_ok`]) and they alone fill two waves
    /// ([`LARGE_TILES_PER_SM`]);
    /// otherwise 64 x 64 tiles, with K
    /// split until there are about [`TARGET_ITEMS_PER_SM`] items per SM,
    /// each split owning at least [`MIN_SPLIT_STEPS`] K steps.
    pub fn choose(outer: u64, m: u64, n: u64, k: u64, large_ok: bool, sms: u32) -> Self {
        Self::choose_with(outer, m, n, k, large_ok, sms, true)
    }

    /// [`GemmGeom::choose`], with `waves` choosing the K split rule:
    /// [`split_k`] (true) or the older fill rule ([`split_k_fill`]).
    pub fn choose_with(
        outer: u64,
        m: u64,
        n: u64,
        k: u64,
        large_ok: bool,
        sms: u32,
        waves: bool,
    ) -> Self {
        let rules = TileRules {
            large: large_ok,
            tall: false,
            waves,
        };
        Self::choose_by(outer, m, n, k, rules, sms)
    }

    /// The geometry under `rules`: large tiles as in [`GemmGeom::choose`];
    /// else, with `rules.tall`, 128 x 64 tiles where M holds whole 128-row
    /// tiles or at least 512 rows; else 64 x 64 tiles.
    pub fn choose_by(outer: u64, m: u64, n: u64, k: u64, rules: TileRules, sms: u32) -> Self {
        let TileRules {
            large: large_ok,
            tall,
            waves,
        } = rules;
        let tiles = |(bm, bn): (u64, u64)| outer * m.div_ceil(bm).max(1) * n.div_ceil(bn).max(1);
        let large = large_ok
            && m >= 128
            && n >= 128
            && tiles(GemmTile::Large.dims()) >= LARGE_TILES_PER_SM * u64::from(sms.max(1));
        let tile = if large {
            GemmTile::Large
        } else if tall && large_ok && m >= 128 && (m.is_multiple_of(128) || m >= 512) {
            GemmTile::Tall
        } else {
            GemmTile::Medium
        };
        Self::with_tile(tile, outer, m, n, k, sms, waves)
    }

    /// The geometry of a TF32 convolution on a GPU with wgmma: 128 x 128
    /// tiles with both operands in shared memory when there are at least
    /// 128 output channels (per group) and 128 output columns, else
    /// 128-channel tiles from 128 channels, else 64-channel tiles.
    pub fn choose_wgmma(outer: u64, m: u64, n: u64, k: u64, sms: u32, waves: bool) -> Self {
        let tile = if m >= 128 && n >= 128 {
            GemmTile::WgMat
        } else if m >= 128 {
            GemmTile::Wg
        } else {
            GemmTile::WgS
        };
        Self::with_tile(tile, outer, m, n, k, sms, waves)
    }

    /// The geometry with a given tile: K split by [`split_k`] (`waves`) or
    /// [`split_k_fill`] over the blocks of the tile that fit on the GPU.
    pub fn with_tile(
        tile: GemmTile,
        outer: u64,
        m: u64,
        n: u64,
        k: u64,
        sms: u32,
        waves: bool,
    ) -> Self {
        let out_tiles = Self::out_tiles_of(tile, outer, m, n);
        let target = tile.slots(sms);
        let steps = k.div_ceil(GEMM_K).max(1);
        let (splits, _) = if waves {
            split_k(out_tiles, steps, target)
        } else {
            split_k_fill(out_tiles, steps, target)
        };
        Self::with_splits(tile, outer, m, n, k, splits)
    }

    /// Output tiles of `tile` over `outer` GEMMs of `m` x `n`.
    fn out_tiles_of(tile: GemmTile, outer: u64, m: u64, n: u64) -> u64 {
        let (bm, bn) = tile.dims();
        outer * m.div_ceil(bm).max(1) * n.div_ceil(bn).max(1)
    }

    /// The geometry with a given tile and (about) `splits` K splits: ranges
    /// of equal whole K steps, so the count may come out a little lower
    /// (e.g. 9 steps in 4 splits are 3 ranges of 3). The count is clamped
    /// to [`split_bounds`]; [`crate::tactics`] checks it before it gets here.
    pub fn with_splits(tile: GemmTile, outer: u64, m: u64, n: u64, k: u64, splits: u64) -> Self {
        let (bm, bn) = tile.dims();
        let steps = k.div_ceil(GEMM_K).max(1);
        let (lo, cap) = split_bounds(k);
        let per = steps.div_ceil(splits.clamp(lo, cap));
        GemmGeom {
            tile,
            m_tiles: m.div_ceil(bm).max(1),
            n_tiles: n.div_ceil(bn).max(1),
            out_tiles: Self::out_tiles_of(tile, outer, m, n),
            splits: steps.div_ceil(per),
            ksplit: per * GEMM_K,
        }
    }

    /// Work items (blocks of the RT variant): output tiles times splits.
    pub fn items(&self) -> u64 {
        self.out_tiles * self.splits
    }

    /// Workspace bytes this launch needs (0 without a split).
    pub fn workspace_bytes(&self) -> u64 {
        if self.splits == 1 {
            return 0;
        }
        let (bm, bn) = self.tile.dims();
        self.items() * bm * bn * 4
    }

    /// Arrival counters this launch needs (0 without a split).
    pub fn counters(&self) -> u64 {
        if self.splits == 1 {
            0
        } else {
            self.out_tiles
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wgmma_tiles_follow_the_channel_count() {
        // vgg19 conv 3x3 512->512 at 28x28, batch 1: M = 512, N = 784, K =
        // 4608: 128 x 128 tiles with both operands in shared memory, one
        // block per SM.
        let g = GemmGeom::choose_wgmma(1, 512, 784, 4608, 132, true);
        assert_eq!(g.tile, GemmTile::WgMat);
        assert_eq!((g.m_tiles, g.n_tiles, g.out_tiles), (4, 7, 28));
        // 132 blocks resident: whole waves take 4 splits (112 items).
        assert_eq!(g.splits, 4);
        assert_eq!(g.workspace_bytes(), g.items() * 128 * 128 * 4);
        assert_eq!(g.tile.conv_family(Precision::Tf32), Family::ConvWgm);
        assert_eq!(g.tile.matmul_family(Precision::Tf32), Family::MatMulWg);
        // ResNet layer4 at batch 1 (N = 49): 128-channel register-operand tiles.
        let g = GemmGeom::choose_wgmma(1, 512, 49, 4608, 132, false);
        assert_eq!(g.tile, GemmTile::Wg);
        assert_eq!((g.m_tiles, g.n_tiles, g.out_tiles), (4, 1, 4));
        assert_eq!(g.workspace_bytes(), g.items() * 128 * 64 * 4);
        assert_eq!(g.tile.conv_family(Precision::Tf32), Family::ConvWg);
        // 64 output channels: 64-channel tiles.
        let g = GemmGeom::choose_wgmma(1, 64, 224 * 224, 576, 132, true);
        assert_eq!(g.tile, GemmTile::WgS);
        assert_eq!((g.m_tiles, g.n_tiles, g.splits), (1, 784, 1));
        assert_eq!(g.tile.conv_family(Precision::Tf32), Family::ConvWgS);
    }

    #[test]
    fn small_problems_split_k_and_large_ones_do_not() {
        // ResNet layer4 3x3 conv at batch 1: M = 512, N = 49, K = 4608
        // (the fill rule; `wave_splits_*` has the default's choices).
        let g = GemmGeom::choose_with(1, 512, 49, 4608, true, 132, false);
        assert_eq!(g.tile, GemmTile::Medium);
        assert_eq!((g.m_tiles, g.n_tiles, g.out_tiles), (8, 1, 8));
        assert_eq!(g.splits, 32);
        assert_eq!(g.ksplit, 144);
        assert!(g.ksplit / GEMM_K >= MIN_SPLIT_STEPS);
        assert_eq!(g.items(), 256);
        assert_eq!(g.workspace_bytes(), 256 * 64 * 64 * 4);
        assert_eq!(g.counters(), 8);

        // Short K: never split below 128 per split.
        let g = GemmGeom::choose(1, 64, 64, 200, true, 132);
        assert_eq!((g.splits, g.ksplit), (1, 208));
        assert_eq!(g.workspace_bytes(), 0);
        assert_eq!(g.counters(), 0);

        // A bs1 fully connected layer (vgg19 fc6): K = 25088 cut so that no
        // item owns more than MAX_ITEM_STEPS K steps (13 splits, not the 5
        // that filling the SMs asks for).
        let g = GemmGeom::choose_with(1, 1, 4096, 25088, false, 132, false);
        assert_eq!(g.splits, 13);
        let g = GemmGeom::choose(1, 1, 4096, 25088, false, 132);
        assert!(g.ksplit / GEMM_K <= MAX_ITEM_STEPS);
        assert!(g.ksplit / GEMM_K <= MAX_ITEM_STEPS);
        let g = GemmGeom::choose(1, 1, 4096, 4096, false, 132);
        assert!(g.ksplit / GEMM_K <= MAX_ITEM_STEPS, "{g:?}");

        // Plenty of tiles: large tiles, no split.
        let g = GemmGeom::choose(1, 256, 8 * 56 * 56, 576, true, 132);
        assert_eq!(g.tile, GemmTile::Large);
        assert_eq!((g.m_tiles, g.n_tiles, g.splits), (2, 196, 1));

        assert_eq!(g.tile.conv_family(Precision::Tf32), Family::ConvTcL);

        // No large tiles when not allowed (split TF32, exact-f32 core, matmuls).
        for p in [Precision::Tf32x3, Precision::F32] {
            let g = GemmGeom::choose(1, 256, 8 * 56 * 56, 576, GemmTile::large_ok(p), 132);
            assert_eq!(g.tile, GemmTile::Medium);
        }
        assert_eq!(
            GemmTile::Medium.conv_family(Precision::F32),
            Family::ConvFfma
        );
        assert_eq!(
            GemmTile::Medium.conv_family(Precision::Tf32x3),
            Family::ConvTcX3
        );
        assert_eq!(
            GemmTile::Medium.matmul_family(Precision::Tf32x3),
            Family::MatMulTcX3
        );
        assert_eq!(
            GemmTile::Medium.matmul_family(Precision::F32),
            Family::MatMulFfma
        );
    }

    #[test]
    fn tall_tiles_take_convolutions_of_whole_128_channel_tiles() {
        let rules = |tall| TileRules {
            large: true,
            tall,
            waves: true,
        };
        // ResNet layer4 3x3 at batch 1: 512 channels, 49 pixels.
        let g = GemmGeom::choose_by(1, 512, 49, 4608, rules(true), 132);
        assert_eq!(g.tile, GemmTile::Tall);
        assert_eq!((g.m_tiles, g.n_tiles, g.out_tiles), (4, 1, 4));
        assert_eq!(g.tile.conv_family(Precision::Tf32), Family::ConvTcT);
        assert_eq!(g.workspace_bytes(), g.items() * 128 * 64 * 4);
        assert_eq!(
            GemmGeom::choose_by(1, 512, 49, 4608, rules(false), 132).tile,
            GemmTile::Medium
        );
        // 192 channels would waste a third of a tile; 576 (>= 512) not much.
        assert_eq!(
            GemmGeom::choose_by(1, 192, 49, 1728, rules(true), 132).tile,
            GemmTile::Medium
        );
        assert_eq!(
            GemmGeom::choose_by(1, 576, 49, 24, rules(true), 132).tile,
            GemmTile::Tall
        );
        // Enough tiles for two waves of 128 x 128: large tiles still win.
        let g = GemmGeom::choose_by(1, 256, 8 * 56 * 56, 576, rules(true), 132);
        assert_eq!(g.tile, GemmTile::Large);
        // Not in split TF32 or f32 (no large tiles there either).
        let strict = TileRules {
            large: false,
            tall: true,
            waves: true,
        };
        assert_eq!(
            GemmGeom::choose_by(1, 512, 49, 4608, strict, 132).tile,
            GemmTile::Medium
        );
    }

    #[test]
    fn wave_splits_fill_whole_waves() {
        // vgg19 3x3 256->256 at 56x56, batch 1: 196 tiles, 144 K steps, 528
        // slots. Filling the slots takes 3 splits (588 items: a second wave
        // of 60 blocks, 2 x 48 steps); 2 splits run one wave of 72 steps.
        assert_eq!(split_k_fill(196, 144, 528), (3, 48));
        assert_eq!(split_k(196, 144, 528), (2, 72));
        // ResNet layer4 at batch 1: 8 tiles, 288 steps: the split cap either way.
        assert_eq!(split_k_fill(8, 288, 528), (32, 9));
        assert_eq!(split_k(8, 288, 528), (32, 9));
        // A wave's worth of tiles: no split.
        assert_eq!(split_k(600, 36, 528), (1, 36));
        // Long K: split for MAX_ITEM_STEPS even past one wave.
        assert_eq!(split_k(600, 300, 528), (3, 100));
        // Every choice keeps items within MAX_ITEM_STEPS and the split cap.
        for tiles in [1u64, 7, 52, 196, 528, 529, 2000] {
            for steps in [1u64, 9, 100, 288, 1568, 5000] {
                let (s, per) = split_k(tiles, steps, 528);
                let cap = (steps / MIN_SPLIT_STEPS).clamp(1, MAX_SPLITS);
                assert!(s >= 1 && s <= cap, "{tiles} {steps}: {s}");
                assert!(per <= MAX_ITEM_STEPS || s == cap, "{tiles} {steps}: {per}");
                assert!(s * per >= steps && (s - 1) * per < steps);
            }
        }
    }

    #[test]
    fn splits_cover_k_exactly_without_empty_ranges() {
        for k in [1u64, 15, 16, 17, 255, 256, 257, 511, 512, 1000, 4608, 25088] {
            for outer in [1u64, 3, 40] {
                let g = GemmGeom::choose(outer, 70, 45, k, true, 132);
                assert!(g.splits >= 1 && g.splits <= MAX_SPLITS);
                assert_eq!(g.ksplit % GEMM_K, 0);
                // Every split starts inside K and together they cover it.
                assert!((g.splits - 1) * g.ksplit < k.max(1));
                assert!(g.splits * g.ksplit >= k);
                if g.splits > 1 {
                    assert!(g.ksplit / GEMM_K >= MIN_SPLIT_STEPS);
                }
            }
        }
    }
}
