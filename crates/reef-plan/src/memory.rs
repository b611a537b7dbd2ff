//! Memory planning: places every arena buffer at a byte offset so that buffers
//! whose lifetimes overlap never overlap in memory.
//!
//! Lifetimes are measured in kernel indices: a buffer is live from the kernel
//! that writes it (or from before the first kernel, for graph inputs) through
//! its last reader (or to the end, for graph outputs). A kernel's output never
//! shares memory with that kernel's inputs, because a buffer read by kernel
//! `i` is live at `i` and the output is born at `i`. Together with exact
//! progress records this makes resuming safe: when a preempted task resumes at
//! kernel `p`, every buffer that kernels `p..` read was last written by a
//! kernel below `p`, and its memory was not handed to any kernel at or below
//! the highest kernel that ran, since that memory is live through its last
//! reader, which is at least `p`, and the kernels above `p` never ran.

use crate::plan::{align_up, Buffer, Loc};

/// Lifetime of an arena buffer, inclusive, in kernel indices (-1 = before the
/// first kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Defined at (written by) this kernel.
    pub first: i64,
    /// Last read by this kernel.
    pub last: i64,
}

impl Lifetime {
    fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Assigns arena offsets to the buffers listed in `arena` (with their
/// lifetimes); returns the arena size in bytes. Greedy by size: the largest
/// buffer first, each at the lowest offset free during its lifetime.
pub fn place(buffers: &mut [Buffer], arena: &[(usize, Lifetime)]) -> usize {
    let mut order: Vec<usize> = (0..arena.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(align_up(buffers[arena[i].0].bytes())), i));
    let mut placed: Vec<(usize, usize, Lifetime)> = Vec::new(); // (offset, size, life)
    let mut total = 0;
    for i in order {
        let (b, life) = arena[i];
        let size = align_up(buffers[b].bytes().max(1));
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|(_, _, l)| l.overlaps(&life))
            .map(|&(o, s, _)| (o, o + s))
            .collect();
        conflicts.sort_unstable();
        let mut offset = 0;
        for (lo, hi) in conflicts {
            if offset + size <= lo {
                break;
            }
            offset = offset.max(hi);
        }
        buffers[b].loc = Loc::Arena(offset);
        placed.push((offset, size, life));
        total = total.max(offset + size);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_model::DType;

    fn buf(len: usize) -> Buffer {
        Buffer {
            dtype: DType::F32,
            len,
            loc: Loc::Arena(0),
            name: String::new(),
        }
    }

    #[test]
    fn overlapping_lifetimes_get_disjoint_memory_and_dead_memory_is_reused() {
        let mut bufs = vec![buf(1000), buf(1000), buf(1000), buf(10)];
        let lives = [
            (0, Lifetime { first: -1, last: 0 }),
            (1, Lifetime { first: 0, last: 1 }),
            (2, Lifetime { first: 1, last: 2 }),
            (3, Lifetime { first: 2, last: 2 }),
        ];
        let total = place(&mut bufs, &lives);
        let range = |b: &Buffer| match b.loc {
            Loc::Arena(o) => (o, o + align_up(b.bytes())),
            _ => unreachable!(),
        };
        for (i, a) in lives.iter().enumerate() {
            for b in &lives[i + 1..] {
                if a.1.overlaps(&b.1) {
                    let (ra, rb) = (range(&bufs[a.0]), range(&bufs[b.0]));
                    assert!(ra.1 <= rb.0 || rb.1 <= ra.0, "{ra:?} overlaps {rb:?}");
                }
            }
        }
        // Buffer 2 can reuse buffer 0's memory: two 4 KB slots suffice.
        assert!(total <= 2 * align_up(4000) + align_up(40), "arena {total}");
    }
}
