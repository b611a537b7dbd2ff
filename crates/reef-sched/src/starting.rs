//! A service that is still starting. `reef serve` binds its endpoints at
//! once, so that health checks answer while the device is prepared (a GPU's
//! first start compiles its kernels), and hands over to the scheduler when
//! it is built: until then the service is not ready, lists no models and
//! answers every request "not ready" (503 / UNAVAILABLE), never "unknown".

use crate::api::{
    DeviceStats, GraphSource, InferRequest, ModelInfo, Priority, SchedError, SchedStats, Service,
    Ticket,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What a starting server reports as its device.
pub const STARTING: &str = "starting";

/// A [`Service`] that forwards to the started one once [`Starting::started`]
/// hands it over.
#[derive(Default)]
pub struct Starting {
    inner: OnceLock<Arc<dyn Service>>,
    stopped: AtomicBool,
}

impl Starting {
    /// A service that has not started yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Hands over to `service`. If shutdown came first, `service` is shut
    /// down at once; a second hand-over is ignored (and its service shut
    /// down), so that nothing accepted is lost or left running.
    pub fn started(&self, service: Arc<dyn Service>) {
        if let Err(extra) = self.inner.set(service) {
            tracing::warn!("a service was handed over twice; shutting the second down");
            extra.shutdown();
            return;
        }
        if self.stopped.load(Ordering::SeqCst) {
            if let Some(s) = self.inner.get() {
                s.shutdown();
            }
        }
    }

    fn not_ready(model: &str) -> SchedError {
        SchedError::NotReady(model.to_string())
    }
}

impl Service for Starting {
    fn models(&self) -> Vec<ModelInfo> {
        self.inner.get().map(|s| s.models()).unwrap_or_default()
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        match self.inner.get() {
            Some(s) => s.submit(req),
            None => Err(Self::not_ready(&req.model)),
        }
    }

    fn load_model(
        &self,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
    ) -> Result<(), SchedError> {
        match self.inner.get() {
            Some(s) => s.load_model(name, source, default_priority),
            None => Err(Self::not_ready(name)),
        }
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        match self.inner.get() {
            Some(s) => s.unload_model(name),
            None => Err(Self::not_ready(name)),
        }
    }

    fn stats(&self) -> SchedStats {
        match self.inner.get() {
            Some(s) => s.stats(),
            None => SchedStats {
                device: STARTING.into(),
                ..SchedStats::default()
            },
        }
    }

    fn device_stats(&self) -> Vec<DeviceStats> {
        self.inner
            .get()
            .map(|s| s.device_stats())
            .unwrap_or_default()
    }

    fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(s) = self.inner.get() {
            s.shutdown();
        }
    }

    fn ready(&self) -> bool {
        self.inner.get().is_some_and(|s| s.ready())
    }

    fn host_pool(&self) -> Option<Arc<reef_exec::host_pool::HostPool>> {
        self.inner.get().and_then(|s| s.host_pool())
    }

    fn open_shared(
        &self,
        device: usize,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> Result<Arc<dyn reef_exec::SharedRegion>, SchedError> {
        self.inner
            .get()
            .ok_or_else(|| {
                SchedError::InvalidInput(
                    "the server is still starting: no device to map CUDA shared memory on".into(),
                )
            })?
            .open_shared(device, raw_handle, byte_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A started service with one model that counts its shutdowns.
    #[derive(Default)]
    struct Fake {
        shutdowns: AtomicUsize,
    }

    impl Service for Fake {
        fn models(&self) -> Vec<ModelInfo> {
            vec![ModelInfo {
                name: "m".into(),
                default_priority: Priority::Be,
                inputs: vec![],
                outputs: vec![],
                ready: true,
            }]
        }
        fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
            Err(SchedError::InvalidInput(format!("fake got {}", req.model)))
        }
        fn load_model(&self, _: &str, _: GraphSource, _: Priority) -> Result<(), SchedError> {
            Ok(())
        }
        fn unload_model(&self, _: &str) -> Result<(), SchedError> {
            Ok(())
        }
        fn stats(&self) -> SchedStats {
            SchedStats {
                device: "fake".into(),
                ..SchedStats::default()
            }
        }
        fn shutdown(&self) {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn request(model: &str) -> InferRequest {
        InferRequest {
            model: model.into(),
            inputs: vec![],
            priority: None,
            arrival: Instant::now(),
        }
    }

    fn source() -> GraphSource {
        Arc::new(|_| Err("no graph".to_string()))
    }

    #[test]
    fn not_ready_until_started_then_forwards() {
        let s = Starting::new();
        assert!(!s.ready());
        assert!(s.models().is_empty());
        assert!(s.device_stats().is_empty());
        assert_eq!(s.stats().device, STARTING);
        for e in [
            s.submit(request("m")).err(),
            s.load_model("m", source(), Priority::Rt).err(),
            s.unload_model("m").err(),
        ] {
            assert!(
                matches!(e, Some(SchedError::NotReady(ref m)) if m == "m"),
                "{e:?}"
            );
        }
        let fake = Arc::new(Fake::default());
        s.started(fake.clone());
        assert!(s.ready());
        assert_eq!(s.models()[0].name, "m");
        assert_eq!(s.stats().device, "fake");
        assert_eq!(s.device_stats().len(), 1);
        let e = s.submit(request("m")).err();
        assert!(matches!(e, Some(SchedError::InvalidInput(ref m)) if m == "fake got m"));
        assert!(s.load_model("m", source(), Priority::Rt).is_ok());
        s.shutdown();
        assert_eq!(fake.shutdowns.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_service_started_after_shutdown_is_shut_down_and_a_second_one_too() {
        let s = Starting::new();
        s.shutdown();
        let first = Arc::new(Fake::default());
        s.started(first.clone());
        assert_eq!(first.shutdowns.load(Ordering::SeqCst), 1);
        let second = Arc::new(Fake::default());
        s.started(second.clone());
        assert_eq!(second.shutdowns.load(Ordering::SeqCst), 1);
        assert_eq!(first.shutdowns.load(Ordering::SeqCst), 1);
    }
}
