//! The CPU device's compute slots: one per worker thread, shared by every
//! lane of the device. A tile holds a slot while it runs; RT tiles are
//! served first, and a BE tile starts only while no RT lane has work (a
//! launch queued or running). An RT tile thus waits for at most the BE
//! tiles already running when its lane got work.
//!
//! This is stricter than a GPU, whose block scheduler also gives a
//! low-priority stream's blocks the room that RT kernels leave (idle SMs,
//! the tail of one RT kernel before the next starts). On the CPU that room
//! is small and a BE tile in it delays the next RT kernel by up to a tile
//! (up to milliseconds: docs/PERF.md, Session 7), so BE work waits for RT
//! work to end.

use parking_lot::{Condvar, Mutex};
use std::cell::Cell;

/// The slots of one device.
pub(crate) struct Cores {
    state: Mutex<State>,
    /// Signalled when a slot frees up and an RT tile waits.
    rt: Condvar,
    /// Signalled when a slot frees up and no RT tile waits.
    be: Condvar,
}

struct State {
    free: usize,
    rt_waiting: usize,
    /// RT lanes with work.
    rt_busy: usize,
}

thread_local! {
    /// This thread holds a slot (a tile run inside a tile takes none).
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// A held slot, given back on drop.
pub(crate) struct Slot<'a> {
    cores: Option<&'a Cores>,
}

impl Cores {
    /// `n` slots (at least one).
    pub(crate) fn new(n: usize) -> Cores {
        Cores {
            state: Mutex::new(State {
                free: n.max(1),
                rt_waiting: 0,
                rt_busy: 0,
            }),
            rt: Condvar::new(),
            be: Condvar::new(),
        }
    }

    /// Waits for a slot: an RT tile for any free slot, a BE tile for a free
    /// slot while no RT lane has work.
    pub(crate) fn acquire(&self, rt: bool) -> Slot<'_> {
        if HELD.with(Cell::get) {
            return Slot { cores: None };
        }
        let mut s = self.state.lock();
        if rt {
            if s.free == 0 {
                s.rt_waiting += 1;
                while s.free == 0 {
                    self.rt.wait(&mut s);
                }
                s.rt_waiting -= 1;
            }
        } else {
            while s.free == 0 || s.rt_waiting > 0 || s.rt_busy > 0 {
                self.be.wait(&mut s);
            }
        }
        s.free -= 1;
        // Pass a slot that is still free on to the next waiter.
        if s.free > 0 {
            self.wake(&s);
        }
        drop(s);
        HELD.with(|h| h.set(true));
        Slot { cores: Some(self) }
    }

    fn wake(&self, s: &State) {
        if s.rt_waiting > 0 {
            self.rt.notify_one();
        } else if s.rt_busy == 0 {
            self.be.notify_one();
        }
    }

    /// An RT lane got work (`true`) or ran out of it (`false`). Calls pair
    /// up per lane.
    pub(crate) fn rt_lane_busy(&self, busy: bool) {
        let mut s = self.state.lock();
        if busy {
            s.rt_busy += 1;
        } else {
            debug_assert!(s.rt_busy > 0, "an RT lane left work it never had");
            s.rt_busy = s.rt_busy.saturating_sub(1);
            if s.rt_busy == 0 && s.free > 0 {
                // Every free slot may go to a waiting BE tile now; each one
                // that takes a slot passes the next on.
                self.be.notify_one();
            }
        }
    }

    /// Free slots now (tests).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.state.lock().free
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.cores {
            HELD.with(|h| h.set(false));
            let mut s = c.state.lock();
            s.free += 1;
            c.wake(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// BE tiles wait while an RT lane has work, even with slots free.
    #[test]
    fn be_tiles_wait_while_an_rt_lane_has_work() {
        let c = Arc::new(Cores::new(2));
        c.rt_lane_busy(true);
        let started = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            let (c2, started2) = (c.clone(), started.clone());
            s.spawn(move || {
                let _slot = c2.acquire(false);
                started2.fetch_add(1, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(started.load(Ordering::SeqCst), 0, "BE ran beside RT work");
            assert_eq!(c.free(), 2);
            c.rt_lane_busy(false);
        });
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(c.free(), 2);
    }

    #[test]
    fn nested_tiles_take_no_second_slot() {
        let c = Cores::new(1);
        let outer = c.acquire(false);
        let inner = c.acquire(true);
        assert_eq!(c.free(), 0);
        drop(inner);
        assert_eq!(c.free(), 0, "the inner slot was never taken");
        drop(outer);
        assert_eq!(c.free(), 1);
    }

    /// With every slot held by BE tiles, a waiting RT tile gets the next
    /// freed slot before BE tiles that wait too, and the BE tiles get slots
    /// once no RT tile waits.
    #[test]
    fn a_waiting_rt_tile_gets_the_next_slot() {
        let c = Arc::new(Cores::new(1));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = c.acquire(false);
        let waiters = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                let (c, order, waiters) = (&c, &order, &waiters);
                s.spawn(move || {
                    waiters.fetch_add(1, Ordering::SeqCst);
                    let _slot = c.acquire(false);
                    order.lock().unwrap().push("be");
                });
            }
            while waiters.load(Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(20));
            let (c2, order2) = (&c, &order);
            let rt = s.spawn(move || {
                let _slot = c2.acquire(true);
                order2.lock().unwrap().push("rt");
            });
            // Let the RT tile register as waiting, then free the slot.
            while c.state.lock().rt_waiting == 0 {
                std::thread::yield_now();
            }
            drop(held);
            rt.join().unwrap();
        });
        let order = order.lock().unwrap();
        assert_eq!(order.first(), Some(&"rt"), "{order:?}");
        assert_eq!(order.len(), 4, "{order:?}");
        assert_eq!(c.free(), 1);
    }
}
