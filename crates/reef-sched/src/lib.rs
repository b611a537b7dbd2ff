//! reef's scheduler: one per device. It owns the models loaded on the device,
//! an RT queue and up to 32 BE queues, and drives the executor in one of five
//! modes (seq, stream, wait, reset, reef). See [`api`] for what callers use.

pub mod api;

pub use api::*;
