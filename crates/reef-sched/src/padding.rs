//! Dynamic kernel padding (`reef` mode): per-kernel profiles measured at
//! model load, and the planner that picks, for each RT kernel, the BE work
//! that fills the compute units it leaves idle without lengthening it.
//!
//! Rules (REEF's, adapted to separate launches on Hopper):
//! - only RT kernels that run long enough ([`MIN_RT_KERNEL`]) and leave at
//!   least [`MIN_FREE_SHARE`] of the compute units idle in their first wave
//!   are padded;
//! - the padding launch has as many blocks as the idle units hold; its
//!   blocks claim tiles only while the RT kernel runs and stop claiming once
//!   `budget` (the RT kernel's time minus one BE tile) has passed, so the
//!   last BE tile ends no later than the RT kernel;
//! - a BE kernel whose tile takes more than [`MAX_TILE_SHARE`] of the RT
//!   kernel is never used (it could not stop in time);
//! - BE work is taken in order from the BE task's first unfinished kernel,
//!   first fit over the BE lanes, one lane per RT kernel; the planner's
//!   position is an estimate: launches of kernels that are already complete
//!   exit at once, launches whose predecessor is unfinished do nothing, so a
//!   wrong estimate costs padding, never correctness;
//! - the engine pads only an RT task that starts on an idle RT lane, beside
//!   BE lanes with no earlier padding queued, so padding never runs late
//!   beside another task's kernels.
//!
//! Measured on the H100 (docs/RESULTS.md, session 2), these rules leave BE
//! throughput within a few percent of `reset`: reef's RT kernels are split
//! to fill every SM, so whole idle SMs are rare.

use reef_exec::{Device, KernelShape, ModelHandle, Priority};
use std::sync::Arc;
use std::time::Duration;

/// RT kernels shorter than this are not padded (the padding launch's own
/// overhead would not pay).
pub const MIN_RT_KERNEL: Duration = Duration::from_micros(20);
/// Smallest share of compute units an RT kernel must leave idle to be padded.
pub const MIN_FREE_SHARE: f64 = 0.125;
/// Largest BE tile time, as a share of the padded RT kernel's time.
pub const MAX_TILE_SHARE: f64 = 0.5;
/// Share of the estimated idle capacity the planner fills (estimates err).
const FILL: f64 = 0.8;
/// Most BE kernels in one RT kernel's padding.
const MAX_KERNELS_PER_PAD: usize = 8;

/// Per-kernel timings of one compiled model on one device.
#[derive(Debug, Clone)]
pub struct Profile {
    /// RT variant run alone on the whole device, per kernel.
    pub rt: Vec<Duration>,
    /// Estimated time of one tile, per kernel.
    pub tile: Vec<Duration>,
    /// Launch shapes (None: the backend gives none; never padded or padding).
    pub shapes: Vec<Option<KernelShape>>,
}

impl Profile {
    /// Measures `handle` on `device` (a lane of its own, kernels timed alone,
    /// median of `reps`). Returns None when the backend reports no kernel
    /// shapes (it cannot pad).
    pub fn measure(
        device: &Arc<dyn Device>,
        handle: &Arc<dyn ModelHandle>,
        reps: usize,
    ) -> reef_exec::Result<Option<Profile>> {
        let mut ctx = handle.context()?;
        let n = handle.plan().kernels.len();
        let shapes: Vec<Option<KernelShape>> = (0..n).map(|i| ctx.shape(i)).collect();
        if shapes.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut lane = device.lane(Priority::High)?;
        let rt = lane.profile(ctx.as_mut(), reps)?;
        let units = device.compute_units().max(1) as u64;
        let tile = rt
            .iter()
            .zip(&shapes)
            .map(|(&d, s)| match s {
                Some(s) if s.tiles > 0 => {
                    let slots = u64::from(s.per_unit.max(1)) * units;
                    let wave = u64::from(s.tiles).min(slots);
                    d.mul_f64(wave as f64 / f64::from(s.tiles))
                }
                _ => d,
            })
            .collect();
        Ok(Some(Profile { rt, tile, shapes }))
    }
}

/// Whether kernel `k`'s estimated tile in `profile` is within `limit`;
/// true without a limit, a profile or an estimate for `k`.
pub fn tile_within(profile: Option<&Profile>, k: usize, limit: Option<Duration>) -> bool {
    match (limit, profile) {
        (Some(max), Some(p)) => p.tile.get(k).is_none_or(|&d| d <= max),
        _ => true,
    }
}

/// One padding launch the planner chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PadLaunch {
    /// BE kernel index.
    pub kernel: usize,
    /// Blocks of the launch.
    pub blocks: u32,
}

/// The padding for one RT kernel: the BE kernels, in order, and the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct PadChoice {
    /// BE kernels to launch, in order.
    pub launches: Vec<PadLaunch>,
    /// How long a block may keep claiming tiles.
    pub budget: Duration,
    /// The planner's new estimate of the BE task's position.
    pub new_pos: f64,
}

/// Compute units RT kernel `i` leaves idle, if it is worth padding.
pub fn idle_units(rt: &Profile, i: usize, units: usize) -> Option<usize> {
    let d = *rt.rt.get(i)?;
    let shape = (*rt.shapes.get(i)?)?;
    if d < MIN_RT_KERNEL {
        return None;
    }
    let free = units.saturating_sub(shape.units_used(units));
    (free as f64 >= MIN_FREE_SHARE * units as f64 && free > 0).then_some(free)
}

/// Picks the BE work beside an RT kernel of duration `d` that leaves `free`
/// of `units` idle, for a BE task at estimated position `pos` (kernel index
/// plus the fraction of it done; `known` kernels are known complete) with
/// profile `be`. The estimate may run ahead of the device, so the padding
/// starts one kernel before it (a launch of a completed kernel exits at once).
pub fn choose(
    d: Duration,
    free: usize,
    units: usize,
    be: &Profile,
    pos: f64,
    known: usize,
) -> Option<PadChoice> {
    let n = be.rt.len();
    let first = (pos.max(0.0).floor() as usize).saturating_sub(1).max(known);
    if first >= n || units == 0 {
        return None;
    }
    let max_tile = d.mul_f64(MAX_TILE_SHARE);
    if be.tile[first] > max_tile {
        return None;
    }
    let budget = d.saturating_sub(be.tile[first]);
    // GPU-seconds of the whole device the idle units offer during `d`.
    let mut capacity = d.as_secs_f64() * free as f64 / units as f64 * FILL;
    let mut launches = Vec::new();
    let mut at = pos.max(0.0);
    let mut j = first;
    while j < n && launches.len() < MAX_KERNELS_PER_PAD && capacity > 0.0 {
        if be.tile[j] > max_tile {
            break;
        }
        let Some(shape) = be.shapes[j] else { break };
        let blocks = (free as u64 * u64::from(shape.per_unit.max(1)))
            .min(u64::from(shape.tiles.max(1)))
            .min(u64::from(u32::MAX)) as u32;
        launches.push(PadLaunch { kernel: j, blocks });
        if (j as f64) + 1.0 <= at {
            // Before the estimate: already counted.
            j += 1;
            continue;
        }
        let whole = be.rt[j].as_secs_f64().max(1e-9);
        let left = whole * (1.0 - (at - j as f64)).clamp(0.0, 1.0);
        if capacity >= left {
            capacity -= left;
            j += 1;
            at = j as f64;
        } else {
            at += capacity / whole;
            capacity = 0.0;
        }
    }
    (!launches.is_empty()).then_some(PadChoice {
        launches,
        budget,
        new_pos: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(rt_us: &[u64], tiles: u32, per_unit: u32) -> Profile {
        Profile {
            rt: rt_us.iter().map(|&u| Duration::from_micros(u)).collect(),
            tile: rt_us
                .iter()
                .map(|&u| Duration::from_micros(u / 4))
                .collect(),
            shapes: rt_us
                .iter()
                .map(|_| {
                    Some(KernelShape {
                        tiles,
                        rt_blocks: tiles,
                        per_unit,
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn only_long_kernels_with_idle_units_are_padded() {
        // 40 blocks, 1 per unit, on 132 units: 92 idle.
        let rt = profile(&[100, 15, 100], 40, 1);
        assert_eq!(idle_units(&rt, 0, 132), Some(92));
        assert_eq!(idle_units(&rt, 1, 132), None, "15 us is too short");
        let full = profile(&[100], 132 * 2, 2);
        assert_eq!(
            idle_units(&full, 0, 132),
            None,
            "a full wave leaves nothing"
        );
        // 100 blocks that would fit 2 per SM still spread over 100 SMs.
        let spread = profile(&[100], 100, 2);
        assert_eq!(idle_units(&spread, 0, 132), Some(32));
        let almost = profile(&[100], 125, 1);
        assert_eq!(
            idle_units(&almost, 0, 132),
            None,
            "7 idle units are under 1/8"
        );
        assert_eq!(idle_units(&rt, 9, 132), None, "out of range");
    }

    #[test]
    fn choice_fills_the_estimated_capacity_in_order() {
        // BE kernels of 20 us each (tiles of 5 us); RT kernel of 100 us with
        // 50 of 132 units idle: 37.9 us of device time, 30.3 after the fill.
        let be = profile(&[20, 20, 20, 20], 64, 2);
        let c = choose(Duration::from_micros(100), 50, 132, &be, 0.0, 0).expect("pads");
        let ks: Vec<usize> = c.launches.iter().map(|l| l.kernel).collect();
        assert_eq!(ks, vec![0, 1]);
        let want = 1.0 + (100.0 * 50.0 / 132.0 * FILL - 20.0) / 20.0;
        assert!((c.new_pos - want).abs() < 1e-6, "{} vs {want}", c.new_pos);
        assert_eq!(c.budget, Duration::from_micros(95));
        assert!(c.launches.len() >= 2);
        assert_eq!(c.launches[0].blocks, 64, "capped by the tiles");
        // Continuing from the estimate starts one kernel before it, unless
        // that kernel is known complete.
        let c2 = choose(Duration::from_micros(100), 50, 132, &be, c.new_pos, 0).expect("pads");
        assert_eq!(c2.launches[0].kernel, 0);
        assert_eq!(c2.launches[1].kernel, 1);
        assert!(c2.new_pos > c.new_pos);
        let c3 = choose(Duration::from_micros(100), 50, 132, &be, c.new_pos, 1).expect("pads");
        assert_eq!(c3.launches[0].kernel, 1);
        assert!((c3.new_pos - c2.new_pos).abs() < 1e-9);
    }

    #[test]
    fn coarse_be_tiles_and_finished_tasks_are_not_used() {
        let be = profile(&[400], 8, 1); // 100 us tiles
        assert!(choose(Duration::from_micros(100), 66, 132, &be, 0.0, 0).is_none());
        let be = profile(&[20], 8, 1);
        assert!(choose(Duration::from_micros(100), 66, 132, &be, 1.0, 1).is_none());
    }
}
