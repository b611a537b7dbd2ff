//! A pool of page-locked ("pinned") host buffers for request inputs, as
//! Triton's pinned memory pool: a front end decodes an f32 input tensor
//! straight into a pooled buffer, and the device's upload of it is then a
//! direct DMA instead of the driver's staged copy from pageable memory
//! (602 KB: 24-25 us against 64-67 us on an H100 host, docs/PERF.md).
//!
//! Buffers are ordinary `Vec<f32>`s whose memory a [`Pinner`] page-locks
//! once, when the pool makes them, so tensors hold them as usual
//! (`TensorData::F32`). The pool keeps a clone of every buffer's `Arc`:
//! a buffer is never freed while pinned, and it is reused once every
//! tensor made from it is gone (its count is back to one). Each buffer
//! carries two spare pages past its pinned range, so that two pooled
//! buffers never share a page (a page can be registered once). The pool
//! pins at most `max_bytes` in all; beyond that a front end falls back to
//! ordinary memory. Dropping the pool unpins every buffer (tensors still
//! holding one keep it as ordinary memory).

use crate::error::Result;
use parking_lot::Mutex;
use std::sync::Arc;

/// Page-locks host memory for a device's copies (the backend's half of
/// the pool).
pub trait Pinner: Send + Sync {
    /// Page-locks `bytes` bytes at `addr`.
    fn pin(&self, addr: usize, bytes: usize) -> Result<()>;
    /// Undoes [`Pinner::pin`] for the range starting at `addr`.
    fn unpin(&self, addr: usize);
}

/// A [`Pinner`] that pins nothing: the pool's buffers stay ordinary
/// memory (tests of the code that fills them, on machines without a GPU).
pub struct NoPin;

impl Pinner for NoPin {
    fn pin(&self, _addr: usize, _bytes: usize) -> Result<()> {
        Ok(())
    }
    fn unpin(&self, _addr: usize) {}
}

/// Elements past a buffer's pinned range that keep it off its neighbours'
/// pages (two 4 KiB pages of f32).
const PAD_ELEMS: usize = 2 * 4096 / 4;

/// Pinned sizes are rounded up to this many elements (64 KiB), so that one
/// buffer serves inputs of nearby sizes.
const ROUND_ELEMS: usize = 64 * 1024 / 4;

/// One pooled buffer: its data and how many elements of it are pinned.
struct Entry {
    buf: Arc<Vec<f32>>,
    pinned: usize,
}

struct State {
    entries: Vec<Entry>,
    pinned_bytes: usize,
}

/// A pool of pinned f32 buffers (see the module docs).
pub struct HostPool {
    pinner: Box<dyn Pinner>,
    max_bytes: usize,
    min_elems: usize,
    state: Mutex<State>,
}

impl HostPool {
    /// A pool that pins at most `max_bytes` through `pinner`, for tensors
    /// of at least `min_bytes` (smaller ones gain little from pinning).
    pub fn new(pinner: Box<dyn Pinner>, max_bytes: usize, min_bytes: usize) -> HostPool {
        HostPool {
            pinner,
            max_bytes,
            min_elems: min_bytes.div_ceil(4),
            state: Mutex::new(State {
                entries: Vec::new(),
                pinned_bytes: 0,
            }),
        }
    }

    /// Bytes pinned so far (the pool's buffers never shrink).
    pub fn pinned_bytes(&self) -> usize {
        self.state.lock().pinned_bytes
    }

    /// Buffers made so far.
    pub fn buffers(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// A pinned buffer of `len` elements written by `fill`; `None` when
    /// `len` is below the pool's minimum, or no free buffer fits and the
    /// pool is full (or pinning failed): the caller then uses ordinary
    /// memory. `fill` gets the `len` elements, zeroed; its error is the
    /// caller's, and the buffer goes back to the pool.
    pub fn filled<E>(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [f32]) -> std::result::Result<(), E>,
    ) -> Option<std::result::Result<Arc<Vec<f32>>, E>> {
        self.with_buffer(len, |v| {
            v.resize(len, 0.0);
            fill(v)
        })
    }

    /// A pinned buffer holding a copy of `src` (`None` as for
    /// [`HostPool::filled`]).
    pub fn copied(&self, src: &[f32]) -> Option<Arc<Vec<f32>>> {
        self.with_buffer(src.len(), |v| {
            v.extend_from_slice(src);
            Ok::<(), std::convert::Infallible>(())
        })
        .map(|r| {
            let Ok(b) = r;
            b
        })
    }

    /// Takes a free buffer of at least `len` pinned elements (or makes one),
    /// lets `write` fill it from empty up to `len` elements, and hands it
    /// out, keeping the pool's clone.
    fn with_buffer<E>(
        &self,
        len: usize,
        write: impl FnOnce(&mut Vec<f32>) -> std::result::Result<(), E>,
    ) -> Option<std::result::Result<Arc<Vec<f32>>, E>> {
        if len < self.min_elems.max(1) {
            return None;
        }
        let mut lent = Lent {
            pool: self,
            entry: Some(self.take(len)?),
        };
        let entry = lent.entry.as_mut().expect("just taken");
        // The pool's clone was taken out with the entry, so this is the
        // only reference: the buffer can be written.
        let v = Arc::get_mut(&mut entry.buf).expect("a free buffer has no other owner");
        v.clear();
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        let r = write(v);
        // Writing within the pinned length never reallocates: the memory
        // stays the pinned memory.
        debug_assert!(v.len() <= entry.pinned && v.as_ptr() == ptr && v.capacity() == cap);
        let out = entry.buf.clone();
        // `lent` gives the entry back (also if `write` panicked).
        Some(r.map(|()| out))
    }

    /// Makes buffers of `len` elements until `count` of the pool's buffers
    /// hold that many (within the limit), so that pinning, which takes the
    /// driver a while, happens before requests need them (at model load).
    /// Returns the number made.
    pub fn prepare(&self, len: usize, count: usize) -> usize {
        if len < self.min_elems.max(1) {
            return 0;
        }
        let mut st = self.state.lock();
        let have = st.entries.iter().filter(|e| e.pinned >= len).count();
        let mut made = 0;
        for _ in have..count {
            match self.make(&mut st, len) {
                Some(e) => {
                    st.entries.push(e);
                    made += 1;
                }
                None => break,
            }
        }
        made
    }

    /// Removes a free entry with room for `len` elements from the pool (the
    /// smallest that fits), or makes and pins a new one within the limit.
    fn take(&self, len: usize) -> Option<Entry> {
        let mut st = self.state.lock();
        let best = st
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.pinned >= len && Arc::strong_count(&e.buf) == 1)
            .min_by_key(|(_, e)| e.pinned)
            .map(|(i, _)| i);
        if let Some(i) = best {
            return Some(st.entries.swap_remove(i));
        }
        self.make(&mut st, len)
    }

    /// A new pinned entry for `len` elements, within the limit.
    fn make(&self, st: &mut State, len: usize) -> Option<Entry> {
        let pinned = len.div_ceil(ROUND_ELEMS) * ROUND_ELEMS;
        let bytes = pinned * 4;
        if st.pinned_bytes + bytes > self.max_bytes {
            return None;
        }
        let mut v: Vec<f32> = Vec::new();
        v.try_reserve_exact(pinned + PAD_ELEMS).ok()?;
        if let Err(e) = self.pinner.pin(v.as_ptr() as usize, bytes) {
            tracing::warn!("pinning a {bytes}-byte input buffer failed: {e}");
            return None;
        }
        st.pinned_bytes += bytes;
        Some(Entry {
            buf: Arc::new(v),
            pinned,
        })
    }
}

/// An entry out of the pool while it is written; dropping it (after the
/// write, or while unwinding from one) puts it back, so that a pinned
/// buffer is never freed while registered.
struct Lent<'a> {
    pool: &'a HostPool,
    entry: Option<Entry>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.pool.state.lock().entries.push(e);
        }
    }
}

impl Drop for HostPool {
    fn drop(&mut self) {
        for e in self.state.get_mut().entries.drain(..) {
            self.pinner.unpin(e.buf.as_ptr() as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Records the pinned ranges; fails a pin that overlaps a page of one
    /// already pinned (as the CUDA driver does).
    #[derive(Default)]
    struct Recorder {
        ranges: Mutex<HashMap<usize, usize>>,
        unpinned: Mutex<Vec<usize>>,
    }

    fn pages(addr: usize, bytes: usize) -> (usize, usize) {
        (addr / 4096, (addr + bytes - 1) / 4096)
    }

    impl Pinner for Arc<Recorder> {
        fn pin(&self, addr: usize, bytes: usize) -> Result<()> {
            let mut r = self.ranges.lock();
            let (a0, a1) = pages(addr, bytes);
            for (&b, &n) in r.iter() {
                let (b0, b1) = pages(b, n);
                if a0 <= b1 && b0 <= a1 {
                    return Err(crate::ExecError::Cuda("already registered".into()));
                }
            }
            r.insert(addr, bytes);
            Ok(())
        }
        fn unpin(&self, addr: usize) {
            assert!(
                self.ranges.lock().remove(&addr).is_some(),
                "unpin of an unpinned range"
            );
            self.unpinned.lock().push(addr);
        }
    }

    fn pool(max_bytes: usize) -> (HostPool, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        (HostPool::new(Box::new(rec.clone()), max_bytes, 1024), rec)
    }

    #[test]
    fn buffers_are_pinned_reused_once_free_and_unpinned_with_the_pool() {
        let (p, rec) = pool(8 << 20);
        let src: Vec<f32> = (0..150_528).map(|i| i as f32 * 0.5).collect();
        let a = p.copied(&src).expect("room in the pool");
        assert_eq!(*a, src);
        let addr = a.as_ptr() as usize;
        assert!(
            rec.ranges.lock().contains_key(&addr),
            "the buffer is pinned"
        );
        // Still held by a tensor: a second request gets another buffer.
        let b = p.copied(&vec![3.0f32; 151_000]).expect("room");
        assert_ne!(b.as_ptr() as usize, addr);
        assert_eq!(p.buffers(), 2);
        // Once free, the first is reused (the smaller fitting one).
        drop(a);
        let c = p
            .filled(150_000, |v| {
                v.iter_mut().enumerate().for_each(|(i, x)| *x = -(i as f32));
                Ok::<(), ()>(())
            })
            .expect("room")
            .expect("filled");
        assert_eq!(c.as_ptr() as usize, addr, "the free buffer was reused");
        assert_eq!(c.len(), 150_000);
        assert_eq!(c[7], -7.0);
        assert_eq!(p.buffers(), 2);
        let pinned = rec.ranges.lock().len();
        assert_eq!(pinned, 2, "no page was pinned twice");
        drop(p);
        assert!(rec.ranges.lock().is_empty(), "every buffer unpinned");
        // Tensors outlive the pool as ordinary memory.
        assert_eq!(c[7], -7.0);
        assert_eq!(b.len(), 151_000);
    }

    #[test]
    fn a_fill_that_panics_leaves_its_buffer_pinned_in_the_pool() {
        let (p, rec) = pool(8 << 20);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.filled(100_000, |_| -> std::result::Result<(), ()> {
                panic!("decoder bug")
            })
        }));
        assert!(r.is_err());
        assert_eq!(p.buffers(), 1, "the buffer is back in the pool");
        assert_eq!(rec.ranges.lock().len(), 1, "and still pinned, not freed");
        let b = p.copied(&vec![4.0f32; 100_000]).expect("reused");
        assert_eq!(p.buffers(), 1);
        assert_eq!(b[99_999], 4.0);
    }

    #[test]
    fn prepared_buffers_serve_requests_without_pinning_more() {
        let (p, rec) = pool(8 << 20);
        assert_eq!(p.prepare(150_528, 3), 3);
        assert_eq!(p.prepare(150_528, 3), 0, "already there");
        assert_eq!(p.prepare(10, 3), 0, "below the minimum");
        assert_eq!(rec.ranges.lock().len(), 3);
        let src = vec![1.5f32; 150_528];
        let held: Vec<_> = (0..3).map(|_| p.copied(&src).expect("prepared")).collect();
        assert_eq!(rec.ranges.lock().len(), 3, "no pinning on the request path");
        assert!(held.iter().all(|b| **b == src));
        // Within the limit only: 8 MiB hold 12 buffers of 640 KiB.
        assert_eq!(p.prepare(150_528, 100), 9);
    }

    #[test]
    fn small_tensors_a_full_pool_and_a_failed_fill_fall_back_or_return() {
        let (p, _rec) = pool(1 << 20);
        assert!(p.copied(&[1.0; 100]).is_none(), "below the minimum");
        let big = vec![2.0f32; 200_000]; // 800 KB rounds to 832 KiB
        let held = p.copied(&big).expect("fits the 1 MiB limit");
        assert!(
            p.copied(&big).is_none(),
            "the pool is full while it is held"
        );
        // A fill that fails returns its buffer to the pool.
        drop(held);
        let e = p.filled(200_000, |_| Err("bad read")).expect("a buffer");
        assert_eq!(e, Err("bad read"));
        assert_eq!(p.buffers(), 1);
        assert!(p.copied(&big).is_some(), "the buffer is free again");
    }
}
