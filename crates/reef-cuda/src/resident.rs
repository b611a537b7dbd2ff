//! Weight blobs resident on the GPU, shared between models: the plans of
//! one model at several batch sizes hold one host blob
//! ([`reef_plan::Plan::share_weights`]), and each model loaded from them
//! uses one device copy of it instead of uploading its own.

use crate::weight_layout::LayoutKey;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};

/// One resident blob: the host blob it was uploaded from, the layout it
/// was uploaded in, and the device copy `B` (freed with its last model).
struct Resident<B> {
    host: Weak<Vec<u8>>,
    layout: LayoutKey,
    buffer: Weak<B>,
}

/// The device's resident weight blobs (`B`: the device copy,
/// [`crate::memory::DeviceBuffer`]).
pub(crate) struct ResidentWeights<B> {
    blobs: Mutex<Vec<Resident<B>>>,
}

impl<B> Default for ResidentWeights<B> {
    fn default() -> Self {
        ResidentWeights {
            blobs: Mutex::new(Vec::new()),
        }
    }
}

impl<B> ResidentWeights<B> {
    /// The device copy of `host` in `layout`, if a live model holds one.
    pub fn find(&self, host: &Arc<Vec<u8>>, layout: &LayoutKey) -> Option<Arc<B>> {
        let mut blobs = self.blobs.lock();
        blobs.retain(|r| r.buffer.strong_count() > 0);
        blobs
            .iter()
            .filter(|r| r.host.upgrade().is_some_and(|h| Arc::ptr_eq(&h, host)))
            .filter(|r| r.layout == *layout)
            .find_map(|r| r.buffer.upgrade())
    }

    /// Records `buffer` as the device copy of `host` in `layout`.
    pub fn insert(&self, host: &Arc<Vec<u8>>, layout: LayoutKey, buffer: &Arc<B>) {
        self.blobs.lock().push(Resident {
            host: Arc::downgrade(host),
            layout,
            buffer: Arc::downgrade(buffer),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weight_layout::WeightLayout;

    fn key() -> LayoutKey {
        WeightLayout::default().key(&reef_plan::Plan::default())
    }

    #[test]
    fn a_blob_is_found_while_a_model_holds_it_and_only_for_its_host_blob() {
        let resident = ResidentWeights::<u32>::default();
        let host = Arc::new(vec![1u8, 2, 3]);
        let copy = Arc::new(vec![1u8, 2, 3]);
        assert!(resident.find(&host, &key()).is_none(), "nothing yet");
        let buffer = Arc::new(7u32);
        resident.insert(&host, key(), &buffer);
        let found = resident.find(&host, &key()).expect("resident");
        assert!(Arc::ptr_eq(&found, &buffer));
        drop(found);
        assert!(
            resident.find(&copy, &key()).is_none(),
            "an equal blob that is not shared is not the same upload"
        );
        drop(buffer);
        assert!(
            resident.find(&host, &key()).is_none(),
            "freed with its last model"
        );
        assert!(resident.blobs.lock().is_empty(), "dead entries are dropped");
    }

    #[test]
    fn a_blob_in_another_layout_is_not_shared() {
        let g = reef_zoo::build("resnet_tiny", 1, 0).expect("zoo model");
        let plan = reef_plan::compile(&g).expect("compile");
        let rounded = WeightLayout::choose(&plan, false).key(&plan);
        let plain = WeightLayout::default().key(&plan);
        assert_ne!(rounded, plain);
        let resident = ResidentWeights::<u32>::default();
        let buffer = Arc::new(1u32);
        resident.insert(&plan.weights, rounded.clone(), &buffer);
        assert!(resident.find(&plan.weights, &plain).is_none());
        assert!(resident.find(&plan.weights, &rounded).is_some());
    }
}
