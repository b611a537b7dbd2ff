//! What the randomized request tests share (`fuzz_decode` and the
//! integration tests).

/// Request, input and output parameter names a client may send, known and
/// meaningful in some place or not: the randomized tests put them anywhere,
/// with values of any type.
pub const PARAM_KEYS: [&str; 9] = [
    "priority",
    "reef_timing",
    "binary_data_output",
    "binary_data",
    "binary_data_size",
    "shared_memory_region",
    "shared_memory_byte_size",
    "shared_memory_offset",
    "classification",
];
