//! CPU backend (to be written).
