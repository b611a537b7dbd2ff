//! Tiling: splitting a kernel's output into independent tiles, running them
//! on the rayon pool with the preemption check before each tile, scratch
//! buffers reused across tiles, and a strided index walker.
//!
//! Tile boundaries depend only on the kernel's spec (never on thread counts
//! or the variant), so every launch of a kernel computes bit-identical results.

use super::cores::Cores;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Elements per tile of the simple elementwise kernels.
pub(crate) const CHUNK: usize = 16 * 1024;

/// Floating-point work aimed at per tile of the heavy kernels (well under a
/// millisecond on one core).
pub(crate) const TARGET_FLOPS: usize = 8_000_000;

/// The preemption check of one launch, and the device slots its tiles take.
pub(crate) struct Stop<'a> {
    flag: Option<&'a AtomicBool>,
    /// The device's slots and whether this launch's tiles take them as RT.
    slots: Option<(&'a Cores, bool)>,
    /// Padding launches: stop once this progress word reaches the value (the
    /// RT kernel they pad has completed).
    guard: Option<(&'a AtomicUsize, usize)>,
    hit: AtomicBool,
}

impl<'a> Stop<'a> {
    /// A check against `flag` (`None` for RT launches, which never stop).
    pub(crate) fn new(flag: Option<&'a AtomicBool>) -> Self {
        Self {
            flag,
            slots: None,
            guard: None,
            hit: AtomicBool::new(false),
        }
    }

    /// Also stops once `word` reaches `target` (a padding launch's RT kernel
    /// completed).
    pub(crate) fn with_guard(mut self, word: &'a AtomicUsize, target: usize) -> Self {
        self.guard = Some((word, target));
        self
    }

    /// True (and remembered) when the launch must not start another tile.
    pub(crate) fn should_stop(&self) -> bool {
        let flagged = self.flag.is_some_and(|f| f.load(Ordering::Acquire));
        let guarded = self
            .guard
            .is_some_and(|(w, target)| w.load(Ordering::Acquire) >= target);
        if flagged || guarded {
            self.hit.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Tiles hold one of `cores`' slots while they run, taken as RT tiles
    /// when `rt` (else as BE tiles: only while no RT lane has work).
    pub(crate) fn with_slots(mut self, cores: &'a Cores, rt: bool) -> Self {
        self.slots = Some((cores, rt));
        self
    }

    /// Runs `f` as one tile unless the launch must stop: the check, then a
    /// slot, then the check again (the wait for a slot may be long).
    fn tile(&self, f: impl FnOnce()) {
        if self.should_stop() {
            return;
        }
        let _slot = self.slots.map(|(c, rt)| c.acquire(rt));
        if !self.should_stop() {
            f();
        }
    }

    /// Whether every tile ran (no check ever hit the flag).
    pub(crate) fn completed(&self) -> bool {
        !self.hit.load(Ordering::Relaxed)
    }
}

/// Runs `f(start, chunk)` over consecutive `chunk`-element pieces of `out`.
pub(crate) fn chunks<T, F>(out: &mut [T], chunk: usize, stop: &Stop, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let chunk = chunk.max(1);
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(t, piece)| stop.tile(|| f(t * chunk, piece)));
}

/// Runs `f` over prepared tiles.
pub(crate) fn run<T, F>(tiles: Vec<T>, stop: &Stop, f: F)
where
    T: Send,
    F: Fn(T) + Sync + Send,
{
    tiles.into_par_iter().for_each(|t| stop.tile(|| f(t)));
}

/// A tile of an output viewed as `[planes, rows, cols]`: rows
/// `row0..row0 + rows.len()` and columns `col0..col0 + rows[i].len()` of one plane.
pub(crate) struct GridTile<'a, T> {
    /// Plane index.
    pub plane: usize,
    /// First row.
    pub row0: usize,
    /// First column.
    pub col0: usize,
    /// One slice per row of the tile.
    pub rows: Vec<&'a mut [T]>,
}

/// Splits `out` (exactly `planes * rows * cols` elements) into tiles of at
/// most `rb` rows by `cb` columns that never cross a plane.
pub(crate) fn grid<T>(
    out: &mut [T],
    planes: usize,
    rows: usize,
    cols: usize,
    rb: usize,
    cb: usize,
) -> Vec<GridTile<'_, T>> {
    if planes == 0 || rows == 0 || cols == 0 {
        return Vec::new();
    }
    let (rb, cb) = (rb.clamp(1, rows), cb.clamp(1, cols));
    let (nrb, ncb) = (rows.div_ceil(rb), cols.div_ceil(cb));
    let mut tiles = Vec::with_capacity(planes * nrb * ncb);
    for plane in 0..planes {
        for rbi in 0..nrb {
            for cbi in 0..ncb {
                let n = rb.min(rows - rbi * rb);
                tiles.push(GridTile {
                    plane,
                    row0: rbi * rb,
                    col0: cbi * cb,
                    rows: Vec::with_capacity(n),
                });
            }
        }
    }
    for (ri, row) in out.chunks_mut(cols).enumerate() {
        let (plane, r) = (ri / rows, ri % rows);
        let base = (plane * nrb + r / rb) * ncb;
        for (ci, piece) in row.chunks_mut(cb).enumerate() {
            tiles[base + ci].rows.push(piece);
        }
    }
    tiles
}

/// Rounds a block size down to a multiple of 8 when it is at least 8.
pub(crate) fn round8(x: usize) -> usize {
    if x >= 8 {
        x / 8 * 8
    } else {
        x.max(1)
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Calls `f` with three per-thread scratch buffers of at least `a`, `b` and
/// `c` elements (contents unspecified). Reentrant: a nested call gets fresh ones.
pub(crate) fn with_scratch<R>(
    a: usize,
    b: usize,
    c: usize,
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32]) -> R,
) -> R {
    let mut bufs = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    for (buf, len) in bufs.iter_mut().zip([a, b, c]) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
    let [x, y, z] = &mut bufs;
    let r = f(&mut x[..a], &mut y[..b], &mut z[..c]);
    SCRATCH.with(|s| *s.borrow_mut() = bufs);
    r
}

/// Walks positions `start..start + len` of a row-major `shape` in runs along
/// its last dimension, calling `f(position, run_len, offsets, inner_strides)`
/// where `offsets[k]` is operand k's element offset at the run's start
/// (`base[k] + Σ idx_d · strides[k][d]`).
pub(crate) fn walk_runs<const K: usize>(
    shape: &[usize],
    strides: [&[i64]; K],
    base: [i64; K],
    start: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, [i64; K], [i64; K]),
) {
    let rank = shape.len();
    if len == 0 {
        return;
    }
    if rank == 0 {
        f(start, 1, base, [0; K]);
        return;
    }
    let last = shape[rank - 1];
    if last == 0 {
        return;
    }
    let mut idx = [0usize; reef_plan::kernel::MAX_RANK];
    let mut rem = start;
    for d in (0..rank).rev() {
        idx[d] = rem % shape[d].max(1);
        rem /= shape[d].max(1);
    }
    let mut offs = base;
    let mut inner = [0i64; K];
    for k in 0..K {
        for d in 0..rank {
            offs[k] += idx[d] as i64 * strides[k][d];
        }
        inner[k] = strides[k][rank - 1];
    }
    let end = start + len;
    let mut pos = start;
    while pos < end {
        let run = (last - idx[rank - 1]).min(end - pos);
        f(pos, run, offs, inner);
        pos += run;
        idx[rank - 1] += run;
        for k in 0..K {
            offs[k] += run as i64 * inner[k];
        }
        let mut d = rank - 1;
        while d > 0 && idx[d] == shape[d] {
            for k in 0..K {
                offs[k] -= shape[d] as i64 * strides[k][d];
                offs[k] += strides[k][d - 1];
            }
            idx[d] = 0;
            d -= 1;
            idx[d] += 1;
        }
    }
}

/// Converts unsigned strides to signed ones.
pub(crate) fn signed(strides: &[usize]) -> Vec<i64> {
    strides.iter().map(|&s| s as i64).collect()
}

/// Product of a shape.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
