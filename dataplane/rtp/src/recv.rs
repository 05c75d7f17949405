//! Being written: see the crate documentation in lib.rs.
