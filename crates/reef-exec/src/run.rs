//! Convenience drivers over the [`Device`](crate::Device) API: run a whole
//! plan to completion on a lane (used by tests, `reef selftest` and benches).

use crate::{Context, Lane, Result, Variant};

/// Runs kernels `from..` of the context's plan on `lane` as `variant` and
/// waits. Returns the context's progress afterwards (== kernel count when the
/// run completed, smaller if the lane was preempted meanwhile).
pub fn run_to_end(
    lane: &mut dyn Lane,
    ctx: &mut dyn Context,
    from: usize,
    variant: Variant,
) -> Result<usize> {
    let n = ctx.model().plan().kernels.len();
    lane.begin(ctx, from)?;
    for i in from..n {
        lane.enqueue(ctx, i, variant)?;
    }
    lane.synchronize()?;
    ctx.progress()
}
