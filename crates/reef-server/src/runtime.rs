//! The front end's tokio runtime: optional busy-polling workers that trade
//! host cores for request latency.
//!
//! A request through gRPC or HTTP crosses several tasks (connection, request
//! handler, the scheduler's completion), and each hand-off to a parked
//! worker thread is a futex or epoll wake-up plus a context switch: tens of
//! microseconds each on a virtualised host, several hundred per request in
//! all (docs/PERF.md, "Front end: shared memory and busy polling"). A
//! busy-polling worker never parks, so the hand-off is picked up at its next
//! scheduler tick instead.

/// Spawns `n` tasks on the runtime of `handle` that keep `n` of its worker
/// threads from parking: each yields in a loop, so its worker keeps polling
/// the I/O driver and the run queues. Each costs one host core at 100%. The
/// tasks end when the runtime shuts down (they are cancelled at a yield).
pub fn spawn_busy_pollers(handle: &tokio::runtime::Handle, n: usize) {
    for _ in 0..n {
        handle.spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Checks a busy-poller count against the host: at least one core must stay
/// free for the scheduler's threads. Returns the reason when `n` is too large.
pub fn check_busy_pollers(n: usize) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n >= cores {
        return Err(format!(
            "{n} busy-polling threads on a host with {cores} cores: leave at least one core free"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn busy_pollers_leave_room_for_other_tasks_and_end_with_the_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        spawn_busy_pollers(rt.handle(), 1);
        // A timer and a spawned task still run promptly next to the poller.
        let got = rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tokio::spawn(async { 7 }).await.unwrap()
        });
        assert_eq!(got, 7);
        // Shutting the runtime down cancels the poller (this would hang otherwise).
        rt.shutdown_timeout(Duration::from_secs(5));
    }

    #[test]
    fn too_many_busy_pollers_are_refused() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert!(check_busy_pollers(0).is_ok());
        let e = check_busy_pollers(cores).unwrap_err();
        assert!(e.contains("leave at least one core"), "{e}");
    }
}
