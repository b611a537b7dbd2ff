//! [`CudaTaskContext`]: one task's arena, progress word, per-kernel done
//! counters, split-K tile counters and workspace, concat table and
//! precomputed launches, plus a stream for its input and output copies.

use crate::device::DeviceShared;
use crate::error::CudaCall;
use crate::launch::{table_words, Addresses, Launch, ABORTED_BIT, COUNTER_BYTES};
use crate::memory::DeviceBuffer;
use crate::model::CudaModel;
use crate::model::{build_with, probe};
use crate::tactics::Tactic;
use cudarc::driver::{result, CudaEvent, CudaStream};
use reef_exec::{Context, ExecError, ModelHandle, Plan};
use reef_plan::plan::{IoBinding, Loc};
use std::any::Any;
use std::sync::Arc;

/// Offset of the done counters in the state buffer (the progress word is at 0).
const COUNTERS_OFFSET: u64 = 256;

/// A copy of a context's progress word and per-kernel done counters
/// ([`CudaTaskContext::read_state`]).
pub(crate) struct StateView {
    /// The state buffer's first words: the progress word at 0, the counter
    /// pairs from `COUNTERS_OFFSET / 4`.
    words: Vec<u32>,
}

impl StateView {
    /// The progress word: the first kernel not marked complete.
    pub(crate) fn progress_word(&self) -> usize {
        self.words[0] as usize
    }

    /// Kernel `index`'s done counter (tiles done, with `ABORTED_BIT` when a
    /// block abandoned a tile midway). `index` must be below the kernel count.
    pub(crate) fn done(&self, index: usize) -> u32 {
        self.words[((COUNTERS_OFFSET + COUNTER_BYTES * index as u64) / 4) as usize]
    }
}

/// A task context on a CUDA device.
pub struct CudaTaskContext {
    model: Arc<dyn ModelHandle>,
    pub(crate) shared: Arc<DeviceShared>,
    plan: Arc<Plan>,
    arena: DeviceBuffer,
    /// Progress word at 0, one counter pair (done, claim cursor) per kernel
    /// from [`COUNTERS_OFFSET`], then the split-K tile counters at `tile_counters`.
    state: DeviceBuffer,
    /// Offset of the split-K tile counters in `state`.
    tile_counters: u64,
    /// Per kernel, its first tile counter; plus the total at the end.
    counter_start: Vec<u32>,
    _table: DeviceBuffer,
    _workspace: DeviceBuffer,
    launches: Vec<Launch>,
    /// Per kernel: a padding launch used its BE claim cursor since the last
    /// `begin` covering it, so its later BE launches must go on from the
    /// cursor (persistent blocks), not as a direct launch.
    cursor: Vec<bool>,
    /// Per kernel: launched direct (BE, one block per tile, no done count)
    /// since the last `begin` covering it.
    direct: Vec<bool>,
    stream: Arc<CudaStream>,
    /// Recorded on `stream` behind an input copy that was queued, not
    /// waited for (from CUDA shared memory); made on first use.
    inputs_copied: Option<CudaEvent>,
    /// The next lane to begin the task waits for `inputs_copied` first.
    inputs_pending: bool,
}

impl CudaTaskContext {
    pub(crate) fn new(model: Arc<CudaModel>) -> Result<Self, ExecError> {
        let tactics = model.tactics();
        let scratch = model.scratch();
        Self::build(model, tactics, scratch)
    }

    /// A context of `model` whose GEMMs run `tactics` instead of the
    /// model's (the tuner's trial runs).
    pub(crate) fn with_tactics(
        model: Arc<CudaModel>,
        tactics: Arc<Vec<Option<Tactic>>>,
    ) -> Result<Self, ExecError> {
        let (scratch, _) = probe(
            &model.shared,
            model.plan(),
            model.weight_layout(),
            tactics.clone(),
        )?;
        Self::build(model, tactics, scratch)
    }

    fn build(
        model: Arc<CudaModel>,
        tactics: Arc<Vec<Option<Tactic>>>,
        (ws_bytes, tile_count): (u64, u32),
    ) -> Result<Self, ExecError> {
        let shared = model.shared.clone();
        let plan = model.plan().clone();
        let ctx = &shared.ctx;
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let stream = ctx
            .new_stream_with_priority(shared.priorities.1)
            .call("cuStreamCreateWithPriority")?;
        let arena = DeviceBuffer::alloc(ctx, plan.arena_bytes)?;
        let n = plan.kernels.len();
        let tile_counters = COUNTERS_OFFSET + (COUNTER_BYTES * n as u64).next_multiple_of(256);
        let state = DeviceBuffer::alloc(ctx, (tile_counters + 4 * u64::from(tile_count)) as usize)?;
        let table = DeviceBuffer::alloc(ctx, 8 * table_words(&plan))?;
        let workspace = DeviceBuffer::alloc(ctx, ws_bytes as usize)?;
        let addr = Addresses {
            weights: model.weights_ptr(),
            arena: arena.ptr(),
            counters: state.ptr() + COUNTERS_OFFSET,
            progress: state.ptr(),
            table: table.ptr(),
            tile_counters: state.ptr() + tile_counters,
            workspace: workspace.ptr(),
        };
        let built = build_with(&shared, &plan, addr, model.weight_layout(), tactics)?;
        // The geometry depends on the plan, the SM count and the tactics
        // only, so it matches the probe build that sized the scratch;
        // checked anyway before any launch.
        let total = built.counter_start.last().copied().unwrap_or(0);
        if built.workspace_bytes > workspace.bytes() as u64 || total > tile_count {
            return Err(ExecError::Invalid(format!(
                "split-K scratch mismatch: {} workspace bytes and {total} counters needed, \
                 {ws_bytes} and {tile_count} planned",
                built.workspace_bytes
            )));
        }
        let (launches, words, counter_start) = (built.launches, built.table, built.counter_start);
        // SAFETY: the state buffer holds `state.bytes()` bytes; the table holds
        // at least `words.len()` u64s (sized by table_words); `words` lives
        // until the stream synchronizes below.
        unsafe {
            result::memset_d8_async(state.ptr(), 0, state.bytes(), stream.cu_stream())
                .call("cuMemsetD8Async(state)")?;
            if !words.is_empty() {
                result::memcpy_htod_async(table.ptr(), &words, stream.cu_stream())
                    .call("cuMemcpyHtoDAsync(concat table)")?;
            }
        }
        stream.synchronize().call("cuStreamSynchronize")?;
        let model: Arc<dyn ModelHandle> = model;
        Ok(CudaTaskContext {
            model,
            shared,
            plan,
            arena,
            state,
            tile_counters,
            counter_start,
            _table: table,
            _workspace: workspace,
            cursor: vec![false; launches.len()],
            direct: vec![false; launches.len()],
            launches,
            stream,
            inputs_copied: None,
            inputs_pending: false,
        })
    }

    /// The event behind the input copies still queued on the context's
    /// stream, once: a lane beginning the task makes its stream wait for
    /// it (`CudaLane::begin`).
    pub(crate) fn take_pending_inputs(&mut self) -> Option<&CudaEvent> {
        if !std::mem::take(&mut self.inputs_pending) {
            return None;
        }
        self.inputs_copied.as_ref()
    }

    /// Records that input copies are queued on the context's stream.
    fn inputs_queued(&mut self) -> Result<(), ExecError> {
        let event = match self.inputs_copied.take() {
            Some(e) => e,
            None => self.shared.ctx.new_event(None).call("cuEventCreate")?,
        };
        let event = self.inputs_copied.insert(event);
        event.record(&self.stream).call("cuEventRecord(inputs)")?;
        self.inputs_pending = true;
        Ok(())
    }

    /// The launch of kernel `index`, or an error naming the index.
    pub(crate) fn launch_checked(&self, index: usize) -> Result<Launch, ExecError> {
        self.launches
            .get(index)
            .copied()
            .ok_or_else(|| ExecError::Invalid(format!("kernel {index} of {}", self.launches.len())))
    }

    /// Whether kernel `index`'s cursor holds a padding launch's claims.
    pub(crate) fn cursor_marked(&self, index: usize) -> bool {
        self.cursor.get(index).copied().unwrap_or(false)
    }

    /// Marks kernel `index`'s cursor as used by a padding launch.
    pub(crate) fn mark_cursor(&mut self, index: usize) {
        if let Some(c) = self.cursor.get_mut(index) {
            *c = true;
        }
    }

    /// Marks kernel `index` as launched direct.
    pub(crate) fn mark_direct(&mut self, index: usize) {
        if let Some(d) = self.direct.get_mut(index) {
            *d = true;
        }
    }

    /// Forgets the marks of kernels `from..` (their counters were zeroed).
    pub(crate) fn clear_marks(&mut self, from: usize) {
        for marks in [&mut self.cursor, &mut self.direct] {
            if let Some(tail) = marks.get_mut(from..) {
                tail.fill(false);
            }
        }
    }

    /// The progress word and every kernel's done counter, in one copy from
    /// the device (the caller makes sure the lanes that write them are
    /// idle). One round trip instead of one per word: resuming a task reads
    /// the word, the direct kernel's counter and the first unfinished
    /// kernel's counter, each a synchronous copy of its own before.
    pub(crate) fn read_state(&self) -> reef_exec::Result<StateView> {
        let n = self.launches.len();
        let bytes = COUNTERS_OFFSET + COUNTER_BYTES * n as u64;
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut words = vec![0u32; (bytes / 4) as usize];
        // SAFETY: the state buffer holds the progress word, the padding up to
        // COUNTERS_OFFSET and n counter pairs from there (allocated so in
        // `new`); `words` is exactly that long and stays borrowed until the
        // synchronize below.
        unsafe { result::memcpy_dtoh_async(&mut words, self.state.ptr(), self.stream.cu_stream()) }
            .call("cuMemcpyDtoHAsync(state)")?;
        self.stream.synchronize().call("cuStreamSynchronize")?;
        Ok(StateView { words })
    }

    /// The first kernel not known complete, from a [`StateView`] read once
    /// the lanes that ran the context are idle: the device's progress word,
    /// which ordinary BE and tracked RT kernels keep, plus one when the
    /// kernel at it was launched direct and no block marked it aborted (a
    /// direct launch publishes progress at its entry, not at its end, so a
    /// direct kernel that completed shows as the word's own index).
    pub(crate) fn exact_progress_in(&self, state: &StateView) -> usize {
        let p = state.progress_word();
        if p < self.launches.len() && self.direct[p] && state.done(p) & ABORTED_BIT == 0 {
            return p + 1;
        }
        p
    }

    /// Number of kernels.
    pub(crate) fn kernel_count(&self) -> usize {
        self.launches.len()
    }

    /// Device address of the progress word.
    pub(crate) fn progress_ptr(&self) -> u64 {
        self.state.ptr()
    }

    /// Device address of kernel `index`'s counter pair (done, claim cursor).
    pub(crate) fn counter_ptr(&self, index: usize) -> u64 {
        self.state.ptr() + COUNTERS_OFFSET + COUNTER_BYTES * index as u64
    }

    /// The split-K tile counters of kernels `from..`: (device address, count).
    pub(crate) fn tile_counters_from(&self, from: usize) -> (u64, usize) {
        let total = self.counter_start.last().copied().unwrap_or(0);
        let first = self.counter_start.get(from).copied().unwrap_or(total);
        (
            self.state.ptr() + self.tile_counters + 4 * u64::from(first),
            (total - first) as usize,
        )
    }

    /// Device address and byte size of an arena-resident I/O binding.
    fn io(
        &self,
        binding: Option<&IoBinding>,
        what: &str,
        index: usize,
    ) -> Result<(u64, usize), ExecError> {
        let b = binding.ok_or_else(|| ExecError::Invalid(format!("no {what} {index}")))?;
        let buf = self.plan.buffers.get(b.buffer).ok_or_else(|| {
            ExecError::Invalid(format!("{what} {index}: bad buffer {}", b.buffer))
        })?;
        match buf.loc {
            Loc::Arena(off) => Ok((self.arena.ptr() + off as u64, buf.bytes())),
            Loc::Weight(_) => Err(ExecError::Invalid(format!(
                "{what} {index} ({}) is not in the arena",
                b.name
            ))),
        }
    }
}

impl Context for CudaTaskContext {
    fn model(&self) -> &Arc<dyn ModelHandle> {
        &self.model
    }

    fn write_input(&mut self, index: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        let (ptr, size) = self.io(self.plan.inputs.get(index), "input", index)?;
        if bytes.len() != size {
            return Err(ExecError::Invalid(format!(
                "input {index}: {} bytes given, {size} expected",
                bytes.len()
            )));
        }
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        if size > 0 {
            // SAFETY: the destination lies inside the arena (validated at
            // load); `bytes` stays borrowed until the synchronize below.
            unsafe { result::memcpy_htod_async(ptr, bytes, self.stream.cu_stream()) }
                .call("cuMemcpyHtoDAsync(input)")?;
        }
        self.stream.synchronize().call("cuStreamSynchronize")
    }

    /// Device to device from a [`crate::ipc::CudaIpcRegion`], queued on
    /// the context's stream without a wait (the lane that begins the task
    /// waits for it on the device, [`CudaTaskContext::take_pending_inputs`]);
    /// peer to peer, waited for, when it is mapped on another GPU; other
    /// regions through host memory.
    fn write_input_shared(
        &mut self,
        index: usize,
        region: &dyn reef_exec::SharedRegion,
        offset: usize,
        len: usize,
    ) -> reef_exec::Result<()> {
        let (ptr, size) = self.io(self.plan.inputs.get(index), "input", index)?;
        if len != size {
            return Err(ExecError::Invalid(format!(
                "input {index}: {len} bytes given, {size} expected"
            )));
        }
        match region.as_any().downcast_ref::<crate::ipc::CudaIpcRegion>() {
            Some(r) => {
                let queued = r.copy_to(
                    &format!("input {index}"),
                    offset,
                    len,
                    &self.shared.ctx,
                    ptr,
                    self.stream.cu_stream(),
                )?;
                if queued {
                    self.inputs_queued()?;
                }
                Ok(())
            }
            None => reef_exec::shared::write_input_via_host(self, index, region, offset, len),
        }
    }

    fn read_output(&mut self, index: usize) -> reef_exec::Result<Vec<u8>> {
        let (ptr, size) = self.io(self.plan.outputs.get(index), "output", index)?;
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let mut out = vec![0u8; size];
        if size > 0 {
            // SAFETY: the source lies inside the arena; `out` stays borrowed
            // until the synchronize below.
            unsafe { result::memcpy_dtoh_async(&mut out, ptr, self.stream.cu_stream()) }
                .call("cuMemcpyDtoHAsync(output)")?;
        }
        self.stream.synchronize().call("cuStreamSynchronize")?;
        Ok(out)
    }

    fn poison(&mut self) -> reef_exec::Result<()> {
        self.shared.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: fills exactly the arena allocation.
        unsafe {
            result::memset_d8_async(
                self.arena.ptr(),
                0xFF,
                self.arena.bytes(),
                self.stream.cu_stream(),
            )
        }
        .call("cuMemsetD8Async(arena)")?;
        self.stream.synchronize().call("cuStreamSynchronize")
    }

    fn progress(&mut self) -> reef_exec::Result<usize> {
        Ok(self.exact_progress_in(&self.read_state()?))
    }

    fn shape(&self, index: usize) -> Option<reef_exec::KernelShape> {
        let l = self.launches.get(index)?;
        let sms = self.shared.sms.max(1);
        let resident = self.shared.resident(l.family);
        Some(reef_exec::KernelShape {
            tiles: l.tiles,
            rt_blocks: l.grid(reef_exec::Variant::Rt, resident),
            per_unit: (resident / sms).max(1),
        })
    }

    fn launch_label(&self, index: usize) -> Option<String> {
        let l = self.launches.get(index)?;
        let waves = if l.tiles <= self.shared.resident(l.family) {
            ""
        } else {
            " multi-wave"
        };
        Some(format!("{}{waves}", l.family.base_name()))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
