//! The models a scheduler serves: their graph sources, compiled plans per
//! batch size, device handles and pools of reusable task contexts.

use crate::api::{GraphSource, Input, ModelInfo, Priority, SchedError, TensorInfo};
use crate::config::MAX_POOLED_CONTEXTS;
use crate::padding::Profile;
use parking_lot::Mutex;
use reef_exec::{Context, Device, ModelHandle};
use std::collections::HashMap;
use std::sync::Arc;

/// One model and everything compiled for it.
pub struct ModelEntry {
    /// Name.
    pub name: String,
    /// Builds the graph for a batch size.
    pub source: GraphSource,
    /// Default priority.
    pub default_priority: Priority,
    /// Client-facing description.
    pub info: ModelInfo,
    /// BE queue its BE requests go to.
    pub be_queue: usize,
    handles: Mutex<HashMap<usize, Arc<dyn ModelHandle>>>,
    /// One lock per batch size being compiled: concurrent first requests of
    /// a batch size wait for one compile instead of each running one.
    compiling: Mutex<HashMap<usize, Arc<Mutex<()>>>>,
    contexts: Mutex<HashMap<usize, Vec<Box<dyn Context>>>>,
    /// Kernel profiles per batch size (only when `profiling`).
    profiles: Mutex<HashMap<usize, Arc<Profile>>>,
    profiling: bool,
}

impl ModelEntry {
    /// Compiles and loads the model for batch 1 (so that load errors surface
    /// at load time), describing its I/O. With `profiling` (dynamic kernel
    /// padding), every compiled batch size is also timed kernel by kernel.
    pub fn load(
        device: &Arc<dyn Device>,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
        be_queue: usize,
        profiling: bool,
    ) -> Result<ModelEntry, SchedError> {
        let handle = load(device, name, compile(name, &source, 1)?)?;
        let plan = handle.plan();
        let io = |b: &reef_plan::IoBinding| TensorInfo {
            name: b.name.clone(),
            dtype: b.dtype,
            shape: b
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == 0 { -1 } else { d as i64 })
                .collect(),
        };
        let info = ModelInfo {
            name: name.to_string(),
            default_priority,
            inputs: plan.inputs.iter().map(io).collect(),
            outputs: plan.outputs.iter().map(io).collect(),
            ready: true,
        };
        let entry = ModelEntry {
            name: name.to_string(),
            source,
            default_priority,
            info,
            be_queue,
            handles: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            contexts: Mutex::new(HashMap::new()),
            profiles: Mutex::new(HashMap::new()),
            profiling,
        };
        entry.profile_into(device, 1, &handle);
        entry.handles.lock().insert(1, handle);
        Ok(entry)
    }

    /// Times a freshly loaded handle's kernels (padding needs the profile;
    /// a failure only disables padding for it, with a warning).
    fn profile_into(&self, device: &Arc<dyn Device>, batch: usize, h: &Arc<dyn ModelHandle>) {
        if !self.profiling {
            return;
        }
        match Profile::measure(device, h, 5) {
            Ok(Some(p)) => {
                let total: std::time::Duration = p.rt.iter().sum();
                tracing::info!(model = %self.name, batch, kernels = p.rt.len(), rt_us = total.as_micros() as u64, "kernel profile measured");
                self.profiles.lock().insert(batch, Arc::new(p));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(model = %self.name, batch, "kernel profiling failed, no padding for it: {e}");
            }
        }
    }

    /// The kernel profile for a batch size (None: not measured).
    pub fn profile(&self, batch: usize) -> Option<Arc<Profile>> {
        self.profiles.lock().get(&batch).cloned()
    }

    /// The device handle for a batch size if it is compiled already.
    pub fn loaded_handle(&self, batch: usize) -> Option<Arc<dyn ModelHandle>> {
        self.handles.lock().get(&batch).cloned()
    }

    /// The device handle for a batch size, compiled on first use. A new
    /// batch size's plan takes the weight blob of one already loaded when
    /// the bytes are equal (they are for every zoo model), so the host and
    /// the device hold one copy of the weights for all batch sizes.
    pub fn handle(
        &self,
        device: &Arc<dyn Device>,
        batch: usize,
    ) -> Result<Arc<dyn ModelHandle>, SchedError> {
        if let Some(h) = self.loaded_handle(batch) {
            return Ok(h);
        }
        let lock = self.compiling.lock().entry(batch).or_default().clone();
        let _compiling = lock.lock();
        let loaded = {
            let handles = self.handles.lock();
            if let Some(h) = handles.get(&batch) {
                // Compiled by the caller this one waited for.
                return Ok(h.clone());
            }
            handles.values().next().cloned()
        };
        let mut plan = compile(&self.name, &self.source, batch)?;
        if let Some(other) = loaded {
            let shared = plan.share_weights(other.plan());
            tracing::debug!(model = %self.name, batch, shared, "weights of a new batch size");
        }
        let h = load(device, &self.name, plan)?;
        self.profile_into(device, batch, &h);
        Ok(self.handles.lock().entry(batch).or_insert(h).clone())
    }

    /// A context for the batch size, from the pool, or new (then `true`:
    /// a new one allocates device memory on the caller's thread).
    pub fn take_context(
        &self,
        handle: &Arc<dyn ModelHandle>,
        batch: usize,
    ) -> Result<(Box<dyn Context>, bool), SchedError> {
        if let Some(c) = self.contexts.lock().get_mut(&batch).and_then(|v| v.pop()) {
            return Ok((c, false));
        }
        Ok((self.make_context(handle, batch)?, true))
    }

    /// A new context for the batch size.
    fn make_context(
        &self,
        handle: &Arc<dyn ModelHandle>,
        batch: usize,
    ) -> Result<Box<dyn Context>, SchedError> {
        let t0 = std::time::Instant::now();
        let c = handle
            .context()
            .map_err(|e| SchedError::Internal(format!("model '{}': {e}", self.name)))?;
        tracing::debug!(model = %self.name, batch, us = t0.elapsed().as_micros() as u64, "task context made");
        Ok(c)
    }

    /// Returns a context to the pool (kept while the pool holds fewer than
    /// [`MAX_POOLED_CONTEXTS`] for the batch size, freed otherwise).
    pub fn give_context(&self, batch: usize, ctx: Box<dyn Context>) {
        let mut pool = self.contexts.lock();
        let v = pool.entry(batch).or_default();
        if v.len() < MAX_POOLED_CONTEXTS {
            v.push(ctx);
        }
    }

    /// Makes contexts for batch 1 until the pool holds `n` (at most
    /// [`MAX_POOLED_CONTEXTS`]), so that the first tasks find theirs.
    pub fn prepare_contexts(&self, device: &Arc<dyn Device>, n: usize) -> Result<(), SchedError> {
        let n = n.min(MAX_POOLED_CONTEXTS);
        let have = self.contexts.lock().get(&1).map_or(0, Vec::len);
        if have >= n {
            return Ok(());
        }
        let handle = self.handle(device, 1)?;
        for _ in have..n {
            let ctx = self.make_context(&handle, 1)?;
            self.give_context(1, ctx);
        }
        Ok(())
    }

    /// Checks a request's inputs against the model; returns the batch size.
    pub fn check_inputs(&self, inputs: &[Input], max_batch: usize) -> Result<usize, SchedError> {
        let want = &self.info.inputs;
        if inputs.len() != want.len() {
            return Err(SchedError::InvalidInput(format!(
                "model '{}' takes {} inputs ({}), got {}",
                self.name,
                want.len(),
                want.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            )));
        }
        let mut batch = None;
        for (t, w) in inputs.iter().zip(want) {
            if t.dtype() != w.dtype {
                return Err(SchedError::InvalidInput(format!(
                    "input '{}' of model '{}' must be {}, got {}",
                    w.name,
                    self.name,
                    w.dtype.kserve_name(),
                    t.dtype().kserve_name()
                )));
            }
            let shape = t.shape();
            let ok = shape.len() == w.shape.len()
                && shape
                    .iter()
                    .zip(&w.shape)
                    .skip(1)
                    .all(|(&a, &b)| a as i64 == b)
                && !shape.is_empty();
            if !ok {
                return Err(SchedError::InvalidInput(format!(
                    "input '{}' of model '{}' must have shape {:?} (-1 = batch), got {:?}",
                    w.name, self.name, w.shape, shape
                )));
            }
            if let Input::Shared(s) = t {
                let size = s.region.byte_size();
                if s.offset
                    .checked_add(s.byte_len())
                    .is_none_or(|end| end > size)
                {
                    return Err(SchedError::InvalidInput(format!(
                        "input '{}' of model '{}': offset {} + {} bytes exceeds its shared \
                         region's {size} bytes",
                        w.name,
                        self.name,
                        s.offset,
                        s.byte_len()
                    )));
                }
            }
            let b = shape[0];
            if *batch.get_or_insert(b) != b {
                return Err(SchedError::InvalidInput(format!(
                    "inputs of model '{}' disagree on the batch size",
                    self.name
                )));
            }
        }
        let b = batch.unwrap_or(1);
        if b == 0 || b > max_batch {
            return Err(SchedError::InvalidInput(format!(
                "batch size {b} is outside 1..={max_batch}"
            )));
        }
        Ok(b)
    }
}

/// Builds and compiles the model's graph for a batch size.
fn compile(name: &str, source: &GraphSource, batch: usize) -> Result<reef_plan::Plan, SchedError> {
    let graph =
        source(batch).map_err(|e| SchedError::InvalidInput(format!("model '{name}': {e}")))?;
    let plan = reef_plan::compile(&graph)
        .map_err(|e| SchedError::InvalidInput(format!("model '{name}': {e}")))?;
    tracing::info!(model = name, "{}", plan.summary());
    Ok(plan)
}

/// Loads a compiled plan on the device.
fn load(
    device: &Arc<dyn Device>,
    name: &str,
    plan: reef_plan::Plan,
) -> Result<Arc<dyn ModelHandle>, SchedError> {
    device
        .load(Arc::new(plan))
        .map_err(|e| SchedError::Internal(format!("model '{name}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_exec::cpu::{CpuDevice, CpuModel};
    use reef_exec::{run::run_to_end, Variant};
    use reef_model::Tensor;

    /// Runs `h` on `device` with `input` (f32) and returns its first output.
    fn run(device: &Arc<dyn Device>, h: &Arc<dyn ModelHandle>, input: &[f32]) -> Vec<f32> {
        let mut ctx = h.context().expect("context");
        let shape = h.plan().inputs[0].shape.clone();
        let t = Tensor::f32(shape, input.to_vec()).expect("input shape");
        ctx.write_input(0, &t.bytes()).expect("write");
        let mut lane = device.lane(reef_exec::Priority::High).expect("lane");
        let done = run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt).expect("run");
        assert_eq!(done, h.plan().kernels.len());
        let bytes = ctx.read_output(0).expect("read");
        let out = &h.plan().outputs[0];
        let t = Tensor::from_bytes(out.dtype, out.shape.clone(), &bytes).expect("output");
        t.as_f32().expect("f32 output").to_vec()
    }

    #[test]
    fn concurrent_first_requests_of_a_batch_size_compile_it_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let device: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).expect("cpu"));
        let builds = Arc::new(AtomicUsize::new(0));
        let counted = builds.clone();
        let source: GraphSource = Arc::new(move |b| {
            counted.fetch_add(1, Ordering::SeqCst);
            // Slow enough that the callers overlap.
            std::thread::sleep(std::time::Duration::from_millis(50));
            reef_zoo::build("resnet_tiny", b, 0).map_err(|e| e.to_string())
        });
        let entry = Arc::new(
            ModelEntry::load(&device, "resnet_tiny", source, Priority::Be, 0, false).expect("load"),
        );
        assert_eq!(builds.load(Ordering::SeqCst), 1, "batch 1 at load");
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (entry, device) = (entry.clone(), device.clone());
                std::thread::spawn(move || entry.handle(&device, 4).expect("batch 4"))
            })
            .collect();
        let got: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(builds.load(Ordering::SeqCst), 2, "batch 4 built once");
        assert!(got.iter().all(|h| Arc::ptr_eq(h, &got[0])), "one handle");
    }

    #[test]
    fn batch_sizes_share_one_weight_blob_and_compute_the_same_rows() {
        let device: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).expect("cpu"));
        let source: GraphSource =
            Arc::new(|b| reef_zoo::build("resnet_tiny", b, 0).map_err(|e| e.to_string()));
        let entry =
            ModelEntry::load(&device, "resnet_tiny", source, Priority::Be, 0, false).expect("load");
        let h1 = entry.handle(&device, 1).expect("batch 1");
        let h3 = entry.handle(&device, 3).expect("batch 3");
        assert!(h3.plan().shares_weights(h1.plan()), "one host blob");
        let cpu1 = h1.as_any().downcast_ref::<CpuModel>().expect("a CPU model");
        let cpu3 = h3.as_any().downcast_ref::<CpuModel>().expect("a CPU model");
        assert!(cpu3.shares_weights_with(cpu1), "one blob read by both");
        // Fresh random images: batch 3 computes each row as batch 1 does.
        let per = h1.plan().inputs[0].shape.iter().product::<usize>();
        let seed: u64 = rand::random();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        let images: Vec<f32> = (0..3 * per)
            .map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0))
            .collect();
        let batched = run(&device, &h3, &images);
        let classes = batched.len() / 3;
        for (i, image) in images.chunks(per).enumerate() {
            let alone = run(&device, &h1, image);
            let row = &batched[i * classes..(i + 1) * classes];
            let err = reef_model::tensor::rel_l2(row, &alone);
            assert!(err < 1e-5, "row {i} (seed {seed}): relative error {err}");
        }
    }
}
