//! Test support shared by edgelb's cross-crate tests (see `tests/tests/`).
#![forbid(unsafe_code)]
