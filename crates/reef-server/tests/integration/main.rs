//! Integration tests: the real server on ephemeral ports over an in-test
//! scheduler (see `common`).

mod common;
mod cuda_shm;
mod curl;
mod grpc;
mod grpc_stream;
mod http;
mod python;
mod repository;
mod shm;
mod stats;
#[path = "../support/mod.rs"]
mod support;
mod unix_socket;
