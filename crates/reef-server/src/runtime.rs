//! The front end's tokio runtime: optionally every worker busy-polls,
//! trading host cores for request latency.
//!
//! A request through gRPC or HTTP crosses several tasks (connection, request
//! handler, the scheduler's completion), and each hand-off to a parked
//! worker thread is a futex or epoll wake-up plus a context switch: tens of
//! microseconds each on a virtualised host, several hundred per request in
//! all (docs/PERF.md, "Front end: shared memory and busy polling").
//!
//! Busy polling only pays when *no* worker parks. A parked worker of a
//! multi-threaded runtime may be the one blocked in `epoll_wait` holding the
//! I/O driver, and then every socket event still costs a wake-up, however
//! many other workers spin; tasks queued on a parked worker wait for it too.
//! So a busy-polling runtime has exactly as many workers as busy pollers.

use tokio::runtime::{Builder, Runtime};

/// Builds the front end's runtime: with `busy_poll` 0 the default
/// multi-threaded runtime (one worker per core, parking when idle); else a
/// runtime of `busy_poll` workers that never park (each yields in a loop,
/// so it keeps polling the I/O driver and the run queues), each a host core
/// at 100%. Fails when `busy_poll` would leave no core free
/// ([`check_busy_pollers`]).
pub fn front_end_runtime(busy_poll: usize) -> std::io::Result<Runtime> {
    check_busy_pollers(busy_poll).map_err(std::io::Error::other)?;
    let mut b = Builder::new_multi_thread();
    if busy_poll > 0 {
        b.worker_threads(busy_poll);
    }
    let rt = b.enable_all().build()?;
    for _ in 0..busy_poll {
        // The pollers end when the runtime shuts down (cancelled at a yield).
        rt.spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        });
    }
    Ok(rt)
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
    fn busy_polling_runtime_has_one_worker_per_poller_and_still_runs_tasks() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        if cores < 2 {
            eprintln!("skipped: one core, no room for a busy poller");
            return;
        }
        let rt = front_end_runtime(1).unwrap();
        assert_eq!(rt.metrics().num_workers(), 1);
        // A timer, a spawned task and a blocking section still run next to
        // the poller on its single worker.
        let got = rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let blocking = tokio::task::spawn_blocking(|| 3).await.unwrap();
            tokio::spawn(async move { 4 + blocking }).await.unwrap()
        });
        assert_eq!(got, 7);
        // Shutting the runtime down cancels the poller (this would hang otherwise).
        rt.shutdown_timeout(Duration::from_secs(5));
    }

    #[test]
    fn without_busy_polling_the_runtime_has_a_worker_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let rt = front_end_runtime(0).unwrap();
        assert_eq!(rt.metrics().num_workers(), cores);
    }

    #[test]
    fn too_many_busy_pollers_are_refused() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert!(check_busy_pollers(0).is_ok());
        let e = check_busy_pollers(cores).unwrap_err();
        assert!(e.contains("leave at least one core"), "{e}");
        let e = front_end_runtime(cores).unwrap_err().to_string();
        assert!(e.contains("leave at least one core"), "{e}");
    }
}
