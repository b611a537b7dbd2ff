//! The built-in model zoo (to be written).
